/**
 * The kernel's per-CPU value layout, shared by every backend: each CPU's
 * value sits in a slot of `round_up(value_size, 8)` bytes.
 *
 * @module
 */

import { MapArgumentError, type MapIdentity } from "../errors.ts";

/**
 * Checks a caller's CPU count before anything is allocated for it: an
 * integer from 1 to `max` (no kernel has more possible CPUs than 8192).
 */
export function validateCpuCount(
  map: MapIdentity,
  numCpus: number,
  max: number,
): void {
  if (!Number.isInteger(numCpus) || numCpus < 1 || numCpus > max) {
    throw new MapArgumentError(
      map,
      "numCpus",
      `is ${numCpus}; it must be an integer from 1 to ${max}`,
      { hint: "leave it out to get the kernel's possible CPUs" },
    );
  }
}

/** Rounds a value size up to the 8-byte per-CPU slot stride. */
export function percpuStride(valueSize: number): number {
  return Math.ceil(valueSize / 8) * 8;
}

/** Cuts a per-CPU buffer into `numCpus` values; CPUs the kernel does not have are null. */
export function splitPercpu(
  all: Uint8Array,
  valueSize: number,
  kernelCpus: number,
  numCpus: number,
): (Uint8Array | null)[] {
  const stride = percpuStride(valueSize);
  const values: (Uint8Array | null)[] = [];
  for (let cpu = 0; cpu < numCpus; cpu++) {
    values.push(
      cpu < kernelCpus
        ? all.slice(cpu * stride, cpu * stride + valueSize)
        : null,
    );
  }
  return values;
}

/** Lays per-CPU values out the kernel's way (zero padding; a null CPU stays zero). */
export function joinPercpu(
  values: readonly (Uint8Array | null)[],
  valueSize: number,
): Uint8Array {
  const stride = percpuStride(valueSize);
  const joined = new Uint8Array(stride * values.length);
  values.forEach((value, cpu) => {
    if (value) joined.set(value.subarray(0, valueSize), cpu * stride);
  });
  return joined;
}
