import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import {
  MapArgumentError,
  MapGoneError,
  MapTypeError,
  MapUnreadableError,
} from "../src/errors.ts";
import type { KernelLayout } from "../src/guest/layout.ts";
import {
  CopySlab,
  GuestMapReader,
  type GuestMapRecord,
} from "../src/guest/maps.ts";
import type { KernelAddressSpace } from "../src/guest/paging.ts";
import { MapType } from "../src/sys/constants.ts";
import { BtfBuilder } from "./btf_builder.ts";
import { FakeRam, PageTables, x86Space } from "./guest_fixture.ts";
import { GUEST_LAYOUT } from "./contract/guest_image.ts";

const P = 0xffff888000000000n; // direct map base
// The contract suite's synthetic image uses the same offsets.
const LAYOUT: KernelLayout = GUEST_LAYOUT;
const PER_CPU = [0x100000n, 0x200000n];

const bytes = (seed: number, len: number): Uint8Array =>
  Uint8Array.from({ length: len }, (_, i) => (seed * 31 + i) & 255);

interface World {
  ram: FakeRam;
  reader: GuestMapReader;
  /** PA of each map by id. */
  at: Map<number, bigint>;
  /** PA of each hash element, in insertion order. */
  hashElems: bigint[];
  hashBuckets: bigint;
  xaNode: bigint;
  tables: PageTables;
  space: KernelAddressSpace;
}

function writeMap(
  ram: FakeRam,
  pa: bigint,
  f: {
    id: number;
    name: string;
    type: number;
    key: number;
    value: number;
    max: number;
  },
): void {
  const m = LAYOUT.map;
  ram.u32(pa + BigInt(m.type), f.type);
  ram.u32(pa + BigInt(m.keySize), f.key);
  ram.u32(pa + BigInt(m.valueSize), f.value);
  ram.u32(pa + BigInt(m.maxEntries), f.max);
  ram.u32(pa + BigInt(m.id), f.id);
  ram.set(pa + BigInt(m.name), new TextEncoder().encode(f.name));
}

