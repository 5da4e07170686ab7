/**
 * The failure dump of the map types with their own reader, on real maps the
 * kernel filled: ring buffer records, program slots, perf-event slots the
 * kernel never shows, stacks, a queue head, a bloom filter, an array of
 * maps, and an unknown type.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type {
  BpfMapAccessor,
  BpfMapInfo,
  ReadProblem,
} from "../src/accessor/types.ts";
import { readMapTypeLive } from "../src/accessor/maptypes/mod.ts";
import { parseJsonExact } from "../src/btf/mod.ts";
import {
  dumpState,
  type FailureDumpReport,
  type MapDump,
  reportToJson,
  reportToText,
  writeFailureDump,
} from "../src/dump/mod.ts";
import { mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import { pageSize } from "../src/sys/elem.ts";
import type { OwnedFd } from "../src/sys/fd.ts";
import { progGetInfo, progTestRun } from "../src/sys/prog.ts";
import {
  loadRingbufOutputProgram,
  loadRingbufReserveProgram,
  loadStackIdProgram,
  loadTrivialProgram,
} from "./_support/bpf_prog.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";
import { UdpSocket } from "./_support/libc.ts";
import { u32, u64 } from "./_support/maps.ts";
import { assertSnapshot } from "./dump_snapshot.ts";

const ignore = ignoreUnlessRoot();

function create(
  stack: DisposableStack,
  name: string,
  type: number,
  keySize: number,
  valueSize: number,
  maxEntries: number,
  extra: { innerMapFd?: number; mapExtra?: bigint } = {},
): OwnedFd {
  return stack.use(
    BpfSyscallAccessor.createMap({
      type,
      keySize,
      valueSize,
      maxEntries,
      name,
      ...extra,
    }),
  );
}

function ctx(a: bigint, b: bigint): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, a, true);
  view.setBigUint64(8, b, true);
  return bytes;
}

const BIG = 0xfedcba9876543210n;

/** One map of each per-type reader, filled by the kernel or by updates. */
interface Maps extends Disposable {
  ids: Record<string, number>;
  progIds: { first: number; second: number };
  stackId: number;
  cookie: bigint;
}

function makeMaps(): Maps {
  const stack = new DisposableStack();
  try {
    const ids: Record<string, number> = {};
    const idOf = (name: string, fd: OwnedFd) => {
      ids[name] = mapGetInfo(fd.fd).id;
    };

    const ring = create(stack, "dt_ring", MapType.RINGBUF, 0, 0, pageSize());
    idOf("ring", ring);
    {
      using output = loadRingbufOutputProgram("dt_rb_out", ring.fd);
      using discard = loadRingbufReserveProgram(
        "dt_rb_disc",
        ring.fd,
        16,
        "discard",
      );
      progTestRun(output.fd, { ctx: ctx(1n, BIG) });
      progTestRun(discard.fd, { ctx: ctx(2n, 0n) });
      progTestRun(output.fd, { ctx: ctx(3n, BIG + 1n) });
    }

    const progs = create(stack, "dt_progs", MapType.PROG_ARRAY, 4, 4, 4);
    idOf("progs", progs);
    const first = stack.use(loadTrivialProgram("dt_first"));
    const second = stack.use(loadTrivialProgram("dt_second", 1));
    mapUpdateElem(progs.fd, u32(0), u32(first.fd));
    mapUpdateElem(progs.fd, u32(2), u32(second.fd));

    idOf(
      "perf",
      create(stack, "dt_perf", MapType.PERF_EVENT_ARRAY, 4, 4, 3),
    );

    const stacks = create(
      stack,
      "dt_stacks",
      MapType.STACK_TRACE,
      4,
      8 * 64,
      8,
    );
    idOf("stacks", stacks);
    let stackId: number;
    {
      using prog = loadStackIdProgram("dt_stackid", stacks.fd);
      stackId = progTestRun(prog.fd, { ctx: new Uint8Array(8) }).retval;
    }

    const queue = create(stack, "dt_queue", MapType.QUEUE, 0, 4, 8);
    idOf("queue", queue);
    for (const value of [10, 20, 30]) {
      mapUpdateElem(queue.fd, null, u32(value));
    }

    const bloom = create(stack, "dt_bloom", MapType.BLOOM_FILTER, 0, 8, 64, {
      mapExtra: 3n,
    });
    idOf("bloom", bloom);
    mapUpdateElem(bloom.fd, null, u64(BIG));

    const inner = create(stack, "dt_inner", MapType.ARRAY, 4, 8, 2);
    idOf("inner", inner);
    mapUpdateElem(inner.fd, u32(1), u64(0xffffffffffffffffn));
    const outer = create(stack, "dt_outer", MapType.ARRAY_OF_MAPS, 4, 4, 3, {
      innerMapFd: inner.fd,
    });
    idOf("outer", outer);
    mapUpdateElem(outer.fd, u32(2), u32(inner.fd));

    // A socket map shows the socket's cookie only through an 8-byte value;
    // with a 4-byte value every lookup answers ENOSPC.
    const socket = stack.use(new UdpSocket());
    const sockets = create(stack, "dt_socks", MapType.SOCKMAP, 4, 8, 2);
    idOf("sockets", sockets);
    mapUpdateElem(sockets.fd, u32(1), u64(BigInt(socket.fd)));
    const narrow = create(stack, "dt_socks4", MapType.SOCKMAP, 4, 4, 2);
    idOf("narrow", narrow);
    mapUpdateElem(narrow.fd, u32(0), u32(socket.fd));

    const moved = stack.move();
    return {
      ids,
      progIds: {
        first: progGetInfo(first.fd).id,
        second: progGetInfo(second.fd).id,
      },
      stackId,
      cookie: socket.cookie(),
      [Symbol.dispose]: () => moved.dispose(),
    };
  } catch (error) {
    stack.dispose();
    throw error;
  }
}

