/**
 * The two shapes the object-holding maps keep their slots in: an array of
 * kernel pointers (one per index, 0 for empty) and an array of hash chains
 * (`struct hlist_head` buckets whose `struct hlist_node`s sit inside each
 * element). Guest memory is hostile, so both are bounded by what the map
 * record allows, never by what the memory claims.
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { HlistLayout } from "./layout.ts";

/** Pointers read per guest read: one call per 4 KiB of slots. */
const CHUNK = 512;

/** `count` little-endian pointers from `base`, read in page-sized runs. */
export function readPointerArray(
  space: KernelAddressSpace,
  base: bigint,
  count: number,
  what: string,
): bigint[] {
  const pointers: bigint[] = [];
  for (let first = 0; first < count; first += CHUNK) {
    const n = Math.min(CHUNK, count - first);
    const bytes = space.mustRead(base + BigInt(first * 8), n * 8, what);
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * 8);
    for (let i = 0; i < n; i++) pointers.push(view.getBigUint64(i * 8, true));
  }
  return pointers;
}

/** `roundup_pow_of_two(n)`, as the kernel sizes a hash's buckets. */
export function bucketCountFor(maxEntries: number): number {
  let n = 1;
  while (n < maxEntries) n *= 2;
  return n;
}

/**
 * Every element of a chained hash, in the order `get_next_key` lists them
 * (bucket 0 first, each chain from its head): the addresses of the
 * `hlist_node`s. `buckets` is the address of bucket 0 and `stride` a
 * bucket's size. At most `map.maxEntries + 1` nodes are followed (one more
 * than the map holds, for an update caught between insert and unlink): a
 * cycle or a corrupt chain is an error naming the map, not a hang.
 */
export function walkHashChains(
  space: KernelAddressSpace,
  layout: HlistLayout,
  map: GuestMapRecord,
  buckets: bigint,
  bucketCount: number,
  stride: number,
  headOffset: number,
): bigint[] {
  const what = `map ${map.id} ("${map.name}")`;
  const limit = map.maxEntries + 1;
  const nodes: bigint[] = [];
  const firstsPerRead = Math.max(1, Math.floor(4096 / stride));
  for (let start = 0; start < bucketCount; start += firstsPerRead) {
    const n = Math.min(firstsPerRead, bucketCount - start);
    const bytes = space.mustRead(
      buckets + BigInt(start * stride),
      n * stride,
      `the buckets of ${what}`,
    );
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * stride);
    for (let b = 0; b < n; b++) {
      let node = view.getBigUint64(
        b * stride + headOffset + layout.hlistFirst,
        true,
      );
      while (node !== 0n) {
        if (nodes.length >= limit) {
          throw new GuestMemoryError(
            `walk the hash chains of ${what}`,
            node,
            `more than max_entries + 1 = ${limit} elements (a cycle or a corrupt chain)`,
          );
        }
        nodes.push(node);
        node = space.mustU64(
          node + BigInt(layout.hlistNext),
          `a hash chain node of ${what}`,
        );
      }
    }
  }
  return nodes;
}
