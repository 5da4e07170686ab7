import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type { BpfMapInfo } from "../src/accessor/types.ts";
import {
  bloomContains,
  KernelSymbols,
  LIVE_TYPE_READERS,
  liveReaderFor,
  parseRingbuf,
  readMapTypeLive,
} from "../src/accessor/maptypes/mod.ts";
import {
  readRingbufLive,
  RingbufReader,
} from "../src/accessor/maptypes/ringbuf.ts";
import {
  peekQueueLive,
  QUEUE_NOTE,
} from "../src/accessor/maptypes/queue_stack.ts";
import { readSlotsLive } from "../src/accessor/maptypes/fd_slots.ts";
import { readStackTracesLive } from "../src/accessor/maptypes/stack_trace.ts";
import { readMapOfMapsLive } from "../src/accessor/maptypes/map_in_map.ts";
import { mapUpdateElem } from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import { pageSize } from "../src/sys/elem.ts";
import type { OwnedFd } from "../src/sys/fd.ts";
import { progGetInfo, progTestRun } from "../src/sys/prog.ts";
import { MapArgumentError, MapTypeError } from "../src/errors.ts";
import { ignoreUnlessCommands, ignoreUnlessRoot } from "./_support/env.ts";
import {
  loadRingbufOutputProgram,
  loadRingbufReserveProgram,
  loadStackIdProgram,
  loadTrivialProgram,
  loadXdpProgram,
} from "./_support/bpf_prog.ts";
import { SharedMapping, UdpSocket } from "./_support/libc.ts";
import { infoOf, readU32, u32, u64, uniqueName } from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();
const accessor = new BpfSyscallAccessor();
const PAGE = pageSize();
const NO_BPFTOOL = ignoreUnlessCommands("bpftool");

/** bpftool's JSON for `args`, or undefined when bpftool is not installed (then CI fails instead). */
function bpftoolJson(...args: string[]): unknown {
  if (NO_BPFTOOL) return undefined;
  const run = new Deno.Command("bpftool", { args: ["-j", ...args] })
    .outputSync();
  const text = new TextDecoder().decode(run.stdout);
  assert.ok(run.success, `bpftool ${args.join(" ")}: ${text}`);
  return JSON.parse(text);
}

function create(
  type: number,
  keySize: number,
  valueSize: number,
  maxEntries: number,
  extra: { innerMapFd?: number; mapExtra?: bigint; flags?: number } = {},
): OwnedFd {
  return BpfSyscallAccessor.createMap({
    type,
    keySize,
    valueSize,
    maxEntries,
    name: uniqueName("mt"),
    ...extra,
  });
}

function args(a: bigint, b: bigint): Uint8Array {
  const ctx = new Uint8Array(16);
  const view = new DataView(ctx.buffer);
  view.setBigUint64(0, a, true);
  view.setBigUint64(8, b, true);
  return ctx;
}

function le64(bytes: Uint8Array, offset = 0): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .getBigUint64(offset, true);
}

Deno.test({
  name: "ringbuf: records the kernel wrote, flags and data, without consuming",
  ignore,
  fn(): void {
    using ring = create(MapType.RINGBUF, 0, 0, 4 * PAGE);
    using output = loadRingbufOutputProgram("mt_rb_out", ring.fd);
    using discard = loadRingbufReserveProgram(
      "mt_rb_disc",
      ring.fd,
      16,
      "discard",
    );
    const big = 0xfedcba9876543210n;
    progTestRun(output.fd, { ctx: args(1n, big) });
    progTestRun(discard.fd, { ctx: args(2n, 0n) });
    progTestRun(output.fd, { ctx: args(3n, big + 1n) });
    const map = infoOf(ring);
    const first = readRingbufLive(map);
    assert.equal(first.capacity, 4 * PAGE);
    assert.equal(first.consumerPos, 0n);
    assert.equal(first.producerPos, 72n);
    assert.equal(first.pendingBytes, 72n);
    assert.deepEqual(first.problems, []);
    assert.deepEqual(
      first.records.map((r) => [r.position, r.length, r.busy, r.discarded]),
      [[0n, 16, false, false], [24n, 16, false, true], [48n, 16, false, false]],
    );
    assert.equal(le64(first.records[0]!.data), 1n);
    assert.equal(le64(first.records[0]!.data, 8), big);
    assert.equal(le64(first.records[1]!.data), 2n);
    assert.equal(le64(first.records[2]!.data, 8), big + 1n);
    // Reading again sees the same: nothing was consumed.
    const second = readRingbufLive(map);
    assert.equal(second.consumerPos, 0n);
    assert.equal(second.records.length, 3);
    // A held reader sees the same, and later records as they arrive.
    {
      using reader = RingbufReader.open(map);
      assert.equal(reader.read().count, 3);
      progTestRun(output.fd, { ctx: args(4n, 0n) });
      const later = reader.read();
      assert.equal(later.count, 4);
      assert.equal(le64(later.record(3).data), 4n);
      assert.throws(() => later.record(4), RangeError);
    }
    // Through the registry, the same reader applies.
    const typed = readMapTypeLive(map);
    assert.equal(typed?.reader, "ringbuf");
  },
});

