/**
 * DEVMAP, DEVMAP_HASH and CPUMAP in guest memory. A user-space lookup
 * copies `value_size` bytes of the element's `val` (`struct bpf_devmap_val`:
 * ifindex, then the XDP program's id) or `value` (`struct bpf_cpumap_val`:
 * qsize, then the program's id), which the kernel filled in at update time;
 * these readers copy the same bytes from the same place, and hand back the
 * element's program pointer so its name can be read as bpf() would show it.
 *
 * Slot order is `get_next_key`'s: every index for the arrays (empty ones
 * included), bucket by bucket and down each chain for DEVMAP_HASH
 * (`dev_map_hash_get_next_key`).
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { CpumapLayout, DevmapLayout } from "./layout.ts";
import {
  bucketCountFor,
  readPointerArray,
  walkHashChains,
} from "./pointers.ts";

/** One slot of a device or CPU map. */
export interface GuestDeviceSlot {
  /** The u32 key (index, or DEVMAP_HASH's `idx`). */
  key: number;
  /** The `value_size` bytes a lookup returns; null for an empty slot. */
  value: Uint8Array | null;
  /** The attached program's `struct bpf_prog *`, 0n for none. */
  program: bigint;
}

/** Value sizes the kernel accepts for these maps (`dev_map_alloc_check`, `cpu_map_alloc`). */
function checkValueSize(map: GuestMapRecord): void {
  if (map.valueSize !== 4 && map.valueSize !== 8) {
    throw new GuestMemoryError(
      `read map ${map.id} ("${map.name}")`,
      map.kernelAddress,
      `value_size ${map.valueSize} is neither 4 nor 8`,
    );
  }
}

function slotAt(
  space: KernelAddressSpace,
  map: GuestMapRecord,
  key: number,
  element: bigint,
  valueOffset: number,
  programOffset: number,
): GuestDeviceSlot {
  const what = `element ${key} of map ${map.id} ("${map.name}")`;
  return {
    key,
    // read() may return a view of a page cache: copy before the next read
    value: space.mustRead(
      element + BigInt(valueOffset),
      map.valueSize,
      `the value of ${what}`,
    ).slice(),
    program: space.mustU64(
      element + BigInt(programOffset),
      `the program of ${what}`,
    ),
  };
}

function arraySlots(
  space: KernelAddressSpace,
  map: GuestMapRecord,
  slotsPointerOffset: number,
  valueOffset: number,
  programOffset: number,
  struct: string,
): GuestDeviceSlot[] {
  checkValueSize(map);
  const what = `map ${map.id} ("${map.name}")`;
  const array = space.mustU64(
    map.kernelAddress + BigInt(slotsPointerOffset),
    `${struct} of ${what}`,
  );
  const elements = readPointerArray(
    space,
    array,
    map.maxEntries,
    `the slots of ${what}`,
  );
  return elements.map((element, key) =>
    element === 0n
      ? { key, value: null, program: 0n }
      : slotAt(space, map, key, element, valueOffset, programOffset)
  );
}

/** Every index of a DEVMAP, in order. */
export function readGuestDevmap(
  space: KernelAddressSpace,
  layout: DevmapLayout,
  map: GuestMapRecord,
): GuestDeviceSlot[] {
  return arraySlots(
    space,
    map,
    layout.netdevMap,
    layout.val,
    layout.xdpProg,
    "bpf_dtab.netdev_map",
  );
}

/** Every index of a CPUMAP, in order. */
export function readGuestCpumap(
  space: KernelAddressSpace,
  layout: CpumapLayout,
  map: GuestMapRecord,
): GuestDeviceSlot[] {
  return arraySlots(
    space,
    map,
    layout.cpuMap,
    layout.value,
    layout.prog,
    "bpf_cpu_map.cpu_map",
  );
}

/** Every element of a DEVMAP_HASH, in `get_next_key` order. */
export function readGuestDevmapHash(
  space: KernelAddressSpace,
  layout: DevmapLayout,
  map: GuestMapRecord,
): GuestDeviceSlot[] {
  checkValueSize(map);
  const what = `map ${map.id} ("${map.name}")`;
  const va = map.kernelAddress;
  const buckets = space.mustU32(
    va + BigInt(layout.nBuckets),
    `bpf_dtab.n_buckets of ${what}`,
  );
  // dev_map_init_map sizes the buckets from max_entries: anything else is
  // not this map's table, and would bound the walk by a hostile number
  if (buckets !== bucketCountFor(map.maxEntries)) {
    throw new GuestMemoryError(
      `use the buckets of ${what}`,
      va,
      `n_buckets is ${buckets}, max_entries ${map.maxEntries} makes ${
        bucketCountFor(map.maxEntries)
      }`,
    );
  }
  const heads = space.mustU64(
    va + BigInt(layout.devIndexHead),
    `bpf_dtab.dev_index_head of ${what}`,
  );
  const nodes = walkHashChains(
    space,
    layout,
    map,
    heads,
    buckets,
    layout.hlistHeadSize,
    0,
  );
  return nodes.map((node) => {
    const element = node - BigInt(layout.indexHlist);
    const key = space.mustU32(
      element + BigInt(layout.idx),
      `bpf_dtab_netdev.idx of ${what}`,
    );
    return slotAt(space, map, key, element, layout.val, layout.xdpProg);
  });
}
