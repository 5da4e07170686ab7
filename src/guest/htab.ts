/**
 * The hash family (HASH, LRU_HASH, PERCPU_HASH, LRU_PERCPU_HASH): buckets of
 * `hlist_nulls` chains of `htab_elem`. A bucket whose chain cannot be
 * followed is skipped and recorded; a walk longer than the map can hold
 * (a cycle) is an error.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import { CopySlab } from "./copy_slab.ts";
import { GuestKernelError, GuestMemoryError, hex } from "./errors.ts";
import {
  checkType,
  type GuestMapRecord,
  type MapReadContext,
} from "./map_records.ts";
import { checkCpuCount } from "./array_maps.ts";
import { joinAddress, splitAddress } from "./paging.ts";

/** One key and per-CPU values (null for CPUs the kernel does not have). */
export interface GuestPercpuEntry {
  /** Key bytes. */
  key: Uint8Array;
  /** One value per requested CPU. */
  values: (Uint8Array | null)[];
}

/** Map types read as plain hashes. */
export const HASH_TYPES: ReadonlySet<number> = new Set<number>([
  MapType.HASH,
  MapType.LRU_HASH,
]);
/** Map types read as per-CPU hashes. */
export const PERCPU_HASH_TYPES: ReadonlySet<number> = new Set<number>([
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

/** An element during a hash walk: its bytes are `bytes[at, at + span)`. */
interface HtabCursor {
  bytes: Uint8Array;
  at: number;
}

const TWO_32 = 0x1_0000_0000;

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

/** Records that the rest of bucket `bucket` could not be walked. */
function skipBucket(
  context: MapReadContext,
  map: GuestMapRecord,
  bucket: number,
  address: bigint,
  why: string,
): void {
  context.problems.add({
    what: "bucket",
    mapId: map.id,
    address,
    message: `map ${map.id} ("${map.name}"): bucket ${bucket} skipped from ${
      hex(address)
    }: ${why}`,
  });
}

/**
 * Walks the buckets of a hash-family map, yielding each element's first
 * `span` bytes as `cursor.bytes[cursor.at, cursor.at + span)` (a view of
 * guest memory, or a copy when the element crosses a page). The cursor object
 * is reused and its bytes may change with the next read: consume it before
 * resuming. A bucket whose chain hits an unmapped pointer or a NULL is
 * recorded in `context.problems` and the walk goes on with the next bucket;
 * more than `max_entries + n_buckets` elements (a cycle or a corrupt count)
 * is an error.
 *
 * Addresses stay as unsigned 32-bit halves (hi:lo) in this loop, and pages
 * are translated through `KernelAddressSpace.offsetAt`'s cache, so the
 * common case does no bigint arithmetic.
 */
function* htabElements(
  context: MapReadContext,
  map: GuestMapRecord,
  span: number,
): Generator<HtabCursor> {
  const h = context.layout.htab;
  if (!h) {
    throw new GuestKernelError(
      "The guest's BTF has no struct bpf_htab/bucket/htab_elem",
    );
  }
  const space = context.space;
  const base = map.kernelAddress;
  const nBuckets = space.mustU32(
    base + BigInt(h.nBuckets),
    "bpf_htab.n_buckets",
  );
  const buckets = space.mustU64(base + BigInt(h.buckets), "bpf_htab.buckets");
  if (
    nBuckets === 0 || (nBuckets & (nBuckets - 1)) !== 0 ||
    nBuckets > Math.max(1, map.maxEntries) * 2 + 1
  ) {
    throw new GuestMemoryError(
      `walk map ${map.id} ("${map.name}")`,
      base,
      `n_buckets ${nBuckets} is not a power of two near max_entries ${map.maxEntries}`,
    );
  }
  // the array offsets index into is fixed for the memory's lifetime
  const image = space.memory.bytes;
  const imageView = space.memory.view;
  const nextOffset = h.elemNext;
  const limit = map.maxEntries + nBuckets;
  const [bucketsHi, bucketsLo] = splitAddress(buckets);
  const cursor: HtabCursor = { bytes: image, at: 0 };
  let visited = 0;
  for (let b = 0; b < nBuckets; b++) {
    // head = buckets + b * bucket_size + offsetof(head.first), in hi:lo
    const sum = bucketsLo + b * h.bucketSize + h.bucketFirst;
    const carry = Math.floor(sum / TWO_32);
    const headLo = sum - carry * TWO_32;
    const headHi = (bucketsHi + carry) >>> 0;
    let lo: number;
    let hi: number;
    const headAt = space.offsetAt(headHi, headLo, 8);
    if (headAt >= 0) {
      lo = imageView.getUint32(headAt, true);
      hi = imageView.getUint32(headAt + 4, true);
    } else {
      const head = space.u64(joinAddress(headHi, headLo));
      if (head === null) {
        if (b === 0) {
          // not even the first bucket: the bucket array itself is wrong
          throw new GuestMemoryError(
            `read bucket ${b} of map ${map.id}`,
            joinAddress(headHi, headLo),
            "not mapped",
          );
        }
        skipBucket(
          context,
          map,
          b,
          joinAddress(headHi, headLo),
          "the bucket is not mapped",
        );
        continue;
      }
      [hi, lo] = splitAddress(head);
    }
    let broken = false;
    while ((lo & 1) === 0) {
      if (lo === 0 && hi === 0) {
        skipBucket(
          context,
          map,
          b,
          joinAddress(headHi, headLo),
          "NULL in an hlist_nulls chain",
        );
        broken = true;
        break;
      }
      if (++visited > limit) {
        throw new GuestMemoryError(
          `walk map ${map.id} ("${map.name}")`,
          joinAddress(hi, lo),
          `more than max_entries + n_buckets = ${limit} elements (cycle?)`,
        );
      }
      // elem = node - offsetof(htab_elem, hash_node.next)
      let elemLo = lo - nextOffset;
      let elemHi = hi;
      if (elemLo < 0) {
        elemLo += TWO_32;
        elemHi = (hi - 1) >>> 0;
      }
      const at = space.offsetAt(elemHi, elemLo, span);
      if (at >= 0) {
        // read the link before yielding: the consumer's reads may recycle the page
        lo = imageView.getUint32(at + nextOffset, true);
        hi = imageView.getUint32(at + nextOffset + 4, true);
        cursor.bytes = image;
        cursor.at = at;
        yield cursor;
      } else {
        const bytes = space.read(joinAddress(elemHi, elemLo), span);
        if (bytes === null) {
          skipBucket(
            context,
            map,
            b,
            joinAddress(elemHi, elemLo),
            `htab_elem of map ${map.id} at ${
              hex(joinAddress(elemHi, elemLo))
            } is not mapped`,
          );
          broken = true;
          break;
        }
        const copy = bytes.slice();
        const view = new DataView(copy.buffer, 0, span);
        lo = view.getUint32(nextOffset, true);
        hi = view.getUint32(nextOffset + 4, true);
        cursor.bytes = copy;
        cursor.at = 0;
        yield cursor;
      }
    }
    if (!broken && (hi !== 0 || lo >>> 1 !== b)) {
      // the chain ended in another bucket's marker: elements of this bucket
      // after the moved one may not have been seen
      skipBucket(
        context,
        map,
        b,
        joinAddress(hi, lo),
        `the chain ends with nulls marker ${
          hex(joinAddress(hi, lo))
        } (element moved?); later elements may be missing`,
      );
    }
  }
}

function hashShape(
  context: MapReadContext,
  map: GuestMapRecord,
): { keyOffset: number; valueOffset: number; span: number } {
  const keyOffset = context.layout.htab?.elemKey ?? 0;
  const valueOffset = keyOffset + roundUp8(map.keySize);
  const span = Math.max(
    valueOffset + map.valueSize,
    (context.layout.htab?.elemNext ?? 0) + 8,
  );
  return { keyOffset, valueOffset, span };
}

/**
 * Every element of a HASH or LRU_HASH map as views of guest memory: use each
 * before resuming the walk.
 */
export function* iterHash(
  context: MapReadContext,
  map: GuestMapRecord,
): Generator<{ key: Uint8Array; value: Uint8Array }> {
  checkType(map, HASH_TYPES, "a HASH or LRU_HASH map");
  const { keyOffset, valueOffset, span } = hashShape(context, map);
  const keySize = map.keySize;
  const valueSize = map.valueSize;
  for (const { bytes, at } of htabElements(context, map, span)) {
    yield {
      key: bytes.subarray(at + keyOffset, at + keyOffset + keySize),
      value: bytes.subarray(at + valueOffset, at + valueOffset + valueSize),
    };
  }
}

/**
 * Every element of a HASH or LRU_HASH map, copied out of guest memory
 * (into shared chunks; see {@linkcode CopySlab}), so entries stay valid
 * after the walk moves on or the guest runs again.
 */
export function* iterHashCopies(
  context: MapReadContext,
  map: GuestMapRecord,
): Generator<{ key: Uint8Array; value: Uint8Array }> {
  checkType(map, HASH_TYPES, "a HASH or LRU_HASH map");
  const { keyOffset, valueOffset, span } = hashShape(context, map);
  const keySize = map.keySize;
  const valueSize = map.valueSize;
  const slab = new CopySlab();
  for (const { bytes, at } of htabElements(context, map, span)) {
    yield {
      key: slab.copy(bytes, at + keyOffset, keySize),
      value: slab.copy(bytes, at + valueOffset, valueSize),
    };
  }
}

/**
 * Every element of a PERCPU_HASH or LRU_PERCPU_HASH, keys and values copied
 * (into shared chunks): the per-CPU pointer sits where a plain hash keeps its
 * value, at `key + round_up(key_size, 8)` (verified on 6.1 and 6.12 with a
 * 4-byte key). An element with an unreadable CPU value is skipped and
 * recorded.
 */
export function* iterPercpuHash(
  context: MapReadContext,
  map: GuestMapRecord,
  numCpus: number,
): Generator<GuestPercpuEntry> {
  checkType(map, PERCPU_HASH_TYPES, "a PERCPU_HASH or LRU_PERCPU_HASH map");
  checkCpuCount(map, numCpus);
  const { space, percpuHi, percpuLo, problems } = context;
  const keyOffset = context.layout.htab?.elemKey ?? 0;
  const pointerOffset = keyOffset + roundUp8(map.keySize);
  const span = Math.max(
    pointerOffset + 8,
    (context.layout.htab?.elemNext ?? 0) + 8,
  );
  const image = space.memory.bytes;
  const imageView = space.memory.view;
  const valueSize = map.valueSize;
  const slab = new CopySlab();
  for (const { bytes, at } of htabElements(context, map, span)) {
    const view = bytes === image
      ? imageView
      : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const pptrLo = view.getUint32(at + pointerOffset, true);
    const pptrHi = view.getUint32(at + pointerOffset + 4, true);
    // copy the key now: reading the values may recycle the element's page
    const key = slab.copy(bytes, at + keyOffset, map.keySize);
    const values: (Uint8Array | null)[] = [];
    let missing = -1;
    for (let cpu = 0; cpu < numCpus; cpu++) {
      const offsetLo = percpuLo[cpu];
      const offsetHi = percpuHi[cpu];
      if (offsetLo === undefined || offsetHi === undefined) {
        values.push(null);
        continue;
      }
      const sum = pptrLo + offsetLo;
      const carry = sum >= TWO_32 ? 1 : 0;
      const lo = sum - carry * TWO_32;
      const hi = (pptrHi + offsetHi + carry) >>> 0;
      const valueAt = space.offsetAt(hi, lo, valueSize);
      if (valueAt >= 0) {
        values.push(slab.copy(image, valueAt, valueSize));
        continue;
      }
      const value = space.read(joinAddress(hi, lo), valueSize);
      if (value === null) {
        missing = cpu;
        break;
      }
      values.push(slab.copy(value, 0, valueSize));
    }
    if (missing >= 0) {
      const pptr = joinAddress(pptrHi, pptrLo);
      problems.add({
        what: "element",
        mapId: map.id,
        address: pptr,
        message:
          `map ${map.id} ("${map.name}"): element skipped: its value on CPU ${missing} (per-CPU pointer ${
            hex(pptr)
          }) is not mapped`,
      });
      continue;
    }
    yield { key, values };
  }
}
