/**
 * Runs inside the test guest (see tools/vm/build_initramfs.sh): creates BPF
 * maps of every type with known contents through bpfmap's live backend,
 * prints what `BpfSyscallAccessor` reads back as one JSON line per map
 * (`BPFMAP-MAP {...}`), prints `BPFMAP-AGENT-READY`, then keeps every map
 * alive until the VM is stopped. Args: `bench=N` fills one N-entry hash only;
 * `kcore=1` also compares `bpfmap dump --json --kcore` with the live dump;
 * `kcore=locked` (on a `lockdown=confidentiality` kernel) records what it says.
 *
 * @module
 */
// deno-lint-ignore-file no-console

import {
  type BpfMapInfo,
  BpfSyscallAccessor,
  MapFlag,
  MapType,
  openBpfMapFdByName,
  possibleCpuCount,
} from "../../mod.ts";
import {
  btfLoad,
  mapCreate,
  mapFreeze,
  mapGetInfo,
  mapUpdateElem,
  pidfdOpen,
} from "../../src/sys/bpf.ts";
import { pageSize } from "../../src/sys/elem.ts";
import { getLibc } from "../../src/sys/ffi.ts";
import { bloomContains } from "../../src/accessor/maptypes/bloom.ts";
import { progTestRun } from "../../src/sys/prog.ts";
import {
  loadRingbufOutputProgram,
  loadRingbufReserveProgram,
  loadStackIdProgram,
  loadTrivialProgram,
  loadXdpProgram,
} from "../_support/bpf_prog.ts";
import { UdpSocket } from "../_support/libc.ts";
import { plainTypeDump } from "./type_dump_plain.ts";
import type { OwnedFd } from "../../src/sys/fd.ts";

const held: unknown[] = [];
const accessor = new BpfSyscallAccessor();
const cpus = possibleCpuCount();
const hexOf = (b: Uint8Array | null): string | null =>
  b === null
    ? null
    : Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** Deterministic bytes for (seed, index). */
function pattern(seed: number, index: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761 + index * 40503 + 1) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function u32(n: number, len = 4): Uint8Array {
  const out = new Uint8Array(len);
  new DataView(out.buffer).setUint32(0, n, true);
  return out;
}

function create(
  attr: Parameters<typeof mapCreate>[0],
): { fd: OwnedFd; info: BpfMapInfo } {
  const fd = mapCreate(attr);
  held.push(fd);
  const id = mapGetInfo(fd.fd).id;
  const info = accessor.mapById(id);
  if (!info) throw new Error(`map ${id} vanished`);
  return { fd, info };
}

function emit(kind: string, info: BpfMapInfo, data: unknown): void {
  const meta = {
    id: info.id,
    name: info.name,
    type: info.type,
    keySize: info.keySize,
    valueSize: info.valueSize,
    maxEntries: info.maxEntries,
    flags: info.flags,
    btfId: info.btfId,
    btfKeyTypeId: info.btfKeyTypeId,
    btfValueTypeId: info.btfValueTypeId,
    mapExtra: String(info.mapExtra),
    frozen: info.frozen,
  };
  console.log("BPFMAP-MAP " + JSON.stringify({ kind, meta, data }));
}

function percpuValue(
  seed: number,
  index: number,
  valueSize: number,
): Uint8Array {
  const stride = (valueSize + 7) & ~7;
  const all = new Uint8Array(stride * cpus);
  for (let cpu = 0; cpu < cpus; cpu++) {
    all.set(pattern(seed + cpu * 1000, index, valueSize), cpu * stride);
  }
  return all;
}

