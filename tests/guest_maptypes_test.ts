/**
 * The guest-memory readers of ring buffers, queues/stacks, bloom filters,
 * LPM tries, stack maps and fd arrays, on synthetic images laid out as the
 * kernel lays them out, plus hostile variants (each must end in one error
 * naming the address, never a hang). jhash is checked against the running
 * kernel's own bloom filter.
 */

import assert from "node:assert/strict";
import { bloomContains } from "../src/accessor/maptypes/bloom.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { GuestMemoryError } from "../src/guest/errors.ts";
import type { GuestMapRecord } from "../src/guest/map_records.ts";
import {
  guestBloomContains,
  readGuestBloom,
} from "../src/guest/maptypes/bloom.ts";
import { readGuestFdArray } from "../src/guest/maptypes/fd_arrays.ts";
import { jhash, jhash2 } from "../src/guest/maptypes/jhash.ts";
import type {
  BloomLayout,
  DevmapLayout,
  FdArrayLayout,
  LpmLayout,
  QueueStackLayout,
  RingbufLayout,
  SocketMapLayout,
  StackMapLayout,
} from "../src/guest/maptypes/layout.ts";
import { readGuestLpm } from "../src/guest/maptypes/lpm.ts";
import { readGuestDevmapHash } from "../src/guest/maptypes/net_devices.ts";
import { readGuestSockhash } from "../src/guest/maptypes/sockets.ts";
import { readGuestQueueStack } from "../src/guest/maptypes/queue_stack.ts";
import { readGuestRingbuf } from "../src/guest/maptypes/ringbuf.ts";
import { readGuestStacks } from "../src/guest/maptypes/stack_trace.ts";
import { mapCreate, mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import type { KernelAddressSpace } from "../src/guest/paging.ts";
import { parseRingbuf } from "../src/accessor/maptypes/ringbuf.ts";
import { KernelSymbols } from "../src/accessor/maptypes/kallsyms.ts";
import { FakeRam, PageTables, x86Space } from "./guest_fixture.ts";

const P = 0xffff888000000000n;

function world(): {
  ram: FakeRam;
  space: KernelAddressSpace;
  tables: PageTables;
} {
  const ram = new FakeRam(8 << 20, 0x200000n);
  const tables = new PageTables(ram, 4);
  const space = x86Space(ram.memory(), {
    physBase: 0n,
    rootPa: tables.root,
    levels: 4,
    pageOffset: P,
  });
  return { ram, space, tables };
}

function record(
  pa: bigint,
  fields: Partial<GuestMapRecord> & { type: number },
): GuestMapRecord {
  return {
    id: 9,
    name: "m",
    keySize: 4,
    valueSize: 8,
    maxEntries: 4,
    flags: 0,
    mapExtra: 0n,
    btfId: 0,
    btfKeyTypeId: 0,
    btfValueTypeId: 0,
    btfVmlinuxValueTypeId: 0,
    frozen: false,
    kernelAddress: P + pa,
    btfAddress: 0n,
    ...fields,
  };
}

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);
const u32le = (n: number): Uint8Array => {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, true);
  return out;
};

Deno.test("queue and stack: every element in pop order, across the wrap", () => {
  const { ram, space } = world();
  const layout: QueueStackLayout = {
    head: 80,
    tail: 84,
    size: 88,
    elements: 96,
  };
  const pa = ram.alloc();
  // size 5 (max_entries 4): elements pushed 1,2,3 with the ring wrapped
  ram.u32(pa + 80n, 1); // head
  ram.u32(pa + 84n, 3); // tail
  ram.u32(pa + 88n, 5);
  const slot = (i: number, v: number): void =>
    ram.set(pa + 96n + BigInt(i * 2), bytes(v, v + 100));
  slot(3, 1);
  slot(4, 2);
  slot(0, 3);
  slot(1, 0xee); // beyond head: not an element
  const rec = record(pa, { type: MapType.QUEUE, valueSize: 2 });
  assert.deepEqual(
    readGuestQueueStack(space, layout, rec, false).map((e) => [...e]),
    [[1, 101], [2, 102], [3, 103]],
  );
  assert.deepEqual(
    readGuestQueueStack(space, layout, rec, true).map((e) => [...e]),
    [[3, 103], [2, 102], [1, 101]],
  );
  ram.u32(pa + 84n, 1); // head == tail: empty
  assert.deepEqual(readGuestQueueStack(space, layout, rec, false), []);
  ram.u32(pa + 80n, 7); // head out of range
  assert.throws(
    () => readGuestQueueStack(space, layout, rec, false),
    (e: unknown) => e instanceof GuestMemoryError && /head 7/.test(e.message),
  );
});

