/**
 * Field writes on the live backend, on the real maps of the `kinds` fixture
 * (global data with every BTF kind, a hash and an array of `struct value`,
 * a frozen `.rodata`): each write is read back through bpf() and through
 * bpftool, and every error leaves the map as it was.
 *
 * @module
 */

import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type { BpfMapInfo } from "../src/accessor/types.ts";
import { parseJsonExact } from "../src/btf/json.ts";
import {
  FieldError,
  MapArgumentError,
  MapReadOnlyError,
  MapTypeError,
} from "../src/errors.ts";
import { MapType } from "../src/sys/constants.ts";
import { ignoreUnless } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import { bpftoolJson, hexBytes, loadFixture } from "./btf_fixture.ts";

type Json = Record<string, unknown>;

function lookupJson(pin: string, key: number[]): Json {
  return parseJsonExact(
    bpftoolJson([
      "map",
      "lookup",
      "pinned",
      pin,
      "key",
      ...key.map(String),
    ]),
  ) as Json;
}

/** The `.data`-style section's variables as one object, from bpftool's formatted value. */
function sectionVars(json: Json, section: string): Json {
  const formatted = (json.formatted as Json).value as Json;
  return Object.assign({}, ...(formatted[section] as Json[]));
}

function rawValue(json: Json): Uint8Array {
  return hexBytes(json.value as string[]);
}

function byId(accessor: BpfSyscallAccessor, id: number): BpfMapInfo {
  const map = accessor.mapById(id);
  ok(map, `map ${id} exists`);
  return map;
}