/** A hand-built BTF: int, struct val {int a,b,c,d}, VARs g_counter/g_val, DATASEC .bss. */
function buildBtf(): Uint8Array {
  const strings = [
    "",
    "int",
    "val",
    "a",
    "b",
    "c",
    "d",
    "g_counter",
    "g_val",
    ".bss",
  ];
  const offsets: number[] = [];
  let strLen = 0;
  for (const s of strings) {
    offsets.push(strLen);
    strLen += s.length + 1;
  }
  const str = (s: string): number => offsets[strings.indexOf(s)]!;
  const words: number[] = [];
  words.push(str("int"), 1 << 24, 4, (1 << 24) | 32); // [1] INT int signed 32
  words.push(str("val"), (4 << 24) | 4, 16); // [2] STRUCT val, 4 members
  for (const [i, m] of ["a", "b", "c", "d"].entries()) {
    words.push(str(m), 1, i * 32);
  }
  words.push(str("g_counter"), 14 << 24, 1, 1); // [3] VAR g_counter: int, global
  words.push(str("g_val"), 14 << 24, 2, 1); // [4] VAR g_val: struct val, global
  words.push(str(".bss"), (15 << 24) | 2, 20, 3, 0, 4, 4, 4, 16); // [5] DATASEC .bss
  const typeLen = words.length * 4;
  const out = new Uint8Array(24 + typeLen + strLen);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0xeb9f, true);
  view.setUint8(2, 1);
  view.setUint32(4, 24, true);
  view.setUint32(8, 0, true);
  view.setUint32(12, typeLen, true);
  view.setUint32(16, typeLen, true);
  view.setUint32(20, strLen, true);
  words.forEach((w, i) => view.setUint32(24 + i * 4, w >>> 0, true));
  out.set(new TextEncoder().encode(strings.join("\0") + "\0"), 24 + typeLen);
  return out;
}

function dumpHash(info: BpfMapInfo): [string, string][] {
  return [...accessor.iterHashMap(info)].map((
    e,
  ) => [hexOf(e.key)!, hexOf(e.value)!]);
}

function dumpPercpuHash(info: BpfMapInfo): [string, (string | null)[]][] {
  return [...accessor.iterPercpuHashMap(info, cpus)].map((
    e,
  ) => [hexOf(e.key)!, e.values.map(hexOf)]);
}

function fillHash(
  type: number,
  name: string,
  keySize: number,
  valueSize: number,
  max: number,
  n: number,
  seed: number,
  flags = 0,
): void {
  const { fd, info } = create({
    type,
    keySize,
    valueSize,
    maxEntries: max,
    name,
    flags,
  });
  const percpu = type === MapType.PERCPU_HASH ||
    type === MapType.LRU_PERCPU_HASH;
  for (let i = 0; i < n; i++) {
    const key = pattern(seed, i, keySize);
    key.set(u32(i).subarray(0, Math.min(4, keySize)));
    mapUpdateElem(
      fd.fd,
      key,
      percpu
        ? percpuValue(seed, i, valueSize)
        : pattern(seed + 7, i, valueSize),
    );
  }
  emit(
    percpu ? "percpu_hash" : "hash",
    info,
    percpu ? dumpPercpuHash(info) : dumpHash(info),
  );
}

function bench(n: number): void {
  const { fd, info } = create({
    type: MapType.HASH,
    keySize: 8,
    valueSize: 8,
    maxEntries: n,
    name: "bench_hash",
  });
  const key = new Uint8Array(8);
  const kv = new DataView(key.buffer);
  const value = new Uint8Array(8);
  const vv = new DataView(value.buffer);
  for (let i = 0; i < n; i++) {
    kv.setBigUint64(
      0,
      BigInt(i) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn,
      true,
    );
    vv.setBigUint64(0, BigInt(i), true);
    mapUpdateElem(fd.fd, key, value);
  }
  const started = performance.now();
  let count = 0;
  let sum = 0n;
  for (const e of accessor.iterHashMap(info)) {
    count++;
    sum += new DataView(e.value.buffer, e.value.byteOffset, 8).getBigUint64(
      0,
      true,
    );
  }
  const ms = performance.now() - started;
  console.log(
    "BPFMAP-BENCH " +
      JSON.stringify({
        id: info.id,
        entries: count,
        sum: String(sum),
        liveMs: ms,
      }),
  );
}

/**
 * The kcore proof, inside the guest: the CLI's dump of every map through
 * /proc/kcore (guest walkers over the kernel's own memory) against its dump
 * through bpf(). Prints `BPFMAP-KCORE {...}` with every map that differs.
 */