Deno.test({
  name: "ringbuf: a record straddling the end of the data area reads whole",
  ignore,
  fn(): void {
    const capacity = PAGE;
    using ring = create(MapType.RINGBUF, 0, 0, capacity);
    // Records of 40 data bytes take 48; the ring holds 85 of them in 4 KiB.
    using producer = loadRingbufReserveProgram(
      "mt_rb_wrap",
      ring.fd,
      40,
      "submit",
    );
    const size = 48;
    const before = Math.floor(capacity / size) - 1;
    for (let i = 0; i < before; i++) {
      progTestRun(producer.fd, { ctx: args(BigInt(i), 0n) });
    }
    // Play the real consumer: move consumer_pos to the producer position,
    // through the one writable mapping the kernel allows.
    using fd = accessor.open(infoOf(ring), 0);
    using consumer = new SharedMapping(fd.fd, PAGE, 0, true);
    using positions = new SharedMapping(fd.fd, PAGE, PAGE, false);
    const producerPos = le64(positions.bytes);
    assert.equal(producerPos, BigInt(before * size));
    new DataView(consumer.bytes.buffer).setBigUint64(0, producerPos, true);
    for (let i = 0; i < 3; i++) {
      assert.equal(
        progTestRun(producer.fd, { ctx: args(0xabc000n + BigInt(i), 0n) })
          .retval,
        0,
      );
    }
    const snapshot = readRingbufLive(infoOf(ring));
    assert.equal(snapshot.consumerPos, producerPos);
    assert.equal(snapshot.pendingBytes, BigInt(3 * size));
    assert.deepEqual(snapshot.problems, []);
    assert.equal(snapshot.records.length, 3);
    const wrapped = snapshot.records.filter((r) => {
      const start = Number((r.position + 8n) % BigInt(capacity));
      return start + r.length > capacity;
    });
    assert.ok(wrapped.length >= 1, "one record must cross the end");
    snapshot.records.forEach((record, i) => {
      assert.equal(le64(record.data), 0xabc000n + BigInt(i));
    });
  },
});

Deno.test({
  name: "user ringbuf: records a user-space producer wrote, busy flag kept",
  ignore,
  fn(): void {
    using ring = create(MapType.USER_RINGBUF, 0, 0, PAGE);
    using fd = accessor.open(infoOf(ring), 0);
    // Producer page + data area, writable as a user-space producer maps it.
    using producer = new SharedMapping(fd.fd, PAGE + 2 * PAGE, PAGE, true);
    const view = new DataView(producer.bytes.buffer);
    const data = PAGE;
    view.setUint32(data, 12, true);
    view.setUint32(data + 8, 0xdeadbeef, true);
    view.setUint32(data + 24, 4 | (1 << 31), true);
    view.setUint32(data + 32, 7, true);
    view.setBigUint64(0, 40n, true);
    const snapshot = readRingbufLive(infoOf(ring));
    assert.equal(snapshot.kind, "user_ringbuf");
    assert.equal(snapshot.producerPos, 40n);
    assert.deepEqual(
      snapshot.records.map((r) => [r.position, r.length, r.busy]),
      [[0n, 12, false], [24n, 4, true]],
    );
    assert.equal(readU32(snapshot.records[0]!.data), 0xdeadbeef);
    assert.equal(readU32(snapshot.records[1]!.data), 7);
  },
});