Deno.test("ring buffer: positions and the pending span through the double mapping", () => {
  const { ram, space, tables } = world();
  const layout: RingbufLayout = {
    rb: 8,
    mask: 16,
    consumerPos: 4096,
    producerPos: 8192,
    data: 12288,
  };
  const mapPa = ram.alloc();
  const meta = ram.alloc(3 * 4096);
  const dataPa = ram.alloc(4096);
  const rbVa = 0xffffc90000100000n;
  for (let i = 0n; i < 3n; i++) tables.map(rbVa + i * 4096n, meta + i * 4096n);
  // the one data page, mapped twice in a row as bpf_ringbuf_area_alloc does
  tables.map(rbVa + 3n * 4096n, dataPa);
  tables.map(rbVa + 4n * 4096n, dataPa);
  ram.u64(mapPa + 8n, rbVa);
  ram.u64(meta + 16n, 4095n);
  // one 5-byte record written at ring offset 4088: header + data wrap
  const consumer = (1n << 40n) + 4088n; // u64 exact, far past 2^32
  ram.u64(meta + 4096n, consumer);
  ram.u64(meta + 8192n, consumer + 16n);
  const record8 = new Uint8Array(16);
  new DataView(record8.buffer).setUint32(0, 5, true);
  record8.set([1, 2, 3, 4, 5], 8);
  ram.set(dataPa + 4088n, record8.subarray(0, 8));
  ram.set(dataPa, record8.subarray(8));
  const rec = record(mapPa, { type: MapType.RINGBUF, maxEntries: 4096 });
  const ring = readGuestRingbuf(space, layout, rec);
  assert.equal(ring.consumerPos, consumer);
  assert.equal(ring.pending.byteLength, 16);
  const area = new Uint8Array(8192);
  area.set(ring.pending, 4088);
  const snapshot = parseRingbuf(
    "ringbuf",
    ring.consumerPos,
    ring.producerPos,
    area,
    4096,
  );
  assert.deepEqual(snapshot.problems, []);
  assert.equal(snapshot.count, 1);
  assert.deepEqual([...snapshot.record(0).data], [1, 2, 3, 4, 5]);
  // a mask that is not this map's: refused with the address
  ram.u64(meta + 16n, 8191n);
  assert.throws(
    () => readGuestRingbuf(space, layout, rec),
    /mask \+ 1 is 8192/,
  );
});

Deno.test("LPM trie: post-order, intermediate nodes skipped, cycles refused", () => {
  const { ram, space } = world();
  const layout: LpmLayout = {
    root: 200,
    nEntries: 208,
    dataSize: 216,
    child: 16,
    prefixlen: 32,
    flags: 36,
    data: 40,
  };
  const mapPa = ram.alloc();
  ram.u64(mapPa + 216n, 4n);
  const node = (
    prefix: number,
    flags: number,
    data: number[],
    value: number,
  ): bigint => {
    const pa = ram.alloc();
    ram.u32(pa + 32n, prefix);
    ram.u32(pa + 36n, flags);
    ram.set(pa + 40n, bytes(...data));
    ram.u32(pa + 44n, value);
    return pa;
  };
  // 10.0.0.0/8 with children 10.0.0.0/16 (left) and an intermediate
  // 10.128.0.0/9 holding 10.128.0.0/16 and 10.192.0.0/16
  const a = node(16, 0, [10, 0, 0, 0], 2);
  const b = node(16, 0, [10, 128, 0, 0], 3);
  const c = node(16, 0, [10, 192, 0, 0], 4);
  const im = node(9, 1, [10, 128, 0, 0], 0);
  const root = node(8, 0, [10, 0, 0, 0], 1);
  ram.u64(root + 16n, P + a);
  ram.u64(root + 24n, P + im);
  ram.u64(im + 16n, P + b);
  ram.u64(im + 24n, P + c);
  ram.u64(mapPa + 200n, P + root);
  const rec = record(mapPa, {
    type: MapType.LPM_TRIE,
    keySize: 8,
    valueSize: 4,
    maxEntries: 4,
  });
  const entries = readGuestLpm(space, layout, rec);
  assert.deepEqual(
    entries.map((
      e,
    ) => [[...e.key], new DataView(e.value.buffer).getUint32(0, true)]),
    [
      [[16, 0, 0, 0, 10, 0, 0, 0], 2],
      [[16, 0, 0, 0, 10, 128, 0, 0], 3],
      [[16, 0, 0, 0, 10, 192, 0, 0], 4],
      [[8, 0, 0, 0, 10, 0, 0, 0], 1],
    ],
  );
  // a child pointing back at the root: an error naming the node
  ram.u64(c + 16n, P + root);
  assert.throws(
    () => readGuestLpm(space, layout, rec),
    (e: unknown) => e instanceof GuestMemoryError && /cycle/.test(e.message),
  );
  ram.u64(c + 16n, 0n);
  // a prefix longer than the key: refused
  ram.u32(a + 32n, 33);
  assert.throws(() => readGuestLpm(space, layout, rec), /prefixlen 33/);
});