async function kcoreStep(): Promise<void> {
  const { main: cli } = await import("../../src/cli/main.ts");
  const { MemorySink } = await import("../../src/cli/writer.ts");
  const run = async (...args: string[]) => {
    const stdout = new MemorySink();
    const stderr = new MemorySink();
    const started = performance.now();
    const code = await cli(args, { stdout, stderr, stderrIsTerminal: false });
    return {
      code,
      stderr: stderr.text(),
      ms: Math.round(performance.now() - started),
      dump: code === 0
        ? JSON.parse(stdout.text()) as {
          maps: { id: number }[];
          errors: unknown[];
        }
        : null,
    };
  };
  // the bytes kcore's parser reads (ELF header, program headers, notes), for
  // the host to corrupt: real headers, not made-up ones
  const { parseKcore } = await import("../../src/guest/kcore.ts");
  const { openReadOnly, preadFd } = await import("../../src/sys/bpf.ts");
  const pieces: [string, string][] = [];
  {
    using fd = openReadOnly("/proc/kcore");
    parseKcore((offset, len) => {
      const out = new Uint8Array(len);
      if (preadFd(fd.fd, out, offset) !== len) throw new Error("short read");
      pieces.push([String(offset), hexOf(out)!]);
      return out;
    });
  }
  console.log("BPFMAP-KCORE-HEAD " + JSON.stringify(pieces));
  const live = await run("dump", "--json");
  const kcore = await run("dump", "--json", "--kcore");
  const differences: string[] = [];
  let bytes = 0;
  const kcoreMaps = new Map(kcore.dump?.maps.map((m) => [m.id, m]) ?? []);
  // What the two backends say differently by design, whatever the source:
  // bpf() names a task-storage owner by pid, memory by its task_struct
  // address (so values are compared as a sorted list), and only the live
  // backend notes which arena pages user space cannot see.
  const comparable = (map: unknown): string => {
    if (map === null || map === undefined) return "null";
    const m = { ...(map as Record<string, unknown>) };
    if (m.kind === "local-storage") {
      m.entries = (m.entries as { value: unknown }[])
        .map((e) => JSON.stringify(e.value)).sort();
    }
    if (m.kind === "arena") delete m.notes;
    return JSON.stringify(m);
  };
  for (const map of live.dump?.maps ?? []) {
    const a = comparable(map);
    const b = comparable(kcoreMaps.get(map.id));
    bytes += a.length;
    if (a !== b) {
      differences.push(
        `map ${map.id}: ${a.slice(0, 300)} vs ${b.slice(0, 300)}`,
      );
    }
    kcoreMaps.delete(map.id);
  }
  for (const id of kcoreMaps.keys()) {
    differences.push(`map ${id} only through kcore`);
  }
  console.log(
    "BPFMAP-KCORE " + JSON.stringify({
      maps: live.dump?.maps.length ?? 0,
      jsonBytes: bytes,
      differences,
      liveCode: live.code,
      kcoreCode: kcore.code,
      kcoreStderr: kcore.stderr.slice(0, 2000),
      kcoreErrors: kcore.dump?.errors ?? null,
      liveMs: live.ms,
      kcoreMs: kcore.ms,
    }),
  );
}

/**
 * On a kernel booted with `lockdown=confidentiality`: `bpfmap dump --kcore`
 * must say in one line that lockdown closes kcore, first with securityfs not
 * mounted (the mode then comes from the command line), then mounted; the
 * live dump must still work (lockdown leaves the map syscalls open).
 */
async function lockedKcoreStep(): Promise<void> {
  const { main: cli } = await import("../../src/cli/main.ts");
  const { MemorySink } = await import("../../src/cli/writer.ts");
  const run = async (...args: string[]) => {
    const stdout = new MemorySink();
    const stderr = new MemorySink();
    const code = await cli(args, { stdout, stderr, stderrIsTerminal: false });
    return { code, stdout: stdout.text(), stderr: stderr.text() };
  };
  const withoutSecurityfs = await run("dump", "--json", "--kcore");
  const mount = new Deno.Command("/bin/mount", {
    args: ["-t", "securityfs", "securityfs", "/sys/kernel/security"],
  }).outputSync();
  const withSecurityfs = await run("dump", "--json", "--kcore");
  const live = await run("dump", "--json");
  console.log(
    "BPFMAP-KCORE-LOCKED " + JSON.stringify({
      mode: Deno.readTextFileSync("/sys/kernel/security/lockdown").trim(),
      mounted: mount.success,
      withoutSecurityfs,
      withSecurityfs,
      liveCode: live.code,
      liveMaps: live.code === 0
        ? (JSON.parse(live.stdout) as { maps: unknown[] }).maps.length
        : 0,
    }),
  );
}