function world(): World {
  const ram = new FakeRam(4 << 20, 0x300000n);
  const tables = new PageTables(ram, 4);
  const space = x86Space(ram.memory(), {
    physBase: 0n,
    rootPa: tables.root,
    levels: 4,
    pageOffset: P,
  });
  const at = new Map<number, bigint>();
  const idr = 0x1000n;
  const xaNode = 0x2000n;
  ram.u64(idr + 8n, (P + xaNode) | 2n);
  for (
    const [id, pa] of [[1, 0x10000n], [2, 0x11000n], [3, 0x12000n], [
      4,
      0x15000n,
    ], [5, 0x18000n]] as const
  ) {
    ram.u64(xaNode + 40n + BigInt(id * 8), P + pa);
    at.set(id, pa);
  }
  // 1: ARRAY of 3 x 12 bytes (stride 16), BTF object at 0x1f000 with id 7, frozen
  writeMap(ram, 0x10000n, {
    id: 1,
    name: "arr",
    type: MapType.ARRAY,
    key: 4,
    value: 12,
    max: 3,
  });
  ram.u32(0x10000n + 120n, 16);
  for (let i = 0; i < 3; i++) {
    ram.set(0x10000n + 128n + BigInt(i * 16), bytes(i, 12));
  }
  ram.u64(0x10000n + 56n, P + 0x1f000n);
  ram.u8(0x10000n + 76n, 1);
  ram.u64(0x1f000n, P + 0x1f800n);
  ram.u32(0x1f008n, 5);
  ram.u32(0x1f00cn, 7);
  ram.set(0x1f800n, new Uint8Array([0x9f, 0xeb, 1, 0, 24]));
  // 2: PERCPU_ARRAY, 2 keys, value 8; pptrs point at P + 0x50000 + key * 8
  writeMap(ram, 0x11000n, {
    id: 2,
    name: "pcpu",
    type: MapType.PERCPU_ARRAY,
    key: 4,
    value: 8,
    max: 2,
  });
  for (let key = 0; key < 2; key++) {
    ram.u64(0x11000n + 128n + BigInt(key * 8), P + 0x50000n + BigInt(key * 8));
    PER_CPU.forEach((off, cpu) =>
      ram.set(0x50000n + off + BigInt(key * 8), bytes(10 * key + cpu, 8))
    );
  }
  // 3: HASH, 4 buckets; elements 0,1 in bucket 2, element 2 in bucket 0
  writeMap(ram, 0x12000n, {
    id: 3,
    name: "hash",
    type: MapType.HASH,
    key: 4,
    value: 8,
    max: 8,
  });
  const buckets = 0x13000n;
  ram.u64(0x12000n + 128n, P + buckets);
  ram.u32(0x12000n + 136n, 4);
  for (let b = 0; b < 4; b++) {
    ram.u64(buckets + BigInt(b * 16), BigInt((b << 1) | 1));
  }
  const hashElems = [0x14000n, 0x14100n, 0x14200n];
  const chain = (bucket: number, elems: bigint[]): void => {
    ram.u64(buckets + BigInt(bucket * 16), P + elems[0]!);
    elems.forEach((e, i) =>
      ram.u64(
        e,
        i + 1 < elems.length ? P + elems[i + 1]! : BigInt((bucket << 1) | 1),
      )
    );
  };
  chain(2, [hashElems[0]!, hashElems[1]!]);
  chain(0, [hashElems[2]!]);
  hashElems.forEach((e, i) => {
    ram.u32(e + 48n, 100 + i);
    ram.set(e + 56n, bytes(50 + i, 8));
  });
  // 4: TASK_STORAGE, bucket_log 1: two elements in bucket 1
  writeMap(ram, 0x15000n, {
    id: 4,
    name: "stor",
    type: MapType.TASK_STORAGE,
    key: 4,
    value: 16,
    max: 0,
  });
  ram.u64(0x15000n + 128n, P + 0x16000n);
  ram.u32(0x15000n + 136n, 1);
  ram.u64(0x16000n + 16n, P + 0x17000n);
  ram.u64(0x17000n, P + 0x17100n);
  for (const [i, e] of [0x17000n, 0x17100n].entries()) {
    ram.u64(e + 32n, P + 0x17800n + BigInt(i * 64));
    ram.u64(0x17800n + BigInt(i * 64) + 8n, 0xffff888123450000n + BigInt(i));
    ram.set(e + 64n, bytes(70 + i, 16));
  }
  // 5: PERCPU_HASH with one element, key 4 bytes: pointer at key + 8
  writeMap(ram, 0x18000n, {
    id: 5,
    name: "pcpu_hash",
    type: MapType.PERCPU_HASH,
    key: 4,
    value: 8,
    max: 4,
  });
  ram.u64(0x18000n + 128n, P + 0x19000n);
  ram.u32(0x18000n + 136n, 4);
  for (let b = 0; b < 4; b++) {
    ram.u64(0x19000n + BigInt(b * 16), BigInt((b << 1) | 1));
  }
  ram.u64(0x19000n + 16n, P + 0x1a000n);
  ram.u64(0x1a000n, 3n);
  ram.u32(0x1a000n + 48n, 42);
  ram.u64(0x1a000n + 56n, P + 0x60000n);
  PER_CPU.forEach((off, cpu) => ram.set(0x60000n + off, bytes(90 + cpu, 8)));
  const reader = new GuestMapReader(space, LAYOUT, PER_CPU, P + idr);
  return {
    ram,
    reader,
    at,
    hashElems,
    hashBuckets: buckets,
    xaNode,
    tables,
    space,
  };
}

function mapOf(w: World, id: number): GuestMapRecord {
  const found = w.reader.maps().find((m) => m.id === id);
  assert.ok(found, `map ${id} listed`);
  return found;
}

Deno.test("GuestMapReader.maps lists every map in id order with its metadata", () => {
  const w = world();
  const maps = w.reader.maps();
  assert.deepEqual(maps.map((m) => [m.id, m.name, m.type]), [
    [1, "arr", MapType.ARRAY],
    [2, "pcpu", MapType.PERCPU_ARRAY],
    [3, "hash", MapType.HASH],
    [4, "stor", MapType.TASK_STORAGE],
    [5, "pcpu_hash", MapType.PERCPU_HASH],
  ]);
  assert.equal(maps[0]!.frozen, true);
  assert.equal(maps[0]!.btfId, 7);
  assert.equal(maps[1]!.frozen, false);
  assert.equal(maps[2]!.kernelAddress, P + 0x12000n);
  assert.deepEqual(
    w.reader.programBtf(maps[0]!),
    new Uint8Array([0x9f, 0xeb, 1, 0, 24]),
  );
  assert.equal(w.reader.programBtf(maps[1]!), null);
  assert.deepEqual(w.reader.problems, []);
});

