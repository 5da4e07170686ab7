import assert from "node:assert/strict";
import {
  GuestMemMapAccessor,
  loadGuestKernelFiles,
} from "../src/accessor/guest.ts";
import { BpfmapError } from "../src/errors.ts";
import { GuestMemoryError, GuestSourceError } from "../src/guest/errors.ts";
import { FileMemory, type PhysicalMemory } from "../src/guest/phys.ts";
import { openElfCore, openRamFile } from "../src/guest/source.ts";
import { findVmcoreinfo } from "../src/guest/vmcoreinfo.ts";
import { elfCore } from "./guest_fixture.ts";

const TEXT = [
  "OSRELEASE=6.12.107+deb13-cloud-amd64",
  "PAGESIZE=4096",
  "SYMBOL(init_top_pgt)=ffffffff82000000",
  "NUMBER(phys_base)=0",
  "",
].join("\n");

function oneLine(pattern: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof BpfmapError, String(error));
    assert.ok(!error.message.includes("\n"), error.message);
    assert.match(error.message, pattern);
    return true;
  };
}

Deno.test("a truncated ELF core says where it ends and how long it should be", () => {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-core-" });
  try {
    const core = elfCore([{ paddr: 0n, data: new Uint8Array(3 * 4096) }], TEXT);
    const path = `${dir}/guest.core`;
    Deno.writeFileSync(path, core.subarray(0, core.length - 5000));
    assert.throws(
      () => openElfCore(path),
      (error) =>
        error instanceof GuestSourceError &&
        oneLine(
          new RegExp(
            `^${path} core truncated at ${
              core.length - 5000
            } \\(expected ${core.length} bytes\\)`,
          ),
        )(error),
    );
    // cut inside the program headers
    Deno.writeFileSync(path, core.subarray(0, 100));
    assert.throws(() => openElfCore(path), oneLine(/core truncated at 100 /));
    // the whole core opens and keeps its note
    Deno.writeFileSync(path, core);
    using whole = openElfCore(path);
    assert.equal(whole.vmcoreinfo, TEXT);
    assert.equal(whole.memory.end, 3n * 4096n);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a directory, a FIFO or an empty file as guest memory says what it is and what is needed", () => {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-src-" });
  try {
    const fifo = `${dir}/fifo`;
    new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
    const empty = `${dir}/empty`;
    Deno.writeFileSync(empty, new Uint8Array(0));
    const needed =
      /; guest memory must be a regular file: a QEMU RAM file .*\/dev\/shm.* or an ELF core/;
    for (
      const [path, what] of [
        [dir, "is a directory"],
        [fifo, "is a FIFO \\(named pipe\\)"],
        [empty, "is empty \\(0 bytes\\)"],
        [`${dir}/missing`, "cannot be read: "],
      ]
    ) {
      for (const open of [openRamFile, openElfCore]) {
        assert.throws(
          () => open(path!),
          (error) =>
            error instanceof GuestSourceError && error.path === path &&
            oneLine(new RegExp(`^${path} ${what}`))(error) &&
            (what!.startsWith("cannot") || needed.test(error.message)),
        );
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a file without System.map lines is rejected as --guest-system-map, naming it", () => {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-sysmap-" });
  try {
    const random = `${dir}/random.bin`;
    Deno.writeFileSync(
      random,
      Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) & 255),
    );
    assert.throws(
      () => loadGuestKernelFiles({ systemMap: random }),
      (error) =>
        error instanceof GuestSourceError &&
        oneLine(new RegExp(`^${random} has no System.map lines`))(error),
    );
    const real = `${dir}/System.map`;
    Deno.writeTextFileSync(real, "ffffffff82a4e5c0 b map_idr\n");
    assert.equal(
      loadGuestKernelFiles({ systemMap: real }).symbols?.get("map_idr"),
      0xffffffff82a4e5c0n,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a RAM file truncated while in use fails the read with one line; the process lives (no SIGBUS)", () => {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-trunc-" });
  try {
    const path = `${dir}/ram`;
    const size = 64 * 4096;
    const bytes = Uint8Array.from({ length: size }, (_, i) => i & 255);
    Deno.writeFileSync(path, bytes);
    using memory = FileMemory.open(path, size, [{
      gpa: 0n,
      size: BigInt(size),
      fileOffset: 0,
    }]);
    assert.equal(memory.u8(10n * 4096n + 3n), 3);
    Deno.truncateSync(path, 8 * 4096);
    // a page already read stays readable; the next one past the end fails
    assert.equal(memory.u8(10n * 4096n + 3n), 3);
    assert.throws(
      () => memory.u64(20n * 4096n),
      (error) =>
        error instanceof GuestMemoryError &&
        oneLine(
          new RegExp(
            `^Cannot read 4096 bytes of ${path} \\(file offset\\) at 0x0+14000: the file is now ${
              8 * 4096
            } bytes but was ${size} when opened \\(truncated while in use\\?\\)$`,
          ),
        )(error),
    );
    assert.throws(
      () => memory.readInto(60n * 4096n, new Uint8Array(8192)),
      GuestMemoryError,
    );
    assert.equal(memory.u8(3n), 3, "still alive and reading");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("FileMemory serves reads across regions and starts its page cache over when full", () => {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-fm-" });
  try {
    const path = `${dir}/ram`;
    const bytes = Uint8Array.from(
      { length: 40 * 4096 },
      (_, i) => (i >> 12) & 255,
    );
    Deno.writeFileSync(path, bytes);
    // GPA 0x10000.. at file page 20, GPA 0.. at file page 0
    using memory = FileMemory.open(path, bytes.length, [
      { gpa: 0x10000n, size: 20n * 4096n, fileOffset: 20 * 4096 },
      { gpa: 0n, size: 16n * 4096n, fileOffset: 0 },
    ], { cacheBytes: 16 * 4096 });
    let resets = 0;
    memory.onReset(() => resets++);
    for (let page = 0; page < 16; page++) {
      assert.equal(memory.u8(BigInt(page) * 4096n), page);
    }
    assert.equal(resets, 0);
    assert.equal(
      memory.u8(0x10000n),
      20,
      "the 17th page starts the cache over",
    );
    assert.equal(resets, 1);
    // a read that spans the two regions is stitched; a hole is null
    const spanning = memory.read(0x10000n - 2n, 4);
    assert.deepEqual(spanning, new Uint8Array([15, 15, 20, 20]));
    assert.equal(memory.read(0x10000n + 20n * 4096n - 2n, 4), null);
    assert.equal(memory.has(0x10000n - 2n, 4), true);
    assert.equal(memory.has(0x20000n + 20n * 4096n, 1), false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("GuestMemMapAccessor.openRamFile on a file without VMCOREINFO says so, and closes the file", () => {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-novmci-" });
  try {
    const path = `${dir}/ram`;
    Deno.writeFileSync(path, new Uint8Array(1 << 20));
    assert.throws(
      () => GuestMemMapAccessor.openRamFile(path),
      oneLine(/^No VMCOREINFO found in guest memory/),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a sparse RAM file's holes are skipped: the VMCOREINFO scan reads only runs with data", () => {
  const path = `/dev/shm/bpfmap-sparse-test-${Deno.pid}`;
  try {
    const size = 64 << 20;
    {
      using file = Deno.openSync(path, { create: true, write: true });
      file.truncateSync(size);
      file.seekSync(8 << 20, Deno.SeekMode.Start);
      file.writeSync(new Uint8Array(4096).fill(1));
      file.seekSync(40 << 20, Deno.SeekMode.Start);
      file.writeSync(new TextEncoder().encode(TEXT.padEnd(8192, "\0")));
    }
    using memory = FileMemory.open(path, size, [
      { gpa: 0n, size: 32n << 20n, fileOffset: 0 },
      { gpa: 1n << 32n, size: 32n << 20n, fileOffset: 32 << 20 },
    ]);
    assert.deepEqual(memory.dataRuns(memory.regions[0]!), [
      { start: 8n << 20n, end: (8n << 20n) + 4096n },
    ]);
    assert.deepEqual(memory.dataRuns(memory.regions[1]!), [
      {
        start: (1n << 32n) + (8n << 20n),
        end: (1n << 32n) + (8n << 20n) + 8192n,
      },
    ]);
    let read = 0;
    const counting: PhysicalMemory = {
      regions: memory.regions,
      end: memory.end,
      bytes: memory.bytes,
      view: memory.view,
      offsetOf: (pa, len) => memory.offsetOf(pa, len),
      has: (pa, len) => memory.has(pa, len),
      read: (pa, len) => memory.read(pa, len),
      readInto: (pa, out) => {
        read += out.length;
        return memory.readInto(pa, out);
      },
      u8: (pa) => memory.u8(pa),
      u32: (pa) => memory.u32(pa),
      u64: (pa) => memory.u64(pa),
      onReset: (listener) => memory.onReset(listener),
      dataRuns: (region) => memory.dataRuns(region),
    };
    const info = findVmcoreinfo(counting);
    assert.equal(info?.foundAt, (1n << 32n) + (8n << 20n));
    assert.ok(read <= 8192 + 16384, `${read} bytes read of a 64 MiB file`);
  } finally {
    Deno.removeSync(path);
  }
});