async function main(args: string[]): Promise<void> {
  const opts = Object.fromEntries(
    args.map((a) => a.split("=") as [string, string]),
  );
  console.log(`BPFMAP-AGENT cpus=${cpus} kernel=${Deno.osRelease()}`);
  if (opts.bench) {
    bench(Number(opts.bench));
    console.log("BPFMAP-AGENT-READY");
    return;
  }

  // ARRAY: every key, value_size 12 so the stride (16) differs from the size.
  {
    const { fd, info } = create({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 12,
      maxEntries: 40,
      name: "t_array",
    });
    for (let i = 0; i < 40; i++) {
      mapUpdateElem(fd.fd, u32(i), pattern(1, i, 12));
    }
    emit(
      "array",
      info,
      Array.from({ length: 40 }, (_, i) => hexOf(accessor.readArray(info, i))),
    );
  }
  // A larger ARRAY spanning several pages (vmalloc'd).
  {
    const { fd, info } = create({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 1000,
      maxEntries: 20,
      name: "t_array_big",
    });
    for (let i = 0; i < 20; i += 3) {
      mapUpdateElem(fd.fd, u32(i), pattern(2, i, 1000));
    }
    emit(
      "array",
      info,
      Array.from({ length: 20 }, (_, i) => hexOf(accessor.readArray(info, i))),
    );
  }
  // Global-data-like ARRAY with BTF (DATASEC .bss), mmapable, and a frozen .rodata twin.
  const btfFd = btfLoad(buildBtf());
  held.push(btfFd);
  for (
    const [name, flags, freeze] of [["agent.bss", MapFlag.MMAPABLE, false], [
      "agent.rodata",
      MapFlag.MMAPABLE | MapFlag.RDONLY_PROG,
      true,
    ]] as const
  ) {
    const { fd, info: before } = create({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 20,
      maxEntries: 1,
      name,
      flags,
      btfFd: btfFd.fd,
      btfKeyTypeId: 0,
      btfValueTypeId: 5,
    });
    mapUpdateElem(fd.fd, u32(0), pattern(3, name.length, 20));
    if (freeze) mapFreeze(fd.fd);
    const info = accessor.mapById(before.id)!;
    const btf = accessor.loadProgramBtfBytes(info);
    emit("global", info, {
      value: hexOf(accessor.readValue(info, 0, 20)),
      part: hexOf(accessor.readValue(info, 4, 8)),
      btf: hexOf(btf),
    });
  }
  // PERCPU_ARRAY
  {
    const { fd, info } = create({
      type: MapType.PERCPU_ARRAY,
      keySize: 4,
      valueSize: 12,
      maxEntries: 8,
      name: "t_pcpu_array",
    });
    for (let i = 0; i < 8; i++) {
      mapUpdateElem(fd.fd, u32(i), percpuValue(4, i, 12));
    }
    emit(
      "percpu_array",
      info,
      Array.from(
        { length: 8 },
        (_, i) => accessor.readPercpuArray(info, i, cpus + 2)!.map(hexOf),
      ),
    );
  }
  fillHash(MapType.HASH, "t_hash", 6, 20, 256, 200, 10);
  fillHash(
    MapType.HASH,
    "t_hash_noprea",
    4,
    8,
    64,
    40,
    11,
    MapFlag.NO_PREALLOC,
  );
  fillHash(MapType.LRU_HASH, "t_lru", 4, 8, 512, 100, 12);
  fillHash(MapType.PERCPU_HASH, "t_pcpu_hash", 4, 12, 64, 50, 13);
  fillHash(MapType.LRU_PERCPU_HASH, "t_lru_pcpu", 8, 8, 256, 30, 14);

  // TASK_STORAGE keyed by pidfds of this process and three children.
  {
    const { fd, info } = create({
      type: MapType.TASK_STORAGE,
      keySize: 4,
      valueSize: 16,
      maxEntries: 0,
      name: "t_task_stor",
      flags: MapFlag.NO_PREALLOC,
      btfFd: btfFd.fd,
      btfKeyTypeId: 1,
      btfValueTypeId: 2,
    });
    const pids = [Deno.pid];
    for (let i = 0; i < 3; i++) {
      const child = new Deno.Command("/bin/sleep", { args: ["100000"] })
        .spawn();
      held.push(child);
      pids.push(child.pid);
    }
    const expected: [number, string][] = [];
    for (const pid of pids) {
      using pidfd = pidfdOpen(pid);
      const value = pattern(20, pid, 16);
      mapUpdateElem(fd.fd, u32(pidfd.fd), value);
      expected.push([pid, hexOf(value)!]);
    }
    const live = [...accessor.iterTaskStorage(info)].map((
      e,
    ) => [Number(e.owner), hexOf(e.value)]);
    emit("task_storage", info, { expected, live });
  }

  // ARENA (6.9+): map 16 pages, touch 3 of them.
  if (
    Number(Deno.osRelease().split(".")[1]) >= 9 ||
    Number(Deno.osRelease().split(".")[0]) > 6
  ) {
    const { fd, info } = create({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: 16,
      name: "t_arena",
      flags: MapFlag.MMAPABLE,
    });
    // the kernel's page size: 16K on the arm64-16k guest
    const ps = pageSize();
    const len = 16 * ps;
    const pointer = getLibc().mmap(0n, BigInt(len), 3, 1, fd.fd, 0n);
    if (pointer === null) throw new Error("arena mmap failed");
    const bytes = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, len),
    );
    const touched = [0, 3, 9];
    for (const page of touched) bytes.set(pattern(30, page, ps), page * ps);
    const live = accessor.readArenaPages(info);
    emit("arena", info, {
      userStart: String(Deno.UnsafePointer.value(pointer)),
      pageSize: ps,
      expected: touched.map((
        p,
      ) => [p, hexOf(bytes.subarray(p * ps, p * ps + ps))]),
      live: live.pages.map((
        p,
      ) => [p.index, String(p.userAddress), hexOf(p.bytes)]),
    });
  }

  // Swap window: hold the outgoing <obj>.bss, create its successor with the same name.
  {
    const outgoing = create({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 1,
      name: "swapobj.bss",
      flags: MapFlag.MMAPABLE,
    });
    mapUpdateElem(outgoing.fd.fd, u32(0), pattern(40, 0, 8));
    const heldFd = openBpfMapFdByName("swapobj.bss");
    held.push(heldFd);
    outgoing.fd.close(); // the loader lets go; only our held fd keeps it alive
    const incoming = create({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 1,
      name: "swapobj.bss",
      flags: MapFlag.MMAPABLE,
    });
    mapUpdateElem(incoming.fd.fd, u32(0), pattern(41, 0, 8));
    using again = openBpfMapFdByName("swapobj.bss");
    const alive = accessor.maps().filter((m) => m.name === "swapobj.bss").map((
      m,
    ) => m.id);
    console.log(
      "BPFMAP-SWAP " + JSON.stringify({
        outgoing: outgoing.info.id,
        incoming: incoming.info.id,
        heldId: mapGetInfo(heldFd.fd).id,
        byNameId: mapGetInfo(again.fd).id,
        alive,
        values: alive.map((id) =>
          hexOf(accessor.readArray(accessor.mapById(id)!, 0))
        ),
      }),
    );
  }
  if (opts.kcore === "locked") await lockedKcoreStep();
  else if (opts.kcore) await kcoreStep();
  typedMaps();
  console.log("BPFMAP-AGENT-READY");
}