Deno.test("ringbuf parse: hostile positions and headers stay within the capacity", (): void => {
  const capacity = 4096;
  const data = new Uint8Array(2 * capacity);
  // All-zero headers: 8-byte empty records; the walk makes at most capacity/8 steps.
  const huge = parseRingbuf("ringbuf", 0n, 1n << 62n, data, capacity);
  assert.equal(huge.records.length, capacity / 8);
  assert.match(huge.problems[0]!, /exceed the capacity 4096/);
  const behind = parseRingbuf("ringbuf", 100n, 50n, data, capacity);
  assert.equal(behind.records.length, 0);
  assert.match(behind.problems[0]!, /behind consumer/);
  const lying = new Uint8Array(2 * capacity);
  new DataView(lying.buffer).setUint32(0, 0x3fffffff, true);
  const cut = parseRingbuf("ringbuf", 0n, 64n, lying, capacity);
  assert.equal(cut.records.length, 0);
  assert.match(cut.problems[0]!, /claims 1073741823 bytes but only 56/);
  const odd = parseRingbuf("ringbuf", 0n, 8n, data, 3000);
  assert.match(odd.problems[0]!, /not a power of two/);
  const short = parseRingbuf(
    "ringbuf",
    0n,
    8n,
    data.subarray(0, 100),
    capacity,
  );
  assert.match(short.problems[0]!, /double mapping needs 8192/);
  // Positions near 2^64 wrap the mask correctly and stay exact.
  const top = (1n << 64n) - 16n;
  const near = new Uint8Array(2 * capacity);
  new DataView(near.buffer).setUint32(capacity - 16, 4, true);
  const wrap = parseRingbuf("ringbuf", top, top + 16n, near, capacity);
  assert.deepEqual(wrap.records.map((r) => r.position), [top]);
});

Deno.test("ringbuf parse: records larger than a copy chunk, and a bad header after one, keep the whole span", (): void => {
  const capacity = 1 << 20;
  const data = new Uint8Array(2 * capacity);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  const view = new DataView(data.buffer);
  const start = capacity - 4096; // the span wraps into the second copy
  // a 300,000-byte record (past the 256 KiB copy chunk), a 100-byte one,
  // then a header claiming more than is pending
  const sizes = [300_000, 100];
  let at = start;
  // headers go in at their ring offset; the second copy then mirrors the first
  for (const size of sizes) {
    view.setUint32(at % capacity, size, true);
    view.setUint32((at + 4) % capacity, 0, true);
    at += (size + 8 + 7) & ~7;
  }
  view.setUint32(at % capacity, 0x00ffffff, true);
  const pending = 600_000;
  data.copyWithin(capacity, 0, capacity);
  const snapshot = parseRingbuf(
    "ringbuf",
    BigInt(start),
    BigInt(start + pending),
    data,
    capacity,
  );
  assert.deepEqual(snapshot.records.map((r) => r.length), sizes);
  assert.match(snapshot.problems[0]!, /claims 16777215 bytes/);
  assert.equal(snapshot.span.byteLength, pending);
  assert.deepEqual(snapshot.span, data.subarray(start, start + pending));
  assert.deepEqual(
    snapshot.record(0).data,
    data.subarray(start + 8, start + 8 + 300_000),
  );
});

Deno.test({
  name: "queue and stack: the head is peeked, never popped",
  ignore,
  fn(): void {
    for (const [type, expected] of [[MapType.QUEUE, 10], [MapType.STACK, 30]]) {
      using fd = create(type!, 0, 4, 8);
      const map = infoOf(fd);
      assert.equal(peekQueueLive(map).head, null);
      for (const value of [10, 20, 30]) mapUpdateElem(fd.fd, null, u32(value));
      for (let i = 0; i < 2; i++) {
        const peek = peekQueueLive(map);
        assert.equal(readU32(peek.head!), expected);
        assert.equal(peek.note, QUEUE_NOTE);
      }
      const shown = bpftoolJson("map", "peek", "id", String(map.id)) as
        | { value: string[] }
        | undefined;
      if (shown) assert.deepEqual(shown.value.map(Number), [...u32(expected!)]);
    }
  },
});