function dumpOf(
  maps: Maps,
  accessor: BpfMapAccessor = new BpfSyscallAccessor(),
): FailureDumpReport {
  const ids = new Set(Object.values(maps.ids));
  return dumpState(accessor, {
    filter: (m) => ids.has(m.id),
    entryLimit: 2,
    source: "test",
    kernelRelease: "test-kernel",
    takenAt: new Date("2026-01-02T03:04:05Z"),
  });
}

function byId(report: FailureDumpReport, id: number): MapDump {
  const map = report.maps.find((m) => m.id === id);
  ok(map, `map ${id} is in the report`);
  return map;
}

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "failure dump: each per-type reader's result, in its documented shape",
  ignore,
  fn(): void {
    using maps = makeMaps();
    const report = dumpOf(maps);
    const { ids } = maps;
    for (const map of report.maps) {
      deepEqual(map.errors, [], `${map.name} has no errors`);
    }

    const ring = byId(report, ids.ring!);
    equal(ring.kind, "ringbuf");
    deepEqual(ring.ringbuf, {
      capacity: pageSize(),
      consumerPos: 0n,
      producerPos: 72n,
      pendingBytes: 72n,
      records: 3,
    });
    deepEqual(ring.entries, [
      { key: 0n, value: hexOf(ctx(1n, BIG)), length: 16 },
      {
        key: 24n,
        value: hexOf(
          new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, ...new Uint8Array(8)]),
        ),
        length: 16,
        discarded: true,
      },
    ]);
    equal(ring.omittedEntries, 1, "the third record is counted, not shown");

    const progs = byId(report, ids.progs!);
    equal(progs.kind, "slots");
    deepEqual(progs.entries, [
      {
        key: 0,
        value: hexOf(u32(maps.progIds.first)),
        object: { progId: maps.progIds.first, progName: "dt_first" },
      },
      {
        key: 2,
        value: hexOf(u32(maps.progIds.second)),
        object: { progId: maps.progIds.second, progName: "dt_second" },
      },
    ]);
    equal(progs.omittedEntries, 0, "empty slots are neither shown nor counted");

    const perf = byId(report, ids.perf!);
    equal(perf.kind, "slots");
    deepEqual(perf.entries, []);
    equal(perf.notes.length, 1);
    match(
      perf.notes[0]!,
      /^The kernel does not hand perf_event_array values to user space .*: 3 slots listed, none readable$/,
    );

    const stacks = byId(report, ids.stacks!);
    equal(stacks.kind, "stack-trace");
    deepEqual(stacks.stackTrace, { buildId: false });
    equal(stacks.entries.length, 1);
    const [trace] = stacks.entries;
    equal(trace!.key, maps.stackId);
    ok(trace!.frames!.length > 0);
    for (const frame of trace!.frames!) {
      match(frame.ip, /^0x[0-9a-f]{16}$/);
      match(frame.symbol!, /\+0x[0-9a-f]+$/);
    }
    ok(
      trace!.frames!.some((f) => f.symbol!.includes("test_run")),
      "the test runner that ran the program is on its stack",
    );

    const queue = byId(report, ids.queue!);
    equal(queue.kind, "queue");
    deepEqual(queue.queue, { kind: "queue", maxEntries: 8 });
    deepEqual(queue.entries, [{ key: "head", value: "0a000000" }]);
    match(queue.notes[0]!, /^Only the head is visible/);

    const bloom = byId(report, ids.bloom!);
    equal(bloom.kind, "bloom");
    deepEqual(bloom.bloom, { hashes: 3, valueSize: 8 });
    deepEqual(bloom.entries, []);
    match(bloom.notes[0]!, /^A bloom filter only answers membership tests/);

    const outer = byId(report, ids.outer!);
    equal(outer.kind, "maps-of-maps");
    deepEqual(outer.entries, [
      {
        key: 2,
        value: hexOf(u32(ids.inner!)),
        object: { innerMapId: ids.inner! },
      },
    ]);
    // The inner map is in the report as a map of its own, with its u64 exact.
    const inner = byId(report, ids.inner!);
    equal(inner.kind, "array");
    equal(inner.entries[1]!.value, "ffffffffffffffff");

    const sockets = byId(report, ids.sockets!);
    equal(sockets.kind, "slots");
    deepEqual(sockets.entries, [
      {
        key: 1,
        value: hexOf(u64(maps.cookie)),
        object: { cookie: maps.cookie },
      },
    ]);
    const narrow = byId(report, ids.narrow!);
    deepEqual(narrow.entries, []);
    match(
      narrow.notes[0]!,
      /^The kernel does not hand sockmap values to user space \(a lookup answers "No space left on device"\): 2 slots listed/,
    );

    // Streamed as read, the same document and text as collected.
    for (const format of ["json", "text"] as const) {
      const parts: string[] = [];
      const ids = new Set(Object.values(maps.ids));
      writeFailureDump(
        { text: (part) => parts.push(part) },
        new BpfSyscallAccessor(),
        {
          format,
          filter: (m) => ids.has(m.id),
          entryLimit: 2,
          source: "test",
          kernelRelease: "test-kernel",
          takenAt: new Date("2026-01-02T03:04:05Z"),
        },
      );
      const streamed = parts.join("");
      if (format === "json") {
        deepEqual(
          parseJsonExact(streamed),
          parseJsonExact(reportToJson(report)),
        );
      } else {
        equal(streamed, reportToText(report));
      }
    }

    // Positions survive JSON exactly.
    const back = parseJsonExact(reportToJson(report)) as FailureDumpReport;
    equal(back.schema, "bpfmap.failure-dump/3");
    equal(byId(back, ids.ring!).ringbuf!.producerPos, 72n);
    equal(byId(back, ids.sockets!).entries[0]!.object!.cookie, maps.cookie);
    deepEqual(byId(back, ids.ring!).entries, ring.entries);
  },
});