Deno.test({
  name:
    "live writeFields: global data, a hash and an array read back through bpf() and bpftool; errors write nothing",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  async fn(t): Promise<void> {
    using fixture = loadFixture("kinds");
    const accessor = new BpfSyscallAccessor();
    const pin = (name: string): string => fixture.pins.get(name)!;
    const map = (name: string): BpfMapInfo =>
      byId(accessor, fixture.info.get(name)!.id);
    const bss = map("kinds_bss");
    const data = map("kinds_data");

    await t.step(".bss u64 written exactly at its max", () => {
      const result = accessor.writeField(
        bss,
        "g_counter",
        "18446744073709551615",
      );
      deepEqual(
        result.changes.map((c) => [c.path, c.typeName, c.old, c.new]),
        [["g_counter", "__u64", "0", "18446744073709551615"]],
      );
      deepEqual([...result.key], [0, 0, 0, 0]);
      deepEqual(
        [...accessor.readValue(bss, 0, 8)!],
        [255, 255, 255, 255, 255, 255, 255, 255],
      );
      const vars = sectionVars(
        lookupJson(pin("kinds_bss"), [0, 0, 0, 0]),
        ".bss",
      );
      equal(vars.g_counter, 18446744073709551615n);
      accessor.writeField(bss, "g_bss_key.port", 65535);
      const again = sectionVars(
        lookupJson(pin("kinds_bss"), [0, 0, 0, 0]),
        ".bss",
      );
      deepEqual(again.g_bss_key, { id: 0, port: 65535, pad: 0 });
      equal(again.g_counter, 18446744073709551615n, "the other variable kept");
    });

    await t.step(".data: many kinds in one write, nothing else changed", () => {
      const before = rawValue(lookupJson(pin("kinds_data"), [0, 0, 0, 0]));
      const result = accessor.writeFields(data, [
        ["g_int", "-2147483648"],
        ["g_name", "bpfmap"],
        ["g_unknown_color", "BLUE"],
        ["g_flags.uf5", "3"],
        ["g_flags.sf3", "-4"],
        ["g_matrix[1][2]", "-60"],
        ["g_value.counter", 5n],
        ["g_value.comm", "bash"],
        ["g_value.c", "NEG"],
        ["g_value.ok", false],
        ["g_value.a", "0xffff"],
        ["g_value.as_s32", "-2"],
        ["g_value.fl.big40", "-549755813888"],
        ["g_value.small", "0b1010"],
        ["g_value.cv", "1"],
      ]);
      deepEqual(
        result.changes.map((c) => [c.path, c.old, c.new]),
        [
          ["g_int", "-7", "-2147483648"],
          ["g_name", '"hello"', '"bpfmap"'],
          ["g_unknown_color", "7", "BLUE"],
          ["g_flags.uf5", "17", "3"],
          ["g_flags.sf3", "-3", "-4"],
          ["g_matrix[1][2]", "6", "-60"],
          ["g_value.counter", "18446744073709551615", "5"],
          ["g_value.comm", '"curl"', '"bash"'],
          ["g_value.c", "GREEN", "NEG"],
          ["g_value.ok", "true", "false"],
          ["g_value.a", "7", "65535"],
          ["g_value.as_s32", "-1", "-2"],
          ["g_value.fl.big40", "5", "-549755813888"],
          ["g_value.small", "255", "10"],
          ["g_value.cv", "4000000000", "1"],
        ],
      );
      const json = lookupJson(pin("kinds_data"), [0, 0, 0, 0]);
      const vars = sectionVars(json, ".data");
      equal(vars.g_int, -2147483648);
      equal(vars.g_name, "bpfmap");
      equal(vars.g_unknown_color, "BLUE");
      // bpftool prints bitfields as the hex of their bits
      const flags = vars.g_flags as Json;
      equal(flags.uf5, "0x3");
      equal(flags.sf3, "0x4");
      equal(flags.col, "0x2", "neighbouring bitfield kept");
      equal(flags.big40, "0xe34166e5ec", "neighbouring bitfield kept");
      deepEqual(vars.g_matrix, [[1, 2, 3], [4, 5, -60]]);
      const value = vars.g_value as Json;
      equal(value.counter, 5);
      equal(value.comm, "bash");
      equal(value.c, "NEG");
      equal(value.ok, false);
      equal(value.small, 10);
      equal(value.cv, 1);
      equal((value.fl as Json).big40, "0x8000000000");
      equal((value.fl as Json).uf5, "0x1f", "neighbouring bitfield kept");
      // Every byte outside the written fields is as it was.
      const after = rawValue(json);
      const touched = new Set<number>();
      for (const c of result.changes) {
        for (let i = 0; i < c.byteSize; i++) touched.add(c.byteOffset + i);
      }
      const stray: number[] = [];
      for (let i = 0; i < before.length; i++) {
        if (!touched.has(i) && before[i] !== after[i]) stray.push(i);
      }
      deepEqual(stray, []);
      // bpf() agrees with bpftool
      deepEqual(accessor.readValue(data, 0, data.valueSize), after);
    });

    await t.step(".data.floats: a double", () => {
      const floats = map("_data_floats");
      const result = accessor.writeField(floats, "g_double", "3.75");
      deepEqual([result.changes[0]!.old, result.changes[0]!.new], [
        "-2.25",
        "3.75",
      ]);
      const bytes = accessor.readValue(
        floats,
        result.changes[0]!.byteOffset,
        8,
      )!;
      equal(
        new DataView(bytes.buffer, bytes.byteOffset).getFloat64(0, true),
        3.75,
      );
    });

    await t.step(
      "a hash element by key bytes and by number; an array by index",
      () => {
        const hash = map("kinds_hash");
        const key = new Uint8Array([1, 0, 0, 0, 80, 0, 0, 0]);
        accessor.update(hash, key, new Uint8Array(hash.valueSize));
        const result = accessor.writeField(
          hash,
          "delta",
          "-9223372036854775808",
          { key },
        );
        deepEqual([result.changes[0]!.old, result.changes[0]!.new], [
          "0",
          "-9223372036854775808",
        ]);
        const json = lookupJson(pin("kinds_hash"), [...key]);
        equal(
          ((json.formatted as Json).value as Json).delta,
          -9223372036854775808n,
        );
        // the same key as a number: id 1, port 80 little-endian
        accessor.writeField(hash, "w", "WIDE_BIG", { key: 0x0050_0000_0001n });
        const wide = lookupJson(pin("kinds_hash"), [...key]);
        equal(((wide.formatted as Json).value as Json).w, "WIDE_BIG");
        throws(
          () => accessor.writeField(hash, "delta", "1", { key: 2 }),
          /key 0x0200000000000000 is not in the map for map "kinds_hash"/,
        );
        throws(
          () => accessor.writeField(hash, "delta", "1"),
          /key is missing: a hash map's element is named by its key/,
        );
        throws(
          () =>
            accessor.writeField(hash, "delta", "1", { key: new Uint8Array(4) }),
          /key is 4 bytes but the key size is 8/,
        );

        const array = map("kinds_array_with_a_very_long_name");
        accessor.writeField(array, "matrix[0][1]", "7", { key: 3 });
        const three = lookupJson(pin("kinds_array_with_a_very_long_name"), [
          3,
          0,
          0,
          0,
        ]);
        deepEqual(
          ((three.formatted as Json).value as Json).matrix,
          [[0, 7, 0], [0, 0, 0]],
        );
        const zero = lookupJson(pin("kinds_array_with_a_very_long_name"), [
          0,
          0,
          0,
          0,
        ]);
        deepEqual(((zero.formatted as Json).value as Json).matrix, [[0, 0, 0], [
          0,
          0,
          0,
        ]]);
        throws(
          () => accessor.writeField(array, "matrix[0][1]", "7", { key: 4 }),
          (error: unknown) =>
            error instanceof MapArgumentError &&
            /key 4 is not an index of the array \(0\.\.3\)/.test(error.message),
        );
      },
    );

    await t.step(
      "every refusal names the field and its type, and writes nothing",
      () => {
        const before = accessor.readValue(data, 0, data.valueSize)!.slice();
        const cases: [string, string, RegExp][] = [
          [
            "g_nope",
            "1",
            /^field "g_nope" has no variable "g_nope" in section \.data \(variables: g_int, g_u64, g_name/,
          ],
          [
            "g_value.nope",
            "1",
            /has no member "nope" in "g_value" \(struct value: counter, delta, comm/,
          ],
          [
            "g_matrix[2][0]",
            "1",
            /index 2 is past the end of "g_matrix" \(int\[2\]\[3\]|index 2 is past the end of "g_matrix"/,
          ],
          [
            "g_int.x",
            "1",
            /cannot take member "x" of "g_int": it is int, not a struct, union or data section/,
          ],
          [
            "g_value",
            "1",
            /^field "g_value" \(struct value\) is a struct: name one of its members, e\.g\. "g_value\.counter"/,
          ],
          [
            "g_value.fwd",
            "1",
            /is a pointer: bpfmap writes integers, enums, bools, floats and char arrays, never kernel addresses/,
          ],
          [
            "g_value.small",
            "256",
            /^field "g_value\.small" \(__u8\) cannot hold 256: the range is 0\.\.255 for map "kinds\.data"/,
          ],
          [
            "g_value.schar",
            "-129",
            /\(__s8\) cannot hold -129: the range is -128\.\.127/,
          ],
          [
            "g_u64",
            "-1",
            /\(__u64\) cannot hold -1: the range is 0\.\.18446744073709551615/,
          ],
          ["g_u64", "18446744073709551616", /cannot hold 18446744073709551616/],
          [
            "g_flags.uf5",
            "32",
            /\(unsigned int : 5\) cannot hold 32: the range is 0\.\.31/,
          ],
          [
            "g_flags.sf3",
            "4",
            /\(int : 3\) cannot hold 4: the range is -4\.\.3/,
          ],
          [
            "g_value.c",
            "PURPLE",
            /\(enum color\) has no enumerator "PURPLE" \(RED, GREEN, BLUE, NEG; or give a number\)/,
          ],
          [
            "g_value.ok",
            "yes",
            /\(_Bool\) cannot hold "yes": give true, false, 1 or 0/,
          ],
          [
            "g_value.comm",
            "0123456789abcdef",
            /\(char\[16\]\) cannot hold a 16-byte string: it holds at most 15 bytes and a NUL/,
          ],
          ["g_int", "abc", /\(int\) cannot hold "abc": give an integer/],
          [
            "g_value.matrix",
            "1",
            /is an array: name one element, e\.g\. "g_value\.matrix\[0\]"/,
          ],
          ["", "1", /^field "" is empty: name a field/],
        ];
        for (const [path, text, message] of cases) {
          throws(
            () => accessor.writeField(data, path, text),
            (error: unknown) => {
              ok(error instanceof FieldError, `${path}: ${error}`);
              equal(error.field, path);
              ok(message.test(error.message), `${path}: ${error.message}`);
              ok(!error.message.includes("\n"), "one line");
              return true;
            },
          );
        }
        // All or nothing: the good first field is not written either.
        throws(
          () => accessor.writeFields(data, [["g_int", "1"], ["g_nope", "2"]]),
          FieldError,
        );
        deepEqual(accessor.readValue(data, 0, data.valueSize), before);
      },
    );

    await t.step(
      "frozen .rodata, per-CPU and BTF-less maps are refused",
      () => {
        const rodata = map("kinds_rodata");
        const before = accessor.readValue(rodata, 0, rodata.valueSize)!.slice();
        throws(
          () => accessor.writeField(rodata, "r_const", "1"),
          (error: unknown) => {
            ok(error instanceof MapReadOnlyError, String(error));
            ok(
              /^map "kinds\.rodata" \(id \d+\) is frozen \(BPF_MAP_FREEZE, as libbpf does to \.rodata after load\)/
                .test(error.message),
              error.message,
            );
            return true;
          },
        );
        deepEqual(accessor.readValue(rodata, 0, rodata.valueSize), before);
        throws(
          () => accessor.writeField(map("kinds_pcpu"), "id", "1"),
          MapTypeError,
        );
        const name = uniqueName("nobtf");
        using plain = BpfSyscallAccessor.createMap({
          type: MapType.ARRAY,
          keySize: 4,
          valueSize: 8,
          maxEntries: 1,
          name,
        });
        const bare = accessor.findMap(name)!;
        equal(bare.btfId, 0);
        void plain;
        throws(
          () => accessor.writeField(bare, "x", "1"),
          /field "x" cannot be found: the map has no BTF value type/,
        );
      },
    );
  },
});

Deno.test({
  name:
    "live writeFields warns when a field does not read back (the kernel skips a bpf_spin_lock)",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("knobs");
    const accessor = new BpfSyscallAccessor();
    const map = byId(accessor, fixture.info.get("knobs_locked")!.id);
    const data = accessor.writeField(map, "count", "5");
    deepEqual(data.warnings, []);
    deepEqual([...accessor.readArray(map, 0)!.subarray(4, 8)], [5, 0, 0, 0]);
    const lock = accessor.writeField(map, "lock.val", "1");
    deepEqual(
      lock.changes.map((c) => [c.path, c.old, c.new]),
      [["lock.val", "0", "1"]],
    );
    deepEqual(lock.warnings, [
      "lock.val does not read back as 1 right after the update: a kernel-owned field (the kernel skips those) or a BPF program stored to it",
    ]);
    deepEqual([...accessor.readArray(map, 0)!], [0, 0, 0, 0, 5, 0, 0, 0]);
  },
});