Deno.test("GuestMapReader.readArray uses the round_up(value_size, 8) stride and bounds keys", () => {
  const w = world();
  const arr = mapOf(w, 1);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(w.reader.readArray(arr, i), bytes(i, 12));
  }
  assert.equal(w.reader.readArray(arr, 3), null);
  assert.equal(w.reader.readArray(arr, -1), null);
  assert.deepEqual(
    w.reader.readArrayValue(arr, 4, 8),
    bytes(0, 12).subarray(4, 12),
  );
  assert.throws(
    () => w.reader.readArrayValue(arr, 8, 8),
    (e) =>
      e instanceof MapArgumentError &&
      /8\+8 does not fit the 12-byte value for map "arr" \(id 1\)/.test(
        e.message,
      ),
  );
  w.ram.u32(0x10000n + 120n, 12); // elem_size no longer round_up(12, 8)
  assert.throws(
    () => w.reader.readArray(arr, 1),
    /elem_size is 12, expected round_up\(value_size 12, 8\) = 16/,
  );
  assert.throws(
    () => w.reader.readArray(mapOf(w, 3), 0),
    (e) =>
      e instanceof MapTypeError &&
      e.message ===
        'map "hash" (id 3) is not an ARRAY map (its type is 1)',
  );
});

Deno.test("GuestMapReader.readPercpuArray reads each CPU and returns null beyond nr_cpu_ids", () => {
  const w = world();
  const pcpu = mapOf(w, 2);
  assert.deepEqual(w.reader.readPercpuArray(pcpu, 1, 3), [
    bytes(10, 8),
    bytes(11, 8),
    null,
  ]);
  assert.equal(w.reader.readPercpuArray(pcpu, 2, 2), null);
});

Deno.test("GuestMapReader.iterHash yields every element of every bucket", () => {
  const w = world();
  const entries = [...w.reader.iterHash(mapOf(w, 3))];
  const keys = entries.map((e) =>
    new DataView(e.key.buffer, e.key.byteOffset, 4).getUint32(0, true)
  );
  assert.deepEqual(keys, [102, 100, 101]);
  assert.deepEqual(entries[1]!.value, bytes(50, 8));
});

Deno.test("GuestMapReader.iterPercpuHash finds the per-CPU pointer at key + round_up(key_size, 8)", () => {
  const w = world();
  const [entry, ...rest] = [...w.reader.iterPercpuHash(mapOf(w, 5), 3)];
  assert.equal(rest.length, 0);
  assert.deepEqual(entry!.values, [bytes(90, 8), bytes(91, 8), null]);
});

Deno.test("GuestMapReader.iterLocalStorage keys each value by its owner address", () => {
  const w = world();
  const entries = [...w.reader.iterLocalStorage(mapOf(w, 4))];
  assert.deepEqual(entries.map((e) => e.owner), [
    0xffff888123450000n,
    0xffff888123450001n,
  ]);
  assert.deepEqual(entries[1]!.value, bytes(71, 16));
});

Deno.test("a hash chain that loops ends in an error after max_entries + n_buckets elements", () => {
  const w = world();
  const hash = mapOf(w, 3);
  w.ram.u64(w.hashElems[1]!, P + w.hashElems[0]!); // 0 -> 1 -> 0 -> ...
  let seen = 0;
  assert.throws(() => {
    for (const _ of w.reader.iterHash(hash)) seen++;
  }, /more than max_entries \+ n_buckets = 12 elements \(cycle\?\)/);
  assert.equal(seen, 12);
});

