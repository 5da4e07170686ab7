/**
 * STACK_TRACE in guest memory: `bpf_stack_map.buckets[id]` points at a
 * `stack_map_bucket` holding `nr` frames (u64 ips, or 32-byte
 * `bpf_stack_build_id` entries with `BPF_F_STACK_BUILD_ID`). bpf() copies
 * the `nr` frames and zeroes the rest of the value (`bpf_stackmap_copy`);
 * this returns the same bytes, for every id whose bucket is set, in id order
 * (the order `stack_map_get_next_key` lists them).
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { StackMapLayout } from "./layout.ts";

/** One stored stack: its id and the value bpf() would return. */
export interface GuestStack {
  /** Stack id (bucket index). */
  id: number;
  /** `value_size` bytes: the frames, then zeros. */
  value: Uint8Array;
}

/** A bucket that could not be read, with why. */
export interface GuestStackError {
  /** Stack id. */
  id: number;
  /** One line. */
  error: string;
}

/** Every stack of the map; unreadable buckets are listed with the reason, not fatal. */
export function readGuestStacks(
  space: KernelAddressSpace,
  layout: StackMapLayout,
  map: GuestMapRecord,
  frameSize: number,
): { stacks: GuestStack[]; errors: GuestStackError[] } {
  const va = map.kernelAddress;
  const what = `map ${map.id} ("${map.name}")`;
  const nBuckets = space.mustU32(
    va + BigInt(layout.nBuckets),
    "bpf_stack_map.n_buckets",
  );
  // n_buckets = roundup_pow_of_two(max_entries): anything else is not this map's
  let expected = 1;
  while (expected < map.maxEntries) expected *= 2;
  if (nBuckets !== expected) {
    throw new GuestMemoryError(
      `use the stack map of ${what}`,
      va,
      `n_buckets ${nBuckets}, expected ${expected} for max_entries ${map.maxEntries}`,
    );
  }
  const maxFrames = Math.floor(map.valueSize / frameSize);
  const stacks: GuestStack[] = [];
  const errors: GuestStackError[] = [];
  const chunk = 512;
  for (let first = 0; first < nBuckets; first += chunk) {
    const n = Math.min(chunk, nBuckets - first);
    const pointers = space.mustRead(
      va + BigInt(layout.buckets + first * 8),
      n * 8,
      `bpf_stack_map.buckets of ${what}`,
    ).slice();
    const view = new DataView(pointers.buffer);
    for (let i = 0; i < n; i++) {
      const bucket = view.getBigUint64(i * 8, true);
      if (bucket === 0n) continue;
      const id = first + i;
      const nr = space.u32(bucket + BigInt(layout.bucketNr));
      if (nr === null || nr > maxFrames) {
        errors.push({
          id,
          error: nr === null
            ? `stack_map_bucket at 0x${bucket.toString(16)} is not mapped`
            : `stack_map_bucket at 0x${
              bucket.toString(16)
            } holds ${nr} frames; the value fits ${maxFrames}`,
        });
        continue;
      }
      const value = new Uint8Array(map.valueSize);
      const frames = space.read(
        bucket + BigInt(layout.bucketData),
        nr * frameSize,
      );
      if (frames === null) {
        errors.push({
          id,
          error: `frames of stack_map_bucket at 0x${
            bucket.toString(16)
          } are not mapped`,
        });
        continue;
      }
      value.set(frames);
      stacks.push({ id, value });
    }
  }
  return { stacks, errors };
}