Deno.test("LPM trie: a self-similar chain longer than 2 * max_entries + 1 ends in an error", () => {
  const { ram, space } = world();
  const layout: LpmLayout = {
    root: 200,
    nEntries: 208,
    dataSize: 216,
    child: 0,
    prefixlen: 16,
    flags: 20,
    data: 24,
  };
  const mapPa = ram.alloc();
  ram.u64(mapPa + 216n, 4n);
  let previous = 0n;
  for (let i = 0; i < 50; i++) {
    const pa = ram.alloc(64);
    ram.u64(pa, previous === 0n ? 0n : P + previous);
    ram.u32(pa + 20n, 1);
    previous = pa;
  }
  ram.u64(mapPa + 200n, P + previous);
  const rec = record(mapPa, {
    type: MapType.LPM_TRIE,
    keySize: 8,
    maxEntries: 4,
  });
  assert.throws(() => readGuestLpm(space, layout, rec), /more than 9 nodes/);
});

Deno.test("stack map: frames zero-padded to value_size, bad buckets listed", () => {
  const { ram, space } = world();
  const layout: StackMapLayout = {
    nBuckets: 100,
    buckets: 112,
    bucketNr: 20,
    bucketData: 24,
  };
  const mapPa = ram.alloc();
  ram.u32(mapPa + 100n, 4);
  const bucket = ram.alloc();
  ram.u32(bucket + 20n, 2);
  ram.u64(bucket + 24n, 0xffffffff81000010n);
  ram.u64(bucket + 32n, 0xffffffff81000020n);
  ram.u64(bucket + 40n, 0xdeadn); // beyond nr: must not show
  const broken = ram.alloc();
  ram.u32(broken + 20n, 99);
  ram.u64(mapPa + 112n + 8n, P + bucket);
  ram.u64(mapPa + 112n + 24n, P + broken);
  const rec = record(mapPa, {
    type: MapType.STACK_TRACE,
    valueSize: 32,
    maxEntries: 3,
  });
  const { stacks, errors } = readGuestStacks(space, layout, rec, 8);
  assert.equal(stacks.length, 1);
  assert.equal(stacks[0]!.id, 1);
  const view = new DataView(stacks[0]!.value.buffer);
  assert.equal(view.getBigUint64(8, true), 0xffffffff81000020n);
  assert.equal(view.getBigUint64(16, true), 0n);
  assert.deepEqual(errors.map((e) => e.id), [3]);
  assert.match(errors[0]!.error, /99 frames/);
  ram.u32(mapPa + 100n, 1 << 30);
  assert.throws(() => readGuestStacks(space, layout, rec, 8), /n_buckets/);
});