Deno.test("a wild pointer in a hash chain skips that bucket's rest and records it; absurd counts are errors", () => {
  const w = world();
  const hash = mapOf(w, 3);
  w.ram.u64(w.hashElems[0]!, 0xffff888fff000000n); // bucket 2: 100 -> wild
  const keys = [...w.reader.iterHash(hash)].map((e) =>
    new DataView(e.key.buffer, e.key.byteOffset, 4).getUint32(0, true)
  );
  assert.deepEqual(
    keys,
    [102, 100],
    "bucket 0 whole, bucket 2 up to the break",
  );
  assert.deepEqual(w.reader.problems.map((p) => [p.what, p.mapId, p.address]), [
    ["bucket", 3, 0xffff888fff000000n],
  ]);
  assert.match(
    w.reader.problems[0]!.message,
    /bucket 2 skipped .*htab_elem of map 3 at 0xffff888fff000000 is not mapped/,
  );
  const w2 = world();
  w2.ram.u32(0x12000n + 136n, 0x40000000);
  assert.throws(
    () => [...w2.reader.iterHash(mapOf(w2, 3))],
    /n_buckets 1073741824 is not a power of two near max_entries 8/,
  );
  const w3 = world();
  w3.ram.u64(0x12000n + 128n, 0xffffc90000000000n); // buckets in unmapped vmalloc space
  assert.throws(
    () => [...w3.reader.iterHash(mapOf(w3, 3))],
    /bucket 0 of map 3 at 0xffffc90000000000/,
  );
});

Deno.test("a local-storage list that loops or a huge bucket_log is an error, not a hang", () => {
  const w = world();
  w.ram.u32(0x15000n + 136n, 40);
  assert.throws(
    () => [...w.reader.iterLocalStorage(mapOf(w, 4))],
    /bucket_log 40 is implausible/,
  );
  const w2 = world();
  w2.ram.u64(0x17100n, P + 0x17000n);
  let seen = 0;
  assert.throws(() => {
    for (const _ of w2.reader.iterLocalStorage(mapOf(w2, 4))) seen++;
  }, /selem at 0xffff888000017000 of map 4 is reached twice \(cycle\)/);
  assert.equal(seen, 2);
});

Deno.test("a map_idr node that points at itself or at garbage is skipped and reported", () => {
  const w = world();
  w.ram.u64(w.xaNode + 40n + 8n * 9n, (P + w.xaNode) | 2n); // slot 9: a node pointer back to the root
  w.ram.u64(w.xaNode + 40n + 8n * 10n, 0xffff888ff0000000n); // slot 10: a "map" outside memory
  w.ram.u32(0x18000n + 8n, 1 << 30); // map 5: value_size of 1 GiB
  const maps = w.reader.maps();
  assert.deepEqual(maps.map((m) => m.id), [1, 2, 3, 4]);
  const problems = w.reader.problems;
  assert.deepEqual(problems.map((p) => [p.what, p.mapId, p.address]), [
    ["map", 5, P + 0x18000n],
    ["map", undefined, undefined],
    ["map", 10, 0xffff888ff0000000n],
  ]);
  assert.match(problems[0]!.message, /entry 5 .*value_size 1073741824 exceed/);
  assert.match(problems[1]!.message, /shift 0 but slot 9/);
  assert.match(problems[2]!.message, /entry 10 .*0xffff888ff0000000/);
  assert.deepEqual(
    w.reader.unreadable.map((u) => [u.id, u.name, u.address]),
    [[5, "pcpu_hash", P + 0x18000n], [10, null, 0xffff888ff0000000n]],
  );
});

Deno.test("a hash element that straddles two vmalloc pages is stitched together", () => {
  const w = world();
  const hash = mapOf(w, 3);
  const VMALLOC = 0xffffc90000000000n;
  // two virtually adjacent pages backed by physically distant frames
  w.tables.map(VMALLOC, 0x200000n);
  w.tables.map(VMALLOC + 0x1000n, 0x100000n);
  const elem = VMALLOC + 0xfe0n; // next at +0, key at +48 (next page), value at +56
  w.ram.u64(0x200fe0n, P + w.hashElems[2]!); // -> element 2, then the end of bucket 0
  w.ram.u32(0x100010n, 777);
  w.ram.set(0x100018n, bytes(99, 8));
  w.ram.u64(w.hashBuckets, elem); // bucket 0 starts with it
  for (const walk of [w.reader.iterHash(hash), w.reader.iterHashCopies(hash)]) {
    const entries = [...walk];
    assert.deepEqual(
      entries.map((e) =>
        new DataView(e.key.buffer, e.key.byteOffset, 4).getUint32(0, true)
      ),
      [777, 102, 100, 101],
    );
    assert.deepEqual(entries[0]!.value, bytes(99, 8));
  }
});

