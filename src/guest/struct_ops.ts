/**
 * The value of a STRUCT_OPS map (a sched_ext scheduler's `sched_ext_ops`, a
 * TCP congestion control) as bpf() returns it, rebuilt from guest memory.
 *
 * `bpf_struct_ops_map_sys_lookup_elem` (kernel/bpf/bpf_struct_ops.c, the same
 * from 6.1 to 7.3) does not return the registered kernel struct: it copies
 * `st_map->uvalue` (what user space supplied, with program ids where the
 * function pointers go), then overwrites the common header's `state` with
 * `kvalue`'s and its `refcnt` with `map->refcnt - map->usercnt` (at least 0);
 * in state INIT the whole value is zeros.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { GuestKernelError } from "./errors.ts";
import type { KernelAddressSpace } from "./paging.ts";

/** Offsets the rebuild needs, from the guest kernel's BTF. */
export interface StructOpsLayout {
  /** `bpf_struct_ops_map.uvalue` (a pointer). */
  uvalue: number;
  /** `bpf_struct_ops_map.kvalue` (embedded). */
  kvalue: number;
  /** `state` inside `bpf_struct_ops_value` (`common.state` from 6.9). */
  valueState: number;
  /** `refcnt` inside `bpf_struct_ops_value`. */
  valueRefcnt: number;
  /** `bpf_map.refcnt` (atomic64). */
  mapRefcnt: number;
  /** `bpf_map.usercnt` (atomic64). */
  mapUsercnt: number;
}

/** `BPF_STRUCT_OPS_STATE_INIT`: registered by no one yet. */
const STATE_INIT = 0;

/** The layout, or null when the kernel's BTF has no `bpf_struct_ops_map`. */
export function structOpsLayoutFromBtf(btf: Btf): StructOpsLayout | null {
  if (!btf.findByName("bpf_struct_ops_map")) return null;
  const inValue = (member: string): number => {
    const value = btf.findByName("bpf_struct_ops_value");
    const hasCommon = value !== undefined && "members" in value &&
      value.members.some((m) => m.name === "common");
    return btf.memberOffset(
      "bpf_struct_ops_value",
      hasCommon ? `common.${member}` : member,
    ).offset;
  };
  return {
    uvalue: btf.memberOffset("bpf_struct_ops_map", "uvalue").offset,
    kvalue: btf.memberOffset("bpf_struct_ops_map", "kvalue").offset,
    valueState: inValue("state"),
    valueRefcnt: inValue("refcnt"),
    mapRefcnt: btf.memberOffset("bpf_map", "refcnt").offset,
    mapUsercnt: btf.memberOffset("bpf_map", "usercnt").offset,
  };
}

/**
 * A fresh copy of the value bpf() would return for the STRUCT_OPS map at
 * `mapAddress`.
 *
 * @param space the guest kernel's address space
 * @param layout from {@linkcode structOpsLayoutFromBtf}
 * @param mapAddress the `struct bpf_map` (first member of `bpf_struct_ops_map`)
 * @param valueSize the map's `value_size`
 */
export function readStructOpsValue(
  space: KernelAddressSpace,
  layout: StructOpsLayout,
  mapAddress: bigint,
  valueSize: number,
): Uint8Array {
  if (valueSize < Math.max(layout.valueState, layout.valueRefcnt) + 4) {
    throw new GuestKernelError(
      `STRUCT_OPS map at ${mapAddress}: value_size ${valueSize} is smaller than its header`,
    );
  }
  const out = new Uint8Array(valueSize);
  const state = space.mustU32(
    mapAddress + BigInt(layout.kvalue + layout.valueState),
    "bpf_struct_ops_map.kvalue state",
  );
  if (state === STATE_INIT) return out;
  const uvalue = space.mustU64(
    mapAddress + BigInt(layout.uvalue),
    "bpf_struct_ops_map.uvalue",
  );
  out.set(space.mustRead(uvalue, valueSize, "struct_ops uvalue"));
  const refcnt = BigInt.asIntN(
    64,
    space.mustU64(mapAddress + BigInt(layout.mapRefcnt), "bpf_map.refcnt") -
      space.mustU64(mapAddress + BigInt(layout.mapUsercnt), "bpf_map.usercnt"),
  );
  const view = new DataView(out.buffer);
  view.setUint32(layout.valueState, state, true);
  view.setUint32(
    layout.valueRefcnt,
    refcnt > 0n ? Number(BigInt.asUintN(32, refcnt)) : 0,
    true,
  );
  return out;
}