Deno.test("prog array and array of maps: ids and names behind the pointers", () => {
  const { ram, space } = world();
  const layout: FdArrayLayout = {
    ptrs: 320,
    progAux: 56,
    auxId: 28,
    auxName: 400,
    mapId: 88,
  };
  const mapPa = ram.alloc();
  const prog = ram.alloc();
  const aux = ram.alloc();
  ram.u64(prog + 56n, P + aux);
  ram.u32(aux + 28n, 77);
  ram.set(aux + 400n, new TextEncoder().encode("xdp_pass\0"));
  ram.u64(mapPa + 320n + 16n, P + prog);
  const rec = record(mapPa, { type: MapType.PROG_ARRAY, maxEntries: 3 });
  const slots = readGuestFdArray(space, layout, rec, "prog");
  assert.deepEqual(slots.map((s) => [s.index, s.id ?? null, s.name ?? null]), [
    [0, null, null],
    [1, null, null],
    [2, 77, "xdp_pass"],
  ]);
  const inner = ram.alloc();
  ram.u32(inner + 88n, 31);
  ram.u64(mapPa + 320n, P + inner);
  const maps = readGuestFdArray(space, layout, {
    ...rec,
    type: MapType.ARRAY_OF_MAPS,
  }, "map");
  assert.equal(maps[0]!.id, 31);
  ram.u64(mapPa + 320n, 0n);
  ram.u64(mapPa + 320n + 8n, 0xffffc900dead0000n); // a wild pointer: one error naming it
  assert.throws(
    () => readGuestFdArray(space, layout, rec, "prog"),
    (e: unknown) =>
      e instanceof GuestMemoryError && /ffffc900dead0038/.test(e.message),
  );
});

Deno.test("devmap hash: chains in bucket order, a cycle and a wrong bucket count refused", () => {
  const { ram, space } = world();
  const layout: DevmapLayout = {
    hlistFirst: 0,
    hlistNext: 0,
    hlistHeadSize: 8,
    netdevMap: 200,
    devIndexHead: 216,
    nBuckets: 236,
    indexHlist: 8,
    xdpProg: 24,
    idx: 48,
    val: 52,
  };
  const mapPa = ram.alloc();
  const heads = ram.alloc();
  ram.u32(mapPa + 236n, 4);
  ram.u64(mapPa + 216n, P + heads);
  // bucket 1: idx 5 then idx 1 (the newer at the head); bucket 3: idx 7
  const element = (idx: number, ifindex: number, next: bigint): bigint => {
    const pa = ram.alloc();
    ram.u64(pa + 8n, next === 0n ? 0n : next + 8n);
    ram.u32(pa + 48n, idx);
    ram.u32(pa + 52n, ifindex);
    return P + pa;
  };
  const one = element(1, 11, 0n);
  const five = element(5, 15, one);
  const seven = element(7, 17, 0n);
  ram.u64(heads + 8n, five + 8n);
  ram.u64(heads + 24n, seven + 8n);
  const rec = record(mapPa, {
    type: MapType.DEVMAP_HASH,
    valueSize: 4,
    maxEntries: 4,
  });
  assert.deepEqual(
    readGuestDevmapHash(space, layout, rec).map((s) => [s.key, s.value]),
    [[5, u32le(15)], [1, u32le(11)], [7, u32le(17)]],
  );
  // idx 1 pointing back at idx 5: a cycle ends in one error, not a hang
  ram.u64(one - P + 8n, five + 8n);
  assert.throws(
    () => readGuestDevmapHash(space, layout, rec),
    (e: unknown) =>
      e instanceof GuestMemoryError && /more than max_entries \+ 1 = 5/.test(
        e.message,
      ),
  );
  ram.u32(mapPa + 236n, 1 << 30); // a bucket count that is not this map's
  assert.throws(
    () => readGuestDevmapHash(space, layout, rec),
    (e: unknown) =>
      e instanceof GuestMemoryError &&
      /n_buckets is 1073741824/.test(e.message),
  );
});

Deno.test("sockhash: keys and cookies behind each element, a bad key size refused", () => {
  const { ram, space } = world();
  const layout: SocketMapLayout = {
    hlistFirst: 0,
    hlistNext: 0,
    hlistHeadSize: 8,
    sks: 200,
    buckets: 200,
    bucketsNum: 208,
    bucketSize: 16,
    bucketHead: 0,
    elemSk: 24,
    elemNode: 32,
    elemKey: 48,
    reuseportPtrs: 256,
    cookie: 600,
  };
  const mapPa = ram.alloc();
  const buckets = ram.alloc();
  ram.u64(mapPa + 200n, P + buckets);
  ram.u32(mapPa + 208n, 2);
  const socket = ram.alloc();
  ram.u64(socket + 600n, 0x1234n);
  const elem = ram.alloc();
  ram.u64(elem + 24n, P + socket);
  ram.set(elem + 48n, bytes(1, 2, 3, 4, 5, 6, 7, 8));
  ram.u64(buckets + 16n, P + elem + 32n); // bucket 1's head
  const rec = record(mapPa, {
    type: MapType.SOCKHASH,
    keySize: 8,
    maxEntries: 2,
  });
  const slots = readGuestSockhash(space, layout, rec);
  assert.deepEqual(slots.map((s) => [s.key, s.cookie]), [
    [bytes(1, 2, 3, 4, 5, 6, 7, 8), 0x1234n],
  ]);
  assert.throws(
    () => readGuestSockhash(space, layout, { ...rec, keySize: 1 << 20 }),
    (e: unknown) =>
      e instanceof GuestMemoryError && /key_size 1048576/.test(e.message),
  );
});

