/**
 * PROG_ARRAY and ARRAY_OF_MAPS in guest memory: `bpf_array.ptrs[i]` holds
 * the `struct bpf_prog *` or `struct bpf_map *` user space put there by fd;
 * bpf() answers a lookup with the object's id (`prog->aux->id`,
 * `map->id`), ENOENT for an empty slot.
 *
 * @module
 */

import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { FdArrayLayout } from "./layout.ts";

/** One slot: empty, or the object's id (and a program's name). */
export interface GuestFdSlot {
  /** Array index. */
  index: number;
  /** The object's kernel address, 0n when empty. */
  pointer: bigint;
  /** `aux->id` or `map->id`. */
  id?: number;
  /** `aux->name`, for programs. */
  name?: string;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** The id (and program name) behind a program or map pointer. */
export function objectBehind(
  space: KernelAddressSpace,
  layout: FdArrayLayout,
  pointer: bigint,
  kind: "prog" | "map",
): { id: number; name?: string } {
  if (kind === "map") {
    return {
      id: space.mustU32(pointer + BigInt(layout.mapId), "bpf_map.id"),
    };
  }
  const aux = space.mustU64(pointer + BigInt(layout.progAux), "bpf_prog.aux");
  return {
    id: space.mustU32(aux + BigInt(layout.auxId), "bpf_prog_aux.id"),
    name: cString(
      space.mustRead(aux + BigInt(layout.auxName), 16, "bpf_prog_aux.name"),
    ),
  };
}

/** Every slot of a PROG_ARRAY (`kind` prog) or ARRAY_OF_MAPS (`kind` map), in index order. */
export function readGuestFdArray(
  space: KernelAddressSpace,
  layout: FdArrayLayout,
  map: GuestMapRecord,
  kind: "prog" | "map",
): GuestFdSlot[] {
  const slots: GuestFdSlot[] = [];
  const base = map.kernelAddress + BigInt(layout.ptrs);
  const chunk = 512;
  for (let first = 0; first < map.maxEntries; first += chunk) {
    const n = Math.min(chunk, map.maxEntries - first);
    const pointers = space.mustRead(
      base + BigInt(first * 8),
      n * 8,
      `bpf_array.ptrs of map ${map.id} ("${map.name}")`,
    ).slice();
    const view = new DataView(pointers.buffer);
    for (let i = 0; i < n; i++) {
      const pointer = view.getBigUint64(i * 8, true);
      slots.push(
        pointer === 0n ? { index: first + i, pointer } : {
          index: first + i,
          pointer,
          ...objectBehind(space, layout, pointer, kind),
        },
      );
    }
  }
  return slots;
}