Deno.test("iterHashCopies and iterPercpuHashCopies return copies that outlive guest memory changes and errors", () => {
  const w = world();
  const hash = mapOf(w, 3);
  const viewsOf = [...w.reader.iterHash(hash)].map((e) => [
    e.key.slice(),
    e.value.slice(),
  ]);
  const entries = [...w.reader.iterHashCopies(hash)];
  assert.deepEqual(entries.map((e) => [e.key, e.value]), viewsOf);
  for (const e of entries) {
    assert.notEqual(e.value.buffer, w.ram.bytes.buffer, "a copy");
    assert.equal(e.value.byteOffset % 8, 0, "8-byte aligned");
  }
  w.ram.set(w.hashElems[0]! + 56n, new Uint8Array(8));
  assert.deepEqual(entries[1]!.value, bytes(50, 8));
  const pcpu = mapOf(w, 5);
  const [copied] = [...w.reader.iterPercpuHashCopies(pcpu, 3)];
  w.ram.set(0x60000n + PER_CPU[1]!, new Uint8Array(8));
  assert.deepEqual(copied!.values, [bytes(90, 8), bytes(91, 8), null]);
  assert.deepEqual([...w.reader.iterPercpuHash(pcpu, 2)][0]!.values, [
    bytes(90, 8),
    new Uint8Array(8),
  ]);
  // a cycle: every element read before the error reaches the caller
  w.ram.u64(w.hashElems[1]!, P + w.hashElems[0]!);
  let seen = 0;
  assert.throws(() => {
    for (const _ of w.reader.iterHashCopies(hash)) seen++;
  }, /more than max_entries \+ n_buckets = 12 elements \(cycle\?\)/);
  assert.equal(seen, 12);
  assert.throws(
    () => [...w.reader.iterHashCopies(pcpu)],
    (e) =>
      e instanceof MapTypeError &&
      /is not a HASH or LRU_HASH map \(its type is 5\)/.test(e.message),
  );
  assert.throws(
    () => [...w.reader.iterPercpuHashCopies(hash, 2)],
    (e) =>
      e instanceof MapTypeError &&
      /not a PERCPU_HASH or LRU_PERCPU_HASH map \(its type is 1\)/.test(
        e.message,
      ),
  );
});

Deno.test("CopySlab packs small copies 8-byte aligned into shared chunks and gives large ones their own buffer", () => {
  const slab = new CopySlab(256);
  const source = Uint8Array.from({ length: 300 }, (_, i) => i & 255);
  const a = slab.copy(source, 3, 5);
  const b = slab.copy(source, 10, 60);
  assert.deepEqual(a, source.subarray(3, 8));
  assert.deepEqual(b, source.subarray(10, 70));
  assert.equal(a.buffer, b.buffer, "one chunk");
  assert.deepEqual([a.byteOffset, b.byteOffset], [0, 8]);
  const big = slab.copy(source, 0, 65); // over a quarter chunk
  assert.notEqual(big.buffer, a.buffer);
  assert.equal(big.byteLength, 65);
  // fill the chunk: the next copy starts a new one, old views stay intact
  const copies = Array.from({ length: 8 }, () => slab.copy(source, 100, 40));
  assert.notEqual(copies.at(-1)!.buffer, a.buffer);
  source.fill(0);
  assert.deepEqual(a, Uint8Array.from([3, 4, 5, 6, 7]));
  for (const c of copies) assert.equal(c[0], 100);
  assert.deepEqual(slab.copy(source, 0, 0), new Uint8Array(0));
});