Deno.test({
  name: "bloom filter: membership test, wrong sizes refused",
  ignore,
  fn(): void {
    using fd = create(MapType.BLOOM_FILTER, 0, 8, 100, { mapExtra: 3n });
    const map = infoOf(fd);
    for (const value of [1n, 2n, 1n << 63n]) {
      mapUpdateElem(fd.fd, null, u64(value));
    }
    for (const value of [1n, 2n, 1n << 63n]) {
      assert.equal(bloomContains(map, u64(value)), true);
    }
    assert.equal(bloomContains(map, u64(12345n)), false);
    assert.throws(() => bloomContains(map, u32(1)), MapArgumentError);
    const typed = readMapTypeLive(map);
    assert.ok(typed?.reader === "bloom");
    assert.equal(typed.bloom.hashes, 3);
    assert.throws(
      () => bloomContains({ ...map, type: MapType.HASH }, u64(1n)),
      MapTypeError,
    );
  },
});

Deno.test({
  name:
    "prog array: program ids and names in populated slots, empty slots marked",
  ignore,
  fn(): void {
    using fd = create(MapType.PROG_ARRAY, 4, 4, 4);
    using first = loadTrivialProgram("mt_first");
    using second = loadTrivialProgram("mt_second", 1);
    mapUpdateElem(fd.fd, u32(0), u32(first.fd));
    mapUpdateElem(fd.fd, u32(2), u32(second.fd));
    const dump = readSlotsLive(infoOf(fd));
    assert.deepEqual(
      dump.slots.map((
        s,
      ) => [readU32(s.key), s.status, s.object?.progId, s.object?.progName]),
      [
        [0, "value", progGetInfo(first.fd).id, "mt_first"],
        [1, "empty", undefined, undefined],
        [2, "value", progGetInfo(second.fd).id, "mt_second"],
        [3, "empty", undefined, undefined],
      ],
    );
  },
});

Deno.test({
  name: "devmap, devmap_hash, cpumap: ifindex, qsize and attached program ids",
  ignore,
  fn(): void {
    using xdpDev = loadXdpProgram("mt_xdp_dev", "devmap");
    using xdpCpu = loadXdpProgram("mt_xdp_cpu", "cpumap");
    const devId = progGetInfo(xdpDev.fd).id;
    const cpuId = progGetInfo(xdpCpu.fd).id;
    const pair = (a: number, b: number) =>
      new Uint8Array([...u32(a), ...u32(b)]);
    {
      using fd = create(MapType.DEVMAP, 4, 8, 2);
      mapUpdateElem(fd.fd, u32(1), pair(1, xdpDev.fd));
      const dump = readSlotsLive(infoOf(fd));
      assert.equal(dump.slots[0]!.status, "empty");
      assert.equal(dump.slots[0]!.error, "No such file or directory");
      assert.deepEqual(dump.slots[1]!.object, {
        ifindex: 1,
        progId: devId,
        progName: "mt_xdp_dev",
      });
    }
    {
      using fd = create(MapType.DEVMAP_HASH, 4, 4, 8);
      mapUpdateElem(fd.fd, u32(77), u32(1));
      const dump = readSlotsLive(infoOf(fd));
      assert.deepEqual(dump.slots.map((s) => [readU32(s.key), s.object]), [
        [77, { ifindex: 1 }],
      ]);
    }
    {
      using fd = create(MapType.CPUMAP, 4, 8, 2);
      mapUpdateElem(fd.fd, u32(0), pair(192, xdpCpu.fd));
      const dump = readSlotsLive(infoOf(fd));
      assert.deepEqual(dump.slots[0]!.object, {
        qsize: 192,
        progId: cpuId,
        progName: "mt_xdp_cpu",
      });
      assert.equal(dump.slots[1]!.status, "empty");
    }
  },
});

