/**
 * Field writes on the guest backend, on a synthetic guest image: a `.bss`
 * ARRAY (one 8 KiB value, so one variable straddles a page) and a frozen
 * `.rodata`, both with program BTF in guest memory. Writes go through the
 * image's page tables into a BytesMemory or a RAM file (pwrite), and are
 * read back through a fresh accessor.
 *
 * @module
 */

import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import {
  FieldError,
  MapArgumentError,
  MapReadOnlyError,
  MapTypeError,
} from "../src/errors.ts";
import { GuestSourceError } from "../src/guest/errors.ts";
import {
  BSS_SIZE,
  buildWriteImage,
  STRADDLE_OFFSET,
} from "./_support/guest_write_image.ts";

function u64At(bytes: Uint8Array, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(
    offset,
    true,
  );
}

Deno.test("guest writeFields stores typed fields in the image and reads back through a fresh accessor", () => {
  const image = buildWriteImage();
  const memory = image.ram.memory();
  const before = image.ram.bytes.slice();
  const guest = GuestMemMapAccessor.fromMemory(memory, image.options);
  const bss = guest.findMap("t.bss")!;
  const result = guest.writeFields(bss, [
    ["cfg.slice_ns", "18446744073709551615"],
    ["cfg.mode", "MODE_RR"],
    ["cfg.level", "5"],
    ["cfg.boost", "-16"],
    ["cfg.on", "true"],
    ["sched_name", "rr"],
    ["straddle", "0x0102030405060708"],
  ]);
  deepEqual(
    result.changes.map((c) => [c.path, c.old, c.new]),
    [
      ["cfg.slice_ns", "0", "18446744073709551615"],
      ["cfg.mode", "MODE_FIFO", "MODE_RR"],
      ["cfg.level", "0", "5"],
      ["cfg.boost", "0", "-16"],
      ["cfg.on", "false", "true"],
      ["sched_name", '""', '"rr"'],
      ["straddle", "0", "72623859790382856"],
    ],
  );
  deepEqual(result.warnings, []);

  const fresh = GuestMemMapAccessor.fromMemory(
    image.ram.memory(),
    image.options,
  );
  const value = fresh.readValue(fresh.findMap("t.bss")!, 0, BSS_SIZE)!;
  equal(u64At(value, 0), 0xffffffffffffffffn);
  equal(new DataView(value.buffer, value.byteOffset).getUint32(8, true), 2);
  // level (3 bits) = 5, boost (5 bits) = -16 = 0b10000: byte 12 = 0b10000_101
  equal(value[12], 0b10000101);
  equal(value[13], 1);
  deepEqual([...value.subarray(24, 32)], [0x72, 0x72, 0, 0, 0, 0, 0, 0]);
  equal(u64At(value, STRADDLE_OFFSET), 0x0102030405060708n);

  // Only the fields' bytes changed: everything else in RAM is as it was.
  const changed: number[] = [];
  for (let i = 0; i < before.length; i++) {
    if (before[i] !== image.ram.bytes[i]) changed.push(i);
  }
  const base = Number(image.bssPa);
  const allowed = new Set<number>([
    ...Array.from({ length: 14 }, (_, i) => base + i),
    base + 24,
    base + 25,
    ...Array.from({ length: 8 }, (_, i) => base + STRADDLE_OFFSET + i),
  ]);
  deepEqual(changed.filter((i) => !allowed.has(i)), []);
  ok(changed.length > 0);

  // A bitfield write leaves its neighbours' bits alone.
  guest.writeField(bss, "cfg.level", "2");
  const after = fresh.readValue(fresh.findMap("t.bss")!, 12, 1)!;
  equal(after[0], 0b10000010);
});

