/**
 * BLOOM_FILTER in guest memory: `struct bpf_bloom_filter` holds
 * `bitset_mask + 1` bits, the hash seed and the number of hash functions.
 * The fill ratio says how saturated the filter is (how likely a false
 * positive); with the seed a membership test is answered from memory
 * exactly as `bloom_map_peek_elem` would.
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import { jhash, jhash2 } from "./jhash.ts";
import type { BloomLayout } from "./layout.ts";

/** A bloom filter's bits and hash parameters. */
export interface GuestBloom {
  /** Bits in the filter (`bitset_mask + 1`). */
  bits: number;
  /** Bits set. */
  bitsSet: number;
  /** `nr_hash_funcs`. */
  hashFunctions: number;
  /** `hash_seed`. */
  hashSeed: number;
  /** The bitset, copied (little-endian words: bit i is byte i/8, bit i%8). */
  bitset: Uint8Array;
}

const POPCOUNT = new Uint8Array(256).map((_, i) => {
  let n = 0;
  for (let x = i; x; x >>= 1) n += x & 1;
  return n;
});

/** The kernel's `bitset_mask` never exceeds 2^31 - 1 (`nr_bits` is capped at 2^31). */
const MAX_BITS = 2 ** 31;

/** Reads a bloom filter's bitset and hash parameters. */
export function readGuestBloom(
  space: KernelAddressSpace,
  layout: BloomLayout,
  map: GuestMapRecord,
): GuestBloom {
  const va = map.kernelAddress;
  const mask = space.mustU32(
    va + BigInt(layout.bitsetMask),
    "bpf_bloom_filter.bitset_mask",
  );
  const bits = mask + 1;
  const hashFunctions = space.mustU32(
    va + BigInt(layout.nrHashFuncs),
    "bpf_bloom_filter.nr_hash_funcs",
  );
  // bits is a power of two of at least one word; 1..15 hash functions (map_extra's 4 bits)
  if (
    bits < 64 || bits > MAX_BITS || (bits & mask) !== 0 || hashFunctions < 1 ||
    hashFunctions > 15
  ) {
    throw new GuestMemoryError(
      `use the bloom filter of map ${map.id} ("${map.name}")`,
      va,
      `bitset_mask ${mask}, nr_hash_funcs ${hashFunctions}`,
    );
  }
  const hashSeed = space.mustU32(
    va + BigInt(layout.hashSeed),
    "bpf_bloom_filter.hash_seed",
  );
  const bytes = bits / 8;
  const bitset = new Uint8Array(bytes);
  const base = va + BigInt(layout.bitset);
  const chunk = 1 << 20;
  let bitsSet = 0;
  for (let at = 0; at < bytes; at += chunk) {
    const n = Math.min(chunk, bytes - at);
    const part = space.mustRead(
      base + BigInt(at),
      n,
      `the bitset of map ${map.id}`,
    );
    bitset.set(part, at);
    for (let i = 0; i < n; i++) bitsSet += POPCOUNT[part[i]!]!;
  }
  return { bits, bitsSet, hashFunctions, hashSeed, bitset };
}

/**
 * Whether `value` may be in the filter: every one of its bits is set
 * (`bloom_map_peek_elem`). False means certainly absent.
 */
export function guestBloomContains(
  bloom: GuestBloom,
  value: Uint8Array,
): boolean {
  const mask = bloom.bits - 1;
  const words = value.byteLength % 4 === 0;
  for (let i = 0; i < bloom.hashFunctions; i++) {
    const seed = (bloom.hashSeed + i) >>> 0;
    const bit = (words ? jhash2(value, seed) : jhash(value, seed)) & mask;
    if ((bloom.bitset[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
  }
  return true;
}