/** The text form with what differs between runs (ids, stack frames) replaced. */
function normalizedText(report: FailureDumpReport): string {
  return reportToText(report)
    // every program of the host, which other sessions' tests change
    .replace(
      /^== programs: \d+ ==\n( {2}prog .*\n)*/m,
      "== programs: HOST ==\n",
    )
    .replace(/^== map \d+ /gm, "== map ID ")
    .replace(/prog \d+ "/g, 'prog PROG "')
    .replace(/inner map \d+/g, "inner map ID")
    .replace(/^( {2}\d+: )"[0-9a-f]{8}"( {2}\()/gm, '$1"<id>"$2')
    .replace(
      /^( {2}\d+: )"[0-9a-f]{16}"( {2}\(socket cookie )\d+/gm,
      '$1"<cookie>"$2COOKIE',
    )
    .replace(/^ {2}stack \d+:$/gm, "  stack ID:")
    // The frames depend on the kernel build: their form is what is checked.
    .replace(
      /^ {4}0x[0-9a-f]{16} [\w.]+\+0x[0-9a-f]+$/gm,
      "    0xADDRESS sym+0xOFFSET",
    )
    .replace(/^( {4}0xADDRESS sym\+0xOFFSET\n)+/gm, "$1");
}

Deno.test({
  name: "failure dump: the text form of each reader's result (snapshot)",
  ignore,
  fn(): void {
    using maps = makeMaps();
    assertSnapshot("dump_types_report.txt", normalizedText(dumpOf(maps)));
  },
});

Deno.test({
  name:
    "bpfmap dump --json: a perf_event_array is a note, not a warning; exit 0 without --partial",
  ignore,
  async fn(): Promise<void> {
    using maps = makeMaps();
    const run = await runCli("dump", "--json", "--max-entries", "2");
    const report = parseJsonExact(run.stdout) as FailureDumpReport;
    const perf = byId(report, maps.ids.perf!);
    deepEqual(perf.errors, []);
    match(perf.notes[0]!, /does not hand perf_event_array values/);
    equal(byId(report, maps.ids.progs!).entries.length, 2);
    // Other sessions' maps on this machine may warn; ours never do.
    for (const id of Object.values(maps.ids)) {
      ok(!run.stderr.includes(`(id ${id})`), run.stderr);
    }
    equal(run.code, 0, run.stderr);
  },
});

/** The live accessor with its type readers switched off or replaced. */
function withTypeDump(
  live: BpfSyscallAccessor,
  readTypeDump: BpfMapAccessor["readTypeDump"],
  extraMaps: BpfMapInfo[] = [],
): BpfMapAccessor {
  return {
    kernelRelease: live.kernelRelease,
    possibleCpus: live.possibleCpus,
    maps: () => [...live.maps(), ...extraMaps],
    mapById: (id) => live.mapById(id),
    findMap: (suffix) => live.findMap(suffix),
    readValue: (m, o, l) => live.readValue(m, o, l),
    readArray: (m, k) => live.readArray(m, k),
    iterEntryBatches: (m, o) => live.iterEntryBatches(m, o),
    iterHashMap: (m) => live.iterHashMap(m),
    readPercpuArray: (m, k, n) => live.readPercpuArray(m, k, n),
    iterPercpuHashMap: (m, n) => live.iterPercpuHashMap(m, n),
    iterTaskStorage: (m) => live.iterTaskStorage(m),
    readArenaPages: (m) => live.readArenaPages(m),
    loadProgramBtfBytes: (m) => live.loadProgramBtfBytes(m),
    loadProgramBtf: (m, b) => live.loadProgramBtf(m, b),
    readTypeDump,
    problems: (): readonly ReadProblem[] => live.problems(),
    programs: () => live.programs(),
    programById: (id) => live.programById(id),
  };
}

Deno.test({
  name:
    "failure dump: a backend without type readers keeps the keyed and unsupported paths",
  ignore,
  fn(): void {
    using maps = makeMaps();
    const report = dumpOf(
      maps,
      withTypeDump(new BpfSyscallAccessor(), () => null),
    );
    const kinds = Object.fromEntries(
      Object.entries(maps.ids).map((
        [name, id],
      ) => [name, byId(report, id).kind]),
    );
    deepEqual(kinds, {
      ring: "unsupported",
      progs: "keyed",
      perf: "keyed",
      stacks: "keyed",
      queue: "unsupported",
      bloom: "unsupported",
      inner: "array",
      outer: "keyed",
      sockets: "keyed",
      narrow: "keyed",
    });
    // Without the reader, perf slots are per-entry errors again.
    ok(byId(report, maps.ids.perf!).entries.every((e) => e.error));
  },
});

Deno.test({
  name:
    "failure dump: a type bpfmap does not know is one note with its number, and a throwing reader one error",
  ignore,
  fn(): void {
    const live = new BpfSyscallAccessor();
    const unknown: BpfMapInfo = {
      id: 0x7ffffff0,
      name: "from_the_future",
      type: 999,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      flags: 0,
      btfId: 0,
      btfKeyTypeId: 0,
      btfValueTypeId: 0,
      btfVmlinuxValueTypeId: 0,
      mapExtra: 0n,
      frozen: false,
      memlock: 0n,
    };
    const gone: BpfMapInfo = {
      ...unknown,
      id: 0x7ffffff1,
      name: "gone_ring",
      type: MapType.RINGBUF,
    };
    const report = dumpState(
      withTypeDump(live, (map) => readMapTypeLive(map), [unknown, gone]),
      { filter: (m) => m.id >= 0x7ffffff0 },
    );
    const [future, ring] = report.maps;
    equal(future!.kind, "unreadable");
    deepEqual(future!.errors, []);
    deepEqual(future!.notes, [
      "Map type 999 is not known to bpfmap; its contents are not readable",
    ]);
    equal(ring!.kind, "ringbuf", "the kind its reader would have given");
    equal(ring!.errors.length, 1);
    match(ring!.errors[0]!, /^Cannot read contents: /);
    const text = reportToText(report);
    ok(text.includes("  note: Map type 999 is not known to bpfmap"), text);
  },
});

Deno.test("failure dump: a struct_ops reader result is one entry per member, programs as objects", () => {
  const live = new BpfSyscallAccessor();
  const ops: BpfMapInfo = {
    id: 0x7ffffff2,
    name: "cc_ops",
    type: MapType.STRUCT_OPS,
    keySize: 4,
    valueSize: 16,
    maxEntries: 1,
    flags: 0,
    btfId: 0,
    btfKeyTypeId: 0,
    btfValueTypeId: 0,
    btfVmlinuxValueTypeId: 1,
    mapExtra: 0n,
    frozen: false,
    memlock: 0n,
  };
  const report = dumpState(
    withTypeDump(live, (map) =>
      map.id === ops.id
        ? {
          reader: "struct_ops",
          structOps: {
            kind: "struct_ops",
            structName: "tcp_congestion_ops",
            state: "BPF_STRUCT_OPS_STATE_INUSE",
            refcnt: 1,
            members: [
              {
                name: "flags",
                offset: 0,
                kind: "data",
                value: 0xffffffffffffffffn,
              },
              {
                name: "ssthresh",
                offset: 8,
                kind: "prog",
                progId: 42,
                progName: "cc_ssthresh",
              },
              { name: "undo_cwnd", offset: 16, kind: "prog", progId: 0 },
            ],
            value: new Uint8Array(16),
            formatted: {},
          },
        }
        : null, [ops]),
    { filter: (m) => m.id === ops.id, entryLimit: 2 },
  );
  const [map] = report.maps;
  equal(map!.kind, "struct-ops");
  deepEqual(map!.structOps, {
    structName: "tcp_congestion_ops",
    state: "BPF_STRUCT_OPS_STATE_INUSE",
    refcnt: 1,
  });
  deepEqual(map!.entries, [
    { key: "flags", value: 0xffffffffffffffffn },
    { key: "ssthresh", object: { progId: 42, progName: "cc_ssthresh" } },
  ]);
  equal(map!.omittedEntries, 1);
  ok(reportToJson(report).includes('"value":18446744073709551615'));
  const text = reportToText(report);
  ok(
    text.includes(
      "struct tcp_congestion_ops, BPF_STRUCT_OPS_STATE_INUSE, refcnt 1",
    ),
    text,
  );
  ok(text.includes('  ssthresh: prog 42 "cc_ssthresh"'), text);
  ok(text.includes("  flags: 18446744073709551615"), text);
});

Deno.test({
  name:
    "failure dump: build-id stack frames keep the build id and the file offset",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.STACK_TRACE,
      keySize: 4,
      valueSize: 32 * 16,
      maxEntries: 4,
      flags: MapFlag.STACK_BUILD_ID,
      name: "dt_stack_bid",
    });
    const USER_STACK = 1 << 8;
    {
      using prog = loadStackIdProgram("dt_stack_bid", fd.fd, USER_STACK);
      progTestRun(prog.fd, { ctx: new Uint8Array(8) });
    }
    const id = mapGetInfo(fd.fd).id;
    const report = dumpState(new BpfSyscallAccessor(), {
      filter: (m) => m.id === id,
    });
    const [map] = report.maps;
    equal(map!.kind, "stack-trace");
    deepEqual(map!.stackTrace, { buildId: true });
    const frames = map!.entries[0]!.frames!;
    ok(frames.length > 0);
    for (const frame of frames) {
      match(frame.ip, /^0x[0-9a-f]{16}$/);
      match(frame.buildId!, /^[0-9a-f]{40}$/);
      equal(frame.symbol, undefined, "user frames are not named from kallsyms");
    }
    const withFile = frames.find((f) => f.buildIdStatus === 1);
    ok(withFile, "libc's syscall() at least has a build id");
    ok(
      reportToText(report).includes(
        `    offset ${withFile.ip} in build id ${withFile.buildId}`,
      ),
    );
  },
});