Deno.test({
  name:
    "sockmap, sockhash, reuseport array: socket cookies; 4-byte values say ENOSPC",
  ignore,
  fn(): void {
    using a = new UdpSocket();
    using b = new UdpSocket(true);
    {
      using fd = create(MapType.SOCKMAP, 4, 8, 2);
      mapUpdateElem(fd.fd, u32(1), u64(BigInt(a.fd)));
      const dump = readSlotsLive(infoOf(fd));
      assert.equal(dump.slots[0]!.status, "empty");
      assert.equal(dump.slots[1]!.object?.cookie, a.cookie());
    }
    {
      using fd = create(MapType.SOCKHASH, 4, 8, 4);
      mapUpdateElem(fd.fd, u32(9), u64(BigInt(a.fd)));
      const dump = readSlotsLive(infoOf(fd));
      assert.deepEqual(
        dump.slots.map((s) => [readU32(s.key), s.object?.cookie]),
        [
          [9, a.cookie()],
        ],
      );
    }
    {
      using fd = create(MapType.REUSEPORT_SOCKARRAY, 4, 8, 2);
      mapUpdateElem(fd.fd, u32(0), u64(BigInt(b.fd)));
      const dump = readSlotsLive(infoOf(fd));
      assert.equal(dump.slots[0]!.object?.cookie, b.cookie());
    }
    {
      using fd = create(MapType.SOCKMAP, 4, 4, 1);
      mapUpdateElem(fd.fd, u32(0), u32(a.fd));
      const dump = readSlotsLive(infoOf(fd));
      assert.equal(dump.slots[0]!.status, "error");
      assert.equal(dump.slots[0]!.error, "No space left on device");
    }
  },
});

Deno.test({
  name:
    "perf event, cgroup and xsk maps: every slot an error, the walk completes",
  ignore,
  fn(): void {
    for (
      const [type, error] of [
        [MapType.PERF_EVENT_ARRAY, "Unknown error 524"],
        [MapType.CGROUP_ARRAY, "Unknown error 524"],
        [MapType.XSKMAP, "Operation not supported"],
      ] as const
    ) {
      using fd = create(type, 4, 4, 3);
      const dump = readSlotsLive(infoOf(fd));
      assert.deepEqual(
        dump.slots.map((s) => [readU32(s.key), s.status, s.error]),
        [0, 1, 2].map((i) => [i, "error", error]),
      );
    }
  },
});

Deno.test({
  name: "stack trace: kernel stacks a program stored, symbolised from kallsyms",
  ignore,
  fn(): void {
    using fd = create(MapType.STACK_TRACE, 4, 8 * 64, 16);
    using prog = loadStackIdProgram("mt_stackid", fd.fd);
    const id = progTestRun(prog.fd, { ctx: new Uint8Array(8) }).retval;
    assert.ok(id >= 0 && id < 16, `stack id ${id}`);
    const symbols = KernelSymbols.load();
    const dump = readStackTracesLive(infoOf(fd), symbols);
    assert.deepEqual(dump.stacks.map((s) => s.id), [id]);
    const frames = dump.stacks[0]!.frames;
    assert.ok(frames.length > 0);
    assert.ok(
      frames.every((f) =>
        f.symbol !== undefined && /\+0x[0-9a-f]+$/.test(f.symbol)
      ),
    );
    // The program ran under BPF_PROG_TEST_RUN: its runner must be on the stack.
    assert.ok(
      frames.some((f) => f.symbol!.includes("test_run")),
      frames.map((f) => f.symbol).join(" "),
    );
    const shown = bpftoolJson("map", "dump", "id", String(infoOf(fd).id)) as
      | { value: string[] }[]
      | undefined;
    if (shown) {
      assert.deepEqual(shown[0]!.value.map(Number), [...dump.stacks[0]!.value]);
    }
  },
});