Deno.test("bloom filter: fill from the bitset, refuses a bad mask", () => {
  const { ram, space } = world();
  const layout: BloomLayout = {
    bitsetMask: 100,
    hashSeed: 104,
    nrHashFuncs: 108,
    bitset: 112,
  };
  const mapPa = ram.alloc();
  ram.u32(mapPa + 100n, 127);
  ram.u32(mapPa + 108n, 3);
  ram.set(mapPa + 112n, bytes(0xff, 1, 0, 0, 0, 0, 0, 0x80, 3));
  const rec = record(mapPa, { type: MapType.BLOOM_FILTER, keySize: 0 });
  const bloom = readGuestBloom(space, layout, rec);
  assert.equal(bloom.bits, 128);
  assert.equal(bloom.bitsSet, 8 + 1 + 1 + 2);
  ram.u32(mapPa + 100n, 100);
  assert.throws(() => readGuestBloom(space, layout, rec), /bitset_mask 100/);
});

Deno.test("jhash/jhash2 pick the bits the running kernel's bloom filter sets", {
  ignore: Deno.uid() !== 0,
}, () => {
  const accessor = new BpfSyscallAccessor();
  // One entry, one hash: the kernel's 64-bit minimum bitset, zero seed, so
  // a candidate is "maybe present" exactly when its bit equals the one set.
  for (const valueSize of [4, 5, 12, 13, 24, 27]) {
    const fd = mapCreate({
      type: MapType.BLOOM_FILTER,
      keySize: 0,
      valueSize,
      maxEntries: 1,
      name: "t_jhash",
      flags: MapFlag.ZERO_SEED,
      mapExtra: 1n,
    });
    try {
      const info = accessor.mapById(mapGetInfo(fd.fd).id)!;
      const hash = (v: Uint8Array): number =>
        (valueSize % 4 === 0 ? jhash2(v, 0) : jhash(v, 0)) & 63;
      const member = new Uint8Array(valueSize).map((_, i) => i * 7 + 1);
      mapUpdateElem(fd.fd, null, member);
      const bitset = new Uint8Array(8);
      const bit = hash(member);
      bitset[bit >>> 3]! |= 1 << (bit & 7);
      const model = {
        bits: 64,
        bitsSet: 1,
        hashFunctions: 1,
        hashSeed: 0,
        bitset,
      };
      let present = 0;
      for (let i = 0; i < 640; i++) {
        const candidate = new Uint8Array(valueSize).map((_, j) =>
          (i * 31 + j * 17) & 0xff
        );
        candidate.set(u32le(i).subarray(0, Math.min(4, valueSize)));
        const live = bloomContains(info, candidate);
        assert.equal(
          guestBloomContains(model, candidate),
          live,
          `value size ${valueSize}, candidate ${i}`,
        );
        if (live) present++;
      }
      // about 1 in 64 collide: a hash that ignored its input would say all or none
      assert.ok(present > 0 && present < 60, `${present} of 640 maybe-present`);
    } finally {
      fd.close();
    }
  }
});

Deno.test("KernelSymbols.with: merged tables name each address after the nearest symbol below", () => {
  const base = KernelSymbols.parse(
    "ffffffff81000000 T _stext\nffffffff81000100 t a_func\nffffffff81000300 T b_func\n",
  );
  const merged = base.with([
    { address: 0xffffffffa0000000n, type: "t", name: "bpf_prog_1_x" },
    { address: 0xffffffff81000200n, type: "t", name: "between" },
    { address: 0xffffffff81000250n, type: "d", name: "data_is_not_text" },
  ]);
  assert.equal(merged.size, 5);
  assert.equal(merged.symbolize(0xffffffff81000210n), "between+0x10");
  assert.equal(merged.symbolize(0xffffffff81000300n), "b_func+0x0");
  assert.equal(merged.symbolize(0xffffffffa0000020n), "bpf_prog_1_x+0x20");
  assert.equal(base.symbolize(0xffffffff81000210n), "a_func+0x110");
});