/** One `BPFMAP-TYPED {...}` line: what bpf() shows of a map with a type reader. */
function emitTyped(kind: string, info: BpfMapInfo, extra: unknown = {}): void {
  console.log(
    "BPFMAP-TYPED " + JSON.stringify({
      kind,
      id: info.id,
      live: plainTypeDump(accessor.readTypeDump(info, { recurse: true })),
      extra,
    }),
  );
}

/**
 * Maps with their own reader, each with known contents, so the host can hold
 * guest memory against what bpf() showed here: a ring buffer written by the
 * kernel (wrapped, with a discarded record), a queue and a stack that
 * wrapped, two bloom filters (jhash2 and jhash sizes), an LPM trie, a stack
 * trace, a prog array, maps of maps and a perf event array.
 */
function typedMaps(): void {
  const u64 = (n: number): Uint8Array => {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
    return out;
  };
  // Ring sizes are whole pages: 4 KiB on x86-64, 16 KiB on an arm64 16K kernel.
  const ps = pageSize();
  // RINGBUF: a first run of 24-byte records, a consumer that took all but 10
  // of them, then more: the pending span wraps past the end of the one-page
  // data area and stays under its size.
  {
    const { fd, info } = create({
      type: MapType.RINGBUF,
      keySize: 0,
      valueSize: 0,
      maxEntries: ps,
      name: "t_ringbuf",
    });
    const out = loadRingbufOutputProgram("t_rb_out", fd.fd);
    const drop = loadRingbufReserveProgram("t_rb_drop", fd.fd, 8, "discard");
    held.push(out, drop);
    const write = (n: number): void => {
      const ctx = new Uint8Array(16);
      new DataView(ctx.buffer).setBigUint64(0, BigInt(n), true);
      new DataView(ctx.buffer).setBigUint64(8, BigInt(n) * 0x1000001n, true);
      progTestRun(out.fd, { ctx });
    };
    const total = Math.ceil((ps * 5) / 4 / 24); // 214 records with 4 KiB pages
    const first = Math.floor(total * 0.45);
    for (let i = 0; i < first; i++) write(i);
    const consumer = getLibc().mmap(0n, BigInt(ps), 3, 1, fd.fd, 0n);
    if (consumer === null) throw new Error("ringbuf consumer mmap failed");
    const page = new DataView(
      Deno.UnsafePointerView.getArrayBuffer(consumer, ps),
    );
    page.setBigUint64(0, BigInt(first - 10) * 24n, true);
    const middle = first + Math.floor((total - first) / 2);
    for (let i = first; i < middle; i++) write(i);
    progTestRun(drop.fd, { ctx: new Uint8Array(8) });
    for (let i = middle; i < total; i++) write(i);
    // the discarded 8-byte record takes 16 bytes, every other one 24
    emitTyped("ringbuf", info, { lastPosition: String((total - 1) * 24 + 16) });
  }
  // USER_RINGBUF: user space is the producer. Records written as libbpf's
  // user_ring_buffer does (header, data, then producer_pos), the last one
  // left reserved (busy bit set); no program drains them.
  {
    const { fd, info } = create({
      type: MapType.USER_RINGBUF,
      keySize: 0,
      valueSize: 0,
      maxEntries: ps,
      name: "t_user_rb",
    });
    // the producer page, then the data area mapped twice
    const pointer = getLibc().mmap(
      0n,
      3n * BigInt(ps),
      3,
      1,
      fd.fd,
      BigInt(ps),
    );
    if (pointer === null) throw new Error("user ringbuf mmap failed");
    const area = Deno.UnsafePointerView.getArrayBuffer(pointer, 3 * ps);
    const producer = new DataView(area, 0, ps);
    const data = new Uint8Array(area, ps, 2 * ps);
    const view = new DataView(area, ps, 2 * ps);
    let position = 0;
    [5, 16, 31, 8, 12].forEach((length, i) => {
      const at = position & (ps - 1);
      view.setUint32(at, length | (i === 4 ? 1 << 31 : 0), true);
      view.setUint32(at + 4, 0, true);
      data.set(pattern(90, i, length), at + 8);
      position += (length + 8 + 7) & ~7;
    });
    producer.setBigUint64(0, BigInt(position), true);
    emitTyped("user_ringbuf", info);
  }
  // QUEUE / STACK of 8: 11 pushes with BPF_EXIST overwrite the oldest 3.
  for (
    const [type, name] of [[MapType.QUEUE, "t_queue"], [
      MapType.STACK,
      "t_stack",
    ]] as const
  ) {
    const { fd, info } = create({
      type,
      keySize: 0,
      valueSize: 12,
      maxEntries: 8,
      name,
    });
    const pushed: string[] = [];
    for (let i = 0; i < 11; i++) {
      const value = pattern(60 + type, i, 12);
      mapUpdateElem(fd.fd, null, value, 2n);
      pushed.push(hexOf(value)!);
    }
    const kept = pushed.slice(3);
    emitTyped(name.slice(2), info, {
      order: type === MapType.QUEUE ? kept : kept.reverse(),
    });
  }
  // BLOOM_FILTER: 4-byte values hash with jhash2, 5-byte with jhash.
  for (const valueSize of [4, 5]) {
    const { fd, info } = create({
      type: MapType.BLOOM_FILTER,
      keySize: 0,
      valueSize,
      maxEntries: 64,
      name: `t_bloom${valueSize}`,
      mapExtra: 3n,
    });
    for (let i = 0; i < 40; i++) {
      mapUpdateElem(fd.fd, null, pattern(70, i, valueSize));
    }
    const candidates: string[] = [];
    const answers: boolean[] = [];
    for (let i = 0; i < 200; i++) {
      const candidate = pattern(70, i, valueSize);
      candidates.push(hexOf(candidate)!);
      answers.push(bloomContains(info, candidate));
    }
    emitTyped("bloom", info, { candidates, answers });
  }
  // LPM_TRIE: nested prefixes (intermediate nodes appear between siblings).
  {
    const { fd, info } = create({
      type: MapType.LPM_TRIE,
      keySize: 8,
      valueSize: 8,
      maxEntries: 64,
      name: "t_lpm",
      flags: MapFlag.NO_PREALLOC,
    });
    const prefixes: [number, number[]][] = [
      [8, [10, 0, 0, 0]],
      [16, [10, 1, 0, 0]],
      [16, [10, 2, 0, 0]],
      [24, [10, 1, 7, 0]],
      [24, [10, 1, 200, 0]],
      [32, [10, 1, 7, 9]],
      [12, [192, 160, 0, 0]],
      [32, [192, 168, 1, 1]],
      [0, [0, 0, 0, 0]],
    ];
    prefixes.forEach(([length, data], i) => {
      const key = new Uint8Array(8);
      new DataView(key.buffer).setUint32(0, length, true);
      key.set(data, 4);
      mapUpdateElem(fd.fd, key, u64(1000 + i));
    });
    const entries: [string, string][] = [];
    for (const batch of accessor.iterEntryBatches(info)) {
      for (let i = 0; i < batch.count; i++) {
        entries.push([
          hexOf(batch.keys.subarray(i * 8, i * 8 + 8))!,
          hexOf(batch.values.subarray(i * 8, i * 8 + 8))!,
        ]);
      }
    }
    emitTyped("lpm", info, { entries });
  }
  // STACK_TRACE: the kernel's own stack under BPF_PROG_TEST_RUN.
  {
    const { fd, info } = create({
      type: MapType.STACK_TRACE,
      keySize: 4,
      valueSize: 8 * 127,
      maxEntries: 16,
      name: "t_stacks",
    });
    const prog = loadStackIdProgram("t_stackid", fd.fd);
    held.push(prog);
    progTestRun(prog.fd, { ctx: new Uint8Array(8) });
    emitTyped("stack_trace", info);
  }
  // PROG_ARRAY: two programs in slots 1 and 3.
  {
    const { fd, info } = create({
      type: MapType.PROG_ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: "t_progs",
    });
    for (const slot of [1, 3]) {
      const prog = loadTrivialProgram(`t_tail${slot}`, slot);
      held.push(prog);
      mapUpdateElem(fd.fd, u32(slot), u32(prog.fd));
    }
    emitTyped("prog_array", info);
  }
  // ARRAY_OF_MAPS and HASH_OF_MAPS over two inner arrays (read recursively).
  {
    const inners = [0, 1].map((n) => {
      const inner = create({
        type: MapType.ARRAY,
        keySize: 4,
        valueSize: 8,
        maxEntries: 3,
        name: `t_inner${n}`,
      });
      for (let i = 0; i < 3; i++) {
        mapUpdateElem(inner.fd.fd, u32(i), pattern(80 + n, i, 8));
      }
      return inner;
    });
    const outer = create({
      type: MapType.ARRAY_OF_MAPS,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: "t_aom",
      innerMapFd: inners[0]!.fd.fd,
    });
    mapUpdateElem(outer.fd.fd, u32(0), u32(inners[0]!.fd.fd));
    mapUpdateElem(outer.fd.fd, u32(2), u32(inners[1]!.fd.fd));
    emitTyped("array_of_maps", outer.info);
    const hash = create({
      type: MapType.HASH_OF_MAPS,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: "t_hom",
      innerMapFd: inners[0]!.fd.fd,
    });
    mapUpdateElem(hash.fd.fd, u32(77), u32(inners[1]!.fd.fd));
    mapUpdateElem(hash.fd.fd, u32(5), u32(inners[0]!.fd.fd));
    emitTyped("hash_of_maps", hash.info);
  }
  // DEVMAP (lo, with and without an XDP program), DEVMAP_HASH (keys in
  // several buckets) and CPUMAP (both CPUs, one with a program).
  {
    const pair = (a: number, b: number): Uint8Array =>
      new Uint8Array([...u32(a), ...u32(b)]);
    const xdpDev = loadXdpProgram("t_xdp_dev", "devmap");
    const xdpCpu = loadXdpProgram("t_xdp_cpu", "cpumap");
    held.push(xdpDev, xdpCpu);
    const dev = create({
      type: MapType.DEVMAP,
      keySize: 4,
      valueSize: 8,
      maxEntries: 4,
      name: "t_devmap",
    });
    mapUpdateElem(dev.fd.fd, u32(1), pair(1, xdpDev.fd));
    mapUpdateElem(dev.fd.fd, u32(3), pair(1, 0));
    emitTyped("devmap", dev.info);
    const devHash = create({
      type: MapType.DEVMAP_HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 8,
      name: "t_devhash",
    });
    for (const key of [77, 5, 13, 21, 8]) {
      mapUpdateElem(devHash.fd.fd, u32(key), u32(1));
    }
    emitTyped("devmap_hash", devHash.info);
    const cpu = create({
      type: MapType.CPUMAP,
      keySize: 4,
      valueSize: 8,
      maxEntries: cpus,
      name: "t_cpumap",
    });
    mapUpdateElem(cpu.fd.fd, u32(0), pair(192, xdpCpu.fd));
    if (cpus > 1) mapUpdateElem(cpu.fd.fd, u32(1), pair(64, 0));
    emitTyped("cpumap", cpu.info);
  }
  // SOCKMAP (8- and 4-byte values), SOCKHASH (8-byte keys, three sockets),
  // REUSEPORT_SOCKARRAY: real UDP sockets, kept open with the maps. The
  // live read numbers each socket (its cookie) before memory is read.
  {
    const sockets = [0, 1, 2].map(() => new UdpSocket(false, true));
    const reuse = new UdpSocket(true, true);
    held.push(...sockets, reuse);
    const sockmap = create({
      type: MapType.SOCKMAP,
      keySize: 4,
      valueSize: 8,
      maxEntries: 4,
      name: "t_sockmap",
    });
    mapUpdateElem(sockmap.fd.fd, u32(1), u64(sockets[0]!.fd));
    mapUpdateElem(sockmap.fd.fd, u32(2), u64(sockets[1]!.fd));
    emitTyped("sockmap", sockmap.info);
    const sockmap4 = create({
      type: MapType.SOCKMAP,
      keySize: 4,
      valueSize: 4,
      maxEntries: 2,
      name: "t_sockmap4",
    });
    mapUpdateElem(sockmap4.fd.fd, u32(0), u32(sockets[2]!.fd));
    emitTyped("sockmap4", sockmap4.info);
    const sockhash = create({
      type: MapType.SOCKHASH,
      keySize: 8,
      valueSize: 8,
      maxEntries: 6,
      name: "t_sockhash",
    });
    [9, 4, 1000].forEach((key, i) => {
      mapUpdateElem(sockhash.fd.fd, u64(key), u64(sockets[i]!.fd));
    });
    emitTyped("sockhash", sockhash.info);
    const reuseport = create({
      type: MapType.REUSEPORT_SOCKARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 3,
      name: "t_reuseport",
    });
    mapUpdateElem(reuseport.fd.fd, u32(2), u64(reuse.fd));
    emitTyped("reuseport_sockarray", reuseport.info, {
      cookie: String(reuse.cookie()),
    });
  }
  // PERF_EVENT_ARRAY: bpf() refuses every slot; memory must say the same.
  {
    const { info } = create({
      type: MapType.PERF_EVENT_ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 3,
      name: "t_perf",
    });
    emitTyped("perf_event_array", info);
  }
}

try {
  await main(Deno.args);
} catch (error) {
  console.log("BPFMAP-AGENT-ERROR " + String((error as Error)?.stack ?? error));
}
setInterval(() => {}, 1 << 30);