Deno.test("per-CPU hash values are found when pointer + __per_cpu_offset carries or wraps past 2^64", () => {
  const w = world();
  // offsets near 2^64 ("negative"); the pointer is biased up by the same amount
  const bias = 0x10000000n;
  const offsets = PER_CPU.map((o) => BigInt.asUintN(64, o - bias));
  w.ram.u64(0x1a000n + 56n, P + 0x60000n + bias);
  const reader = new GuestMapReader(w.space, LAYOUT, offsets, P + 0x1000n);
  const pcpuHash = reader.maps().find((m) => m.id === 5)!;
  const [entry] = [...reader.iterPercpuHash(pcpuHash, 3)];
  assert.deepEqual(entry!.values, [bytes(90, 8), bytes(91, 8), null]);
  // the low halves carry into the high half
  const carry = 0xf0000000n;
  w.ram.u64(0x1a000n + 56n, P + 0x60000n - carry);
  const reader2 = new GuestMapReader(
    w.space,
    LAYOUT,
    PER_CPU.map((o) => o + carry),
    P + 0x1000n,
  );
  const [entry2] = [...reader2.iterPercpuHash(pcpuHash, 2)];
  assert.deepEqual(entry2!.values, [bytes(90, 8), bytes(91, 8)]);
});

// ---- GuestMemMapAccessor over the same synthetic kernel ----

const KIMAGE = 0xffffffff80000000n; // image map, phys_base 0
const KVARS = 0x3fe000n; // page_offset_base, nr_cpu_ids, __per_cpu_offset
const VMCOREINFO_PAGE = 0x3ff000n;

/** Makes the world a locatable kernel: VMCOREINFO in RAM, symbols given. */
function kernelFiles(w: World): {
  symbols: Map<string, bigint>;
  symbolsRelocated: true;
  layout: KernelLayout;
} {
  w.ram.u64(KVARS, P);
  w.ram.u32(KVARS + 8n, PER_CPU.length);
  PER_CPU.forEach((o, cpu) => w.ram.u64(KVARS + 16n + BigInt(cpu * 8), o));
  w.ram.set(
    VMCOREINFO_PAGE,
    new TextEncoder().encode(
      [
        "OSRELEASE=6.99.0-synthetic",
        "PAGESIZE=4096",
        `SYMBOL(init_top_pgt)=${(KIMAGE + w.tables.root).toString(16)}`,
        "NUMBER(phys_base)=0",
        "NUMBER(pgtable_l5_enabled)=0",
        "KERNELOFFSET=0",
        "",
      ].join("\n"),
    ),
  );
  return {
    symbols: new Map([
      ["map_idr", P + 0x1000n],
      ["page_offset_base", KIMAGE + KVARS],
      ["nr_cpu_ids", KIMAGE + KVARS + 8n],
      ["__per_cpu_offset", KIMAGE + KVARS + 16n],
    ]),
    symbolsRelocated: true,
    layout: LAYOUT,
  };
}

function accessorOf(w: World): GuestMemMapAccessor {
  return GuestMemMapAccessor.fromMemory(w.ram.memory(), kernelFiles(w));
}

const keysOf = (entries: Iterable<{ key: Uint8Array }>): number[] =>
  [...entries].map((e) =>
    new DataView(e.key.buffer, e.key.byteOffset, 4).getUint32(0, true)
  );

Deno.test("GuestMemMapAccessor finds the synthetic kernel by its VMCOREINFO page and lists every map", () => {
  const w = world();
  const guest = accessorOf(w);
  assert.equal(guest.release, "6.99.0-synthetic");
  assert.equal(guest.kernel.vmcoreinfo.foundAt, VMCOREINFO_PAGE);
  assert.equal(guest.possibleCpus, 2);
  assert.deepEqual(guest.maps().map((m) => m.id), [1, 2, 3, 4, 5]);
  assert.deepEqual(keysOf(guest.iterHashMap(guest.mapById(3)!)), [
    102,
    100,
    101,
  ]);
  assert.deepEqual(guest.problems(), []);
});

Deno.test("GuestMemMapAccessor: an unreadable map is a problem, and mapById says MapUnreadableError with id and address", () => {
  const w = world();
  w.ram.u32(0x18000n + 8n, 1 << 30); // map 5: value_size of 1 GiB
  w.ram.u64(w.xaNode + 40n + 8n * 6n, 0xffff888ff0000000n); // id 6: outside memory
  const guest = accessorOf(w);
  assert.deepEqual(guest.maps().map((m) => m.id), [1, 2, 3, 4]);
  assert.deepEqual(
    guest.problems().map((p) => [p.what, p.mapId, p.address]),
    [["map", 5, P + 0x18000n], ["map", 6, 0xffff888ff0000000n]],
  );
  assert.throws(
    () => guest.mapById(5),
    (e) =>
      e instanceof MapUnreadableError && e.mapId === 5 &&
      e.message.startsWith(
        'map "pcpu_hash" (id 5) is unreadable: struct bpf_map at 0xffff888000018000: ',
      ) && !e.message.includes("\n"),
  );
  assert.throws(
    () => guest.mapById(6),
    (e) =>
      e instanceof MapUnreadableError && e.mapId === 6 &&
      /\(id 6\) is unreadable: struct bpf_map at 0xffff888ff0000000/.test(
        e.message,
      ),
  );
  assert.equal(guest.mapById(7), null, "no such map is still null");
  // a map handed in that is no longer in map_idr
  const gone = { ...guest.mapById(3)!, id: 40, kernelAddress: P + 0x30000n };
  assert.throws(() => [...guest.iterHashMap(gone)], MapGoneError);
});

