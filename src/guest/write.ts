/**
 * Writing a frozen guest's kernel memory: where an ARRAY element lives, and
 * kernel virtual bytes stored through the page tables into physical memory.
 * Every page is translated before the first byte is written, so a write
 * either lands whole or not at all.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import { GuestMemoryError } from "./errors.ts";
import type { KernelLayout } from "./layout.ts";
import type { GuestMapRecord } from "./map_records.ts";
import type { KernelAddressSpace } from "./paging.ts";

/**
 * Kernel virtual address of element `index` of an ARRAY map, after checking
 * `bpf_array.elem_size` is the stride the kernel uses (round_up(value_size,
 * 8)): a wrong stride would put a write in the neighbouring element.
 */
export function arrayElementAddress(
  space: KernelAddressSpace,
  layout: KernelLayout,
  map: GuestMapRecord,
  index: number,
): bigint {
  if (map.type !== MapType.ARRAY) {
    throw new GuestMemoryError(
      `locate element ${index} of map ${map.id} ("${map.name}")`,
      map.kernelAddress,
      `it is of type ${map.type}, not an ARRAY`,
    );
  }
  const stride = space.mustU32(
    map.kernelAddress + BigInt(layout.array.elemSize),
    "bpf_array.elem_size",
  );
  const expected = (map.valueSize + 7) & ~7;
  if (stride !== expected) {
    throw new GuestMemoryError(
      `locate element ${index} of map ${map.id} ("${map.name}")`,
      map.kernelAddress,
      `bpf_array.elem_size is ${stride}, expected round_up(value_size ${map.valueSize}, 8) = ${expected}`,
    );
  }
  return map.kernelAddress + BigInt(layout.array.value) +
    BigInt(index) * BigInt(stride);
}

/**
 * Stores `bytes` at kernel virtual address `va`, page by page through the
 * guest's translation. Throws a GuestMemoryError naming `what` when a page
 * is unmapped (before anything is written) or the memory cannot be written.
 */
export function writeKernelBytes(
  space: KernelAddressSpace,
  va: bigint,
  bytes: Uint8Array,
  what: string,
): void {
  const memory = space.memory;
  if (memory.write === undefined) {
    throw new GuestMemoryError(
      `write ${bytes.length} bytes of ${what}`,
      va,
      "this guest memory source cannot be written",
    );
  }
  const runs: { pa: bigint; from: number; to: number }[] = [];
  for (let done = 0; done < bytes.length;) {
    const at = BigInt.asUintN(64, va + BigInt(done));
    const pa = space.translate(at);
    if (pa === null) {
      throw new GuestMemoryError(
        `write ${bytes.length} bytes of ${what}`,
        at,
        "not mapped",
      );
    }
    const n = Math.min(bytes.length - done, 4096 - Number(at & 0xfffn));
    runs.push({ pa, from: done, to: done + n });
    done += n;
  }
  for (const run of runs) {
    memory.write(run.pa, bytes.subarray(run.from, run.to));
  }
}
