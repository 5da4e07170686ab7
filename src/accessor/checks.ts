/**
 * The argument checks every backend makes before it reads, so that the same
 * mistake is the same error everywhere (the contract suite holds them to it).
 *
 * @module
 */

import { MapArgumentError, MapTypeError } from "../errors.ts";
import { mapTypeName } from "../sys/constants.ts";

/** What the checks need to know of a map: its real sizes, not a caller's guess. */
export interface CheckedMap {
  /** Kernel map id. */
  id: number;
  /** Kernel-visible name. */
  name: string;
  /** `enum bpf_map_type`. */
  type: number;
  /** Value size in bytes. */
  valueSize: number;
  /** Maximum entries. */
  maxEntries: number;
}

/** Most CPUs a caller may ask per-CPU values for (beyond the kernel's are null). */
export const MAX_CPUS = 8192;

/** Throws MapTypeError unless `map` is one of `types`. */
export function expectMapType(
  map: CheckedMap,
  types: ReadonlySet<number>,
  expected: string,
): void {
  if (!types.has(map.type)) {
    throw new MapTypeError(map, map.type, expected, {
      hint: `it is a ${mapTypeName(map.type)} map`,
    });
  }
}

/** Throws MapArgumentError unless `key` is an index of the array `map`. */
export function checkIndex(map: CheckedMap, key: number): void {
  if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) {
    throw new MapArgumentError(
      map,
      "key",
      `${key} is out of range: the map has ${map.maxEntries} entries (indexes 0 to ${
        map.maxEntries - 1
      })`,
    );
  }
}

/** Throws MapArgumentError unless `offset`..`offset + len` lies inside the value. */
export function checkValueRange(
  map: CheckedMap,
  argument: string,
  offset: number,
  len: number,
): void {
  if (
    !Number.isInteger(offset) || !Number.isInteger(len) || offset < 0 ||
    len < 0 || offset + len > map.valueSize
  ) {
    throw new MapArgumentError(
      map,
      argument,
      `${offset} with length ${len} is outside the ${map.valueSize}-byte value`,
    );
  }
}