Deno.test("GuestMemMapAccessor: a hash bucket cut short is a problem, never a silent loss", () => {
  const w = world();
  // element 100 now ends its chain with bucket 0's nulls marker: 101 is lost
  w.ram.u64(w.hashElems[0]!, 1n);
  const guest = accessorOf(w);
  const hash = guest.mapById(3)!;
  assert.deepEqual(keysOf(guest.iterHashMap(hash)), [102, 100]);
  const [problem, ...rest] = guest.problems();
  assert.equal(rest.length, 0);
  assert.deepEqual([problem!.what, problem!.mapId, problem!.address], [
    "bucket",
    3,
    1n,
  ]);
  assert.match(problem!.message, /bucket 2 .*nulls marker .*may be missing/);
  // a wild pointer: the rest of that bucket is skipped and recorded too
  const w2 = world();
  w2.ram.u64(w2.hashElems[0]!, P + 0x3f0000n + 0x800000n);
  const guest2 = accessorOf(w2);
  const batches = [...guest2.iterEntryBatches(guest2.mapById(3)!)];
  assert.equal(batches.reduce((n, b) => n + b.count, 0), 2);
  assert.deepEqual(guest2.problems().map((p) => [p.what, p.mapId]), [
    ["bucket", 3],
  ]);
  // an unreadable per-CPU value skips its element, recorded
  const w3 = world();
  w3.ram.u64(0x1a000n + 56n, 0xffffc90000000000n);
  const guest3 = accessorOf(w3);
  assert.equal([...guest3.iterPercpuHashMap(guest3.mapById(5)!)].length, 0);
  assert.deepEqual(guest3.problems().map((p) => [p.what, p.mapId]), [
    ["element", 5],
  ]);
});

Deno.test("GuestMemMapAccessor: wrong types are MapTypeError, bad ranges MapArgumentError, as on the live backend", () => {
  const w = world();
  const guest = accessorOf(w);
  const [arr, pcpu, hash, stor] = [1, 2, 3, 4].map((id) => guest.mapById(id)!);
  const typeError = (fn: () => unknown, type: number): void =>
    assert.throws(fn, (e) => e instanceof MapTypeError && e.mapType === type);
  typeError(() => [...guest.iterHashMap(arr!)], MapType.ARRAY);
  typeError(() => [...guest.iterPercpuHashMap(hash!)], MapType.HASH);
  typeError(() => [...guest.iterTaskStorage(hash!)], MapType.HASH);
  typeError(() => guest.readArenaPages(stor!), MapType.TASK_STORAGE);
  typeError(() => [...guest.iterEntryBatches(stor!)], MapType.TASK_STORAGE);
  // the point reads refuse other types and indexes, as the live backend does
  typeError(() => guest.readArray(hash!, 0), MapType.HASH);
  typeError(() => guest.readValue(hash!, 0, 4), MapType.HASH);
  typeError(() => guest.readPercpuArray(arr!, 0), MapType.ARRAY);
  assert.throws(() => guest.readArray(arr!, 3), MapArgumentError);
  assert.throws(() => guest.readValue(arr!, 8, 8), MapArgumentError);
  assert.throws(() => guest.readPercpuArray(pcpu!, 0, -1), MapArgumentError);
  assert.deepEqual(guest.readPercpuArray(pcpu!, 1, 3), [
    bytes(10, 8),
    bytes(11, 8),
    null,
  ]);
});