Deno.test("guest writeFields refuses what must not be written, before writing anything", () => {
  const image = buildWriteImage();
  const before = image.ram.bytes.slice();
  const guest = GuestMemMapAccessor.fromMemory(
    image.ram.memory(),
    image.options,
  );
  const bss = guest.findMap("t.bss")!;
  const rodata = guest.findMap("t.rodata")!;
  const cases: [string, string, RegExp][] = [
    [
      "cfg.nope",
      "1",
      /field "cfg\.nope" has no member "nope" in "cfg" \(struct cfg: slice_ns, mode/,
    ],
    [
      "cfg.level",
      "8",
      /field "cfg\.level" \(unsigned int : 3\) cannot hold 8: the range is 0\.\.7/,
    ],
    ["cfg.boost", "-17", /\(int : 5\) cannot hold -17: the range is -16\.\.15/],
    [
      "cfg.mode",
      "MODE_EDF",
      /\(enum mode\) has no enumerator "MODE_EDF" \(MODE_FIFO, MODE_VTIME, MODE_RR; or give a number\)/,
    ],
    ["cfg.on", "yes", /\(_Bool\) cannot hold "yes": give true, false, 1 or 0/],
    [
      "cfg.slice_ns",
      "18446744073709551616",
      /cannot hold 18446744073709551616: the range is 0\.\.18446744073709551615/,
    ],
    [
      "sched_name",
      "12345678",
      /\(char\[8\]\) cannot hold a 8-byte string: it holds at most 7 bytes and a NUL/,
    ],
    [
      "cfg",
      "1",
      /\(struct cfg\) is a struct: name one of its members, e.g. "cfg\.slice_ns"/,
    ],
    [
      "cfg.lock.val",
      "1",
      /overlaps a spin_lock at byte 16: kernel-owned state is never written/,
    ],
    [
      "sched_name[9]",
      "1",
      /index 9 is past the end of "sched_name" \(char\[8\]: indexes 0\.\.7\)/,
    ],
    [
      "nr_dispatched.x",
      "1",
      /cannot take member "x" of "nr_dispatched": it is unsigned long long/,
    ],
    ["a..b", "1", /is not a path/],
  ];
  for (const [path, text, message] of cases) {
    throws(() => guest.writeField(bss, path, text), (error: unknown) => {
      ok(error instanceof FieldError, `${path}: ${error}`);
      ok(error instanceof MapArgumentError);
      equal(error.field, path);
      ok(message.test(error.message), `${path}: ${error.message}`);
      ok(
        error.message.endsWith('for map "t.bss" (id 1)') || error.hint,
        error.message,
      );
      return true;
    });
  }
  // All or nothing: a bad second field leaves the first unwritten.
  throws(
    () => guest.writeFields(bss, [["nr_dispatched", "7"], ["cfg.nope", "1"]]),
    FieldError,
  );
  throws(
    () => guest.writeField(bss, "nr_dispatched", "1", { key: 1 }),
    /key 1 is not an index of the array \(0\.\.0\)/,
  );
  throws(() => guest.writeField(rodata, "knob", "5"), (error: unknown) => {
    ok(error instanceof MapReadOnlyError, String(error));
    ok(
      /map "t\.rodata" \(id 2\) is frozen .*const volatile.*allowReadonly \(--allow-rodata\)/
        .test(error.message),
      error.message,
    );
    return true;
  });
  throws(
    () => guest.writeField(guest.findMap("t_hash")!, "x", "1"),
    MapTypeError,
  );
  deepEqual(image.ram.bytes, before, "nothing was written");
});

Deno.test("guest writeFields writes .rodata only with allowReadonly, and warns", () => {
  const image = buildWriteImage();
  const guest = GuestMemMapAccessor.fromMemory(
    image.ram.memory(),
    image.options,
  );
  const rodata = guest.findMap("t.rodata")!;
  const result = guest.writeField(rodata, "knob", "4000000000", {
    allowReadonly: true,
  });
  deepEqual([result.changes[0]!.old, result.changes[0]!.new], [
    "100",
    "4000000000",
  ]);
  equal(result.warnings.length, 1);
  ok(
    /folds const volatile knobs into the programs at load time/.test(
      result.warnings[0]!,
    ),
  );
  equal(
    new DataView(image.ram.bytes.buffer).getUint32(
      Number(image.rodataPa),
      true,
    ),
    4000000000,
  );
});

Deno.test("guest writeFields through a RAM file: pwrite lands in the file; read-only opens and ELF cores refuse", () => {
  const image = buildWriteImage();
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-write-" });
  try {
    const path = `${dir}/ram`;
    Deno.writeFileSync(path, image.ram.bytes);
    const options = {
      ...image.options,
      regions: [{
        gpa: 0n,
        size: BigInt(image.ram.bytes.length),
        fileOffset: 0,
      }],
    };
    {
      using readOnly = GuestMemMapAccessor.openRamFile(path, options);
      throws(
        () =>
          readOnly.writeField(readOnly.findMap("t.bss")!, "nr_dispatched", "1"),
        (error: unknown) =>
          error instanceof GuestSourceError &&
          /ram was opened read-only: open it with \{ writable: true \}/.test(
            error.message,
          ),
      );
    }
    {
      using writable = GuestMemMapAccessor.openRamFile(path, {
        ...options,
        writable: true,
      });
      const bss = writable.findMap("t.bss")!;
      // Read first, so the page cache holds the page the write must update.
      equal(u64At(writable.readValue(bss, 32, 8)!, 0), 0n);
      writable.writeFields(bss, [["nr_dispatched", "123456789012345678"], [
        "straddle",
        "42",
      ]]);
      throws(
        () => writable.writeField(bss, "straddle", "-1"),
        /cannot hold -1: the range is 0\.\./,
      );
      equal(u64At(writable.readValue(bss, 32, 8)!, 0), 123456789012345678n);
    }
    const file = Deno.readFileSync(path);
    const at = Number(image.bssPa);
    equal(u64At(file, at + 32), 123456789012345678n);
    {
      using again = GuestMemMapAccessor.openRamFile(path, options);
      const value = again.readValue(again.findMap("t.bss")!, 0, BSS_SIZE)!;
      equal(u64At(value, 32), 123456789012345678n);
    }
    throws(
      () => GuestMemMapAccessor.openCore(path, { ...options, writable: true }),
      (error: unknown) =>
        error instanceof GuestSourceError &&
        /is an ELF core, a copy of the guest's memory: writing it would change the file, never the guest/
          .test(error.message),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
