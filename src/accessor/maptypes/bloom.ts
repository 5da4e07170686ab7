/**
 * BLOOM_FILTER: a membership test is all the kernel offers. LOOKUP_ELEM with
 * a NULL key and the candidate as the value answers 0 (maybe present) or
 * ENOENT (certainly absent); the bits themselves are never shown.
 *
 * @module
 */

import { MapArgumentError, MapTypeError } from "../../errors.ts";
import { mapGetFdById, OpenFlag } from "../../sys/bpf.ts";
import { Errno, MapType } from "../../sys/constants.ts";
import { lookupErrno } from "../../sys/elem.ts";
import { BpfError } from "../../sys/errors.ts";
import type { BpfMapInfo } from "../types.ts";

/** What a bloom filter map shows without a candidate. */
export interface BloomInfo {
  /** Always `"bloom_filter"`. */
  kind: "bloom_filter";
  /** Number of hash functions (`map_extra`, 0 = the kernel's default 5). */
  hashes: number;
  /** Candidate size in bytes. */
  valueSize: number;
  /** Why nothing is listed. */
  note: string;
  /** Bits in the filter (guest memory only: bpf() does not show them). */
  bits?: number;
  /** Bits set (guest memory only); `bitsSet / bits` is the fill ratio. */
  bitsSet?: number;
}

/** The note a bloom filter dump carries. */
export const BLOOM_NOTE =
  "a bloom filter only answers membership tests; its contents cannot be listed";

/** The facts of a bloom filter a dump shows. */
export function bloomInfo(map: BpfMapInfo): BloomInfo {
  if (map.type !== MapType.BLOOM_FILTER) {
    throw new MapTypeError(map, map.type, "a BLOOM_FILTER map");
  }
  return {
    kind: "bloom_filter",
    hashes: Number(map.mapExtra & 0xfn),
    valueSize: map.valueSize,
    note: BLOOM_NOTE,
  };
}

/**
 * Whether `value` may be in the live bloom filter `map`: true means "maybe
 * present" (bloom filters have false positives), false "certainly absent".
 */
export function bloomContains(map: BpfMapInfo, value: Uint8Array): boolean {
  if (map.type !== MapType.BLOOM_FILTER) {
    throw new MapTypeError(map, map.type, "a BLOOM_FILTER map");
  }
  if (value.byteLength !== map.valueSize) {
    throw new MapArgumentError(
      map,
      "value",
      `is ${value.byteLength} bytes but the value size is ${map.valueSize}`,
    );
  }
  using fd = mapGetFdById(map.id, OpenFlag.RDONLY);
  const candidate = new Uint8Array(value);
  const errno = lookupErrno(fd.fd, null, candidate);
  if (errno === 0) return true;
  if (errno === Errno.ENOENT) return false;
  throw new BpfError(1, errno, {
    action: `membership test in bloom filter "${map.name}" (id ${map.id})`,
  });
}
