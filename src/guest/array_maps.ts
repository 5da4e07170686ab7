/**
 * ARRAY (global data included) and PERCPU_ARRAY maps: `struct bpf_array`
 * holds the values inline (stride `elem_size`) or, per-CPU, one `pptrs[]`
 * pointer per index to add `__per_cpu_offset[cpu]` to.
 *
 * @module
 */

import { MapArgumentError } from "../errors.ts";
import { MapType } from "../sys/constants.ts";
import { GuestMemoryError } from "./errors.ts";
import {
  checkType,
  type GuestMapRecord,
  type MapReadContext,
} from "./map_records.ts";

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

function elemSize(context: MapReadContext, map: GuestMapRecord): number {
  const size = context.space.mustU32(
    map.kernelAddress + BigInt(context.layout.array.elemSize),
    "bpf_array.elem_size",
  );
  const expected = map.type === MapType.PERCPU_ARRAY
    ? size
    : roundUp8(map.valueSize);
  if (size !== expected) {
    throw new GuestMemoryError(
      `use map ${map.id} ("${map.name}")`,
      map.kernelAddress,
      `bpf_array.elem_size is ${size}, expected round_up(value_size ${map.valueSize}, 8) = ${expected}`,
    );
  }
  return size;
}

/** Value `key` of an ARRAY map (stride `round_up(value_size, 8)`), or null when out of range. */
export function readArray(
  context: MapReadContext,
  map: GuestMapRecord,
  key: number,
): Uint8Array | null {
  checkType(map, MapType.ARRAY, "an ARRAY map");
  if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) return null;
  const stride = elemSize(context, map);
  const va = map.kernelAddress + BigInt(context.layout.array.value) +
    BigInt(key) * BigInt(stride);
  // the message is built only when the read fails
  return context.space.read(va, map.valueSize) ?? context.space.mustRead(
    va,
    map.valueSize,
    `value ${key} of map ${map.id} ("${map.name}")`,
  );
}

/** `len` bytes at `offset` of value 0 of an ARRAY map; MapArgumentError when out of bounds. */
export function readArrayValue(
  context: MapReadContext,
  map: GuestMapRecord,
  offset: number,
  len: number,
): Uint8Array | null {
  checkType(map, MapType.ARRAY, "an ARRAY map");
  if (
    !Number.isInteger(offset) || !Number.isInteger(len) || offset < 0 ||
    len < 0 || offset + len > map.valueSize
  ) {
    throw new MapArgumentError(
      map,
      "offset/length",
      `${offset}+${len} does not fit the ${map.valueSize}-byte value`,
    );
  }
  if (map.maxEntries < 1) return null;
  const va = map.kernelAddress +
    BigInt(context.layout.array.value + offset);
  return context.space.mustRead(
    va,
    len,
    `value of map ${map.id} ("${map.name}") at +${offset}`,
  );
}

/** Checks a CPU count argument. */
export function checkCpuCount(map: GuestMapRecord, numCpus: number): void {
  if (!Number.isInteger(numCpus) || numCpus < 0 || numCpus > 65_536) {
    throw new MapArgumentError(
      map,
      "numCpus",
      `${numCpus} is not a CPU count (0..65536)`,
    );
  }
}

/** Every CPU's copy of index `key` of a PERCPU_ARRAY; null entries for CPUs beyond `nr_cpu_ids`. */
export function readPercpuArray(
  context: MapReadContext,
  map: GuestMapRecord,
  key: number,
  numCpus: number,
): (Uint8Array | null)[] | null {
  checkType(map, MapType.PERCPU_ARRAY, "a PERCPU_ARRAY map");
  checkCpuCount(map, numCpus);
  if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) return null;
  const { space, perCpuOffsets } = context;
  const what = `value ${key} of map ${map.id} ("${map.name}")`;
  const pptr = space.mustU64(
    map.kernelAddress + BigInt(context.layout.array.value + key * 8),
    `pptrs[${key}] of map ${map.id}`,
  );
  const values: (Uint8Array | null)[] = [];
  for (let cpu = 0; cpu < numCpus; cpu++) {
    const offset = perCpuOffsets[cpu];
    values.push(
      offset === undefined ? null : space.mustRead(
        BigInt.asUintN(64, pptr + offset),
        map.valueSize,
        `${what} on CPU ${cpu}`,
      ).slice(),
    );
  }
  return values;
}