/** Program BTF with a libbpf `.maps` definition of `name`: HASH, u32 -> u64, 8 entries. */
function programBtfFor(
  name: string,
): { blob: Uint8Array; key: number; value: number } {
  const b = new BtfBuilder();
  const int = b.int("int", 4, true);
  const u32 = b.int("unsigned int", 4);
  const u64 = b.int("unsigned long long", 8);
  const ptrTo = (n: number): number => b.ptr(b.array(int, n));
  const def = b.struct("", 32, [
    { name: "type", type: ptrTo(MapType.HASH), bitOffset: 0 },
    { name: "max_entries", type: ptrTo(8), bitOffset: 64 },
    { name: "key", type: b.ptr(u32), bitOffset: 128 },
    { name: "value", type: b.ptr(u64), bitOffset: 192 },
  ]);
  const variable = b.variable(name, def);
  b.datasec(".maps", 32, [{ type: variable, offset: 0, size: 32 }]);
  return { blob: b.build(), key: u32, value: u64 };
}

Deno.test("GuestMemMapAccessor recovers full names of maps whose kernel name was cut to 15 characters", () => {
  const w = world();
  const full = "conn_tracking_table_v2";
  const { blob, key, value } = programBtfFor(full);
  const m = LAYOUT.map;
  const hashPa = 0x12000n;
  w.ram.set(hashPa + BigInt(m.name), new Uint8Array(16));
  w.ram.set(
    hashPa + BigInt(m.name),
    new TextEncoder().encode(full.slice(0, 15)),
  );
  w.ram.u32(hashPa + BigInt(m.btfKeyTypeId), key);
  w.ram.u32(hashPa + BigInt(m.btfValueTypeId), value);
  w.ram.u64(hashPa + BigInt(m.btf), P + 0x1e000n); // struct btf
  w.ram.u64(0x1e000n, P + 0x1d000n); // data
  w.ram.u32(0x1e008n, blob.length); // data_size
  w.ram.u32(0x1e00cn, 9); // id
  w.ram.set(0x1d000n, blob);
  const guest = accessorOf(w);
  const listed = guest.maps().find((x) => x.id === 3)!;
  assert.equal(listed.name, "conn_tracking_t");
  assert.equal(listed.fullName, full);
  assert.equal(guest.mapById(3)!.fullName, full);
  assert.equal(guest.findMap("table_v2")?.id, 3, "found by its full name");
  // short names are complete already: no fullName, and no BTF parsed for them
  assert.equal(guest.mapById(1)!.fullName, undefined);
  assert.ok(!("fullName" in guest.mapById(2)!));
});

Deno.test("GuestMemMapAccessor over a RAM file that is truncated while open: one-line errors, no SIGBUS", () => {
  const w = world();
  const files = kernelFiles(w);
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-ramfile-" });
  try {
    const path = `${dir}/ram`;
    Deno.writeFileSync(path, w.ram.bytes);
    using guest = GuestMemMapAccessor.openRamFile(path, {
      ...files,
      regions: [{ gpa: 0n, size: BigInt(w.ram.bytes.length), fileOffset: 0 }],
    });
    assert.deepEqual(guest.maps().map((m) => m.id), [1, 2, 3, 4, 5]);
    const hash = guest.mapById(3)!;
    // the file shrinks below the hash map's buckets and elements
    Deno.truncateSync(path, 0x13000);
    guest.refresh();
    assert.throws(
      () => [...guest.iterHashMap(hash)],
      (e) =>
        e instanceof MapUnreadableError && !e.message.includes("\n") &&
        /\(id 3\) is unreadable: .*the file is now 77824 bytes but was 4194304 when opened/
          .test(e.message),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("GuestMemMapAccessor: a local-storage chain into unmapped memory skips the rest of that bucket, recorded", () => {
  const w = world();
  w.ram.u64(0x17000n, 0xffff888ff0000000n); // first selem's next -> outside memory
  const guest = accessorOf(w);
  const entries = [...guest.iterTaskStorage(guest.mapById(4)!)];
  assert.deepEqual(entries.map((e) => e.owner), ["0xffff888123450000"]);
  assert.deepEqual(
    guest.problems().map((p) => [p.what, p.mapId, p.address]),
    [["bucket", 4, 0xffff888ff0000000n]],
  );
  assert.match(guest.problems()[0]!.message, /rest of bucket 1 skipped/);
});