Deno.test({
  name:
    "stack trace with build ids: user frames as build id + offset, bytes as bpftool shows them",
  ignore,
  fn(): void {
    using fd = create(MapType.STACK_TRACE, 4, 32 * 16, 4, {
      flags: MapFlag.STACK_BUILD_ID,
    });
    const USER_STACK = 1 << 8;
    using prog = loadStackIdProgram("mt_stack_bid", fd.fd, USER_STACK);
    const id = progTestRun(prog.fd, { ctx: new Uint8Array(8) }).retval;
    assert.ok(id >= 0 && id < 4, `stack id ${id}`);
    const dump = readStackTracesLive(infoOf(fd));
    assert.equal(dump.buildId, true);
    assert.deepEqual(dump.stacks.map((s) => s.id), [id]);
    const frames = dump.stacks[0]!.frames;
    assert.ok(frames.length > 0);
    for (const frame of frames) {
      assert.ok(frame.buildIdStatus === 1 || frame.buildIdStatus === 2);
      assert.match(frame.buildId!, /^[0-9a-f]{40}$/);
      assert.equal(frame.symbol, undefined);
    }
    // Frames in files with a build id (libc's syscall() at least) resolve to one.
    assert.ok(
      frames.some((f) => f.buildIdStatus === 1 && /[1-9a-f]/.test(f.buildId!)),
    );
    const shown = bpftoolJson("map", "dump", "id", String(infoOf(fd).id)) as
      | { value: string[] }[]
      | undefined;
    if (shown) {
      assert.deepEqual(shown[0]!.value.map(Number), [...dump.stacks[0]!.value]);
    }
  },
});

Deno.test("kallsyms: nearest symbol below, offsets exact, data symbols ignored", (): void => {
  const table = KernelSymbols.parse(
    [
      "ffffffff81000000 T _text",
      "ffffffff81000100 t helper",
      "ffffffff81000180 D some_data",
      "ffffffffc0001000 t mod_fn\t[mymod]",
      "0000000000000000 T hidden",
    ].join("\n"),
  );
  assert.equal(table.size, 3);
  assert.equal(table.symbolize(0xffffffff810001a0n), "helper+0xa0");
  assert.equal(table.symbolize(0xffffffffc0001004n), "mod_fn+0x4");
  assert.equal(table.symbolize(0xffffffff80000000n), null);
});

Deno.test({
  name:
    "array of maps: inner map ids, and inner maps read in place when recursing",
  ignore,
  fn(): void {
    using inner = create(MapType.ARRAY, 4, 8, 2);
    mapUpdateElem(inner.fd, u32(1), u64(0xffffffffffffffffn));
    using outer = create(MapType.ARRAY_OF_MAPS, 4, 4, 3, {
      innerMapFd: inner.fd,
    });
    mapUpdateElem(outer.fd, u32(2), u32(inner.fd));
    const innerId = infoOf(inner).id;
    const flat = readMapOfMapsLive(infoOf(outer));
    assert.deepEqual(
      flat.slots.map((s) => [readU32(s.key), s.status, s.innerMapId]),
      [[0, "empty", undefined], [1, "empty", undefined], [2, "value", innerId]],
    );
    const live = new BpfSyscallAccessor();
    const deep = live.readTypeDump(infoOf(outer), { recurse: true });
    assert.ok(deep?.reader === "maps_of_maps");
    const slot = deep.mapsOfMaps.slots[2]!;
    assert.ok(slot.inner?.dump.reader === "keyed");
    assert.equal(slot.inner.map.id, innerId);
    assert.equal(
      le64(slot.inner.dump.keyed.entries[1]!.value),
      0xffffffffffffffffn,
    );
    const bounded = live.readTypeDump(infoOf(outer), {
      recurse: true,
      maxDepth: 0,
    });
    assert.ok(bounded?.reader === "maps_of_maps");
    assert.equal(bounded.mapsOfMaps.slots[2]!.innerSkipped, "depth 0 reached");
  },
});

Deno.test("registry: every known type has one reader or the keyed path; unknown types are not readable", (): void => {
  const seen = new Set<number>();
  for (const reader of LIVE_TYPE_READERS) {
    for (const type of reader.types) {
      assert.ok(!seen.has(type), `type ${type} has two readers`);
      seen.add(type);
    }
  }
  for (const type of Object.values(MapType)) {
    if (type === MapType.UNSPEC) continue;
    assert.notEqual(liveReaderFor(type), null, `type ${type} has no reader`);
  }
  for (const type of [0, 34, 35, 999]) {
    assert.equal(liveReaderFor(type), null);
    const fake: BpfMapInfo = {
      id: 1,
      name: "x",
      type,
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
    const result = readMapTypeLive(fake);
    assert.ok(result?.reader === "unreadable");
    assert.match(result.unreadable.reason, new RegExp(`\\b${type}\\b`));
  }
});
