/**
 * Every kernel struct offset bpfmap's guest walkers use, in one object, so
 * the walkers never hard-code a kernel layout. `kernelLayoutFromBtf` fills it
 * from the guest's own vmlinux BTF; tests fill it with synthetic offsets.
 *
 * @module
 */

import { type Btf, BtfKind } from "../btf/mod.ts";
import { GuestKernelError } from "./errors.ts";

/** `struct idr` / `struct xarray` / `struct xa_node`. */
export interface XarrayLayout {
  /** `idr.idr_rt.xa_head`. */
  idrHead: number;
  /** `idr.idr_base`. */
  idrBase: number;
  /** `xa_node.shift` (u8). */
  nodeShift: number;
  /** `xa_node.slots`. */
  nodeSlots: number;
  /** Number of slots per node (`XA_CHUNK_SIZE`, 64). */
  chunkSize: number;
}

/** `struct bpf_map` members (and `struct btf` for the map's BTF). */
export interface BpfMapLayout {
  /** `map_type` (u32). */
  type: number;
  /** `key_size`. */
  keySize: number;
  /** `value_size`. */
  valueSize: number;
  /** `max_entries`. */
  maxEntries: number;
  /** `map_flags`. */
  flags: number;
  /** `map_extra` (u64). */
  mapExtra: number;
  /** `id`. */
  id: number;
  /** `name` (16 bytes). */
  name: number;
  /** `btf` (pointer). */
  btf: number;
  /** `btf_key_type_id`. */
  btfKeyTypeId: number;
  /** `btf_value_type_id`. */
  btfValueTypeId: number;
  /** `btf_vmlinux_value_type_id`. */
  btfVmlinuxValueTypeId: number;
  /** `frozen` (bool). */
  frozen: number;
  /** `struct btf.data` (pointer). */
  btfData: number;
  /** `struct btf.data_size` (u32). */
  btfDataSize: number;
  /** `struct btf.id` (u32). */
  btfId: number;
}

/** `struct bpf_array`. */
export interface ArrayLayout {
  /** `value` / `pptrs` (same offset, a union). */
  value: number;
  /** `elem_size`. */
  elemSize: number;
}

/** `struct bpf_htab` and its buckets and elements. */
export interface HtabLayout {
  /** `bpf_htab.buckets` (pointer). */
  buckets: number;
  /** `bpf_htab.n_buckets` (u32). */
  nBuckets: number;
  /** `sizeof(struct bucket)`. */
  bucketSize: number;
  /** `bucket.head.first`. */
  bucketFirst: number;
  /** `hlist_nulls_node.next` inside `htab_elem` (`htab_elem.hash_node.next`). */
  elemNext: number;
  /** `htab_elem.key`. */
  elemKey: number;
}

/** `struct bpf_local_storage_map` and its elements. */
export interface LocalStorageLayout {
  /** `bpf_local_storage_map.buckets` (pointer). */
  buckets: number;
  /** `bpf_local_storage_map.bucket_log` (u32). */
  bucketLog: number;
  /** `sizeof(struct bpf_local_storage_map_bucket)`. */
  bucketSize: number;
  /** `bpf_local_storage_map_bucket.list.first`. */
  bucketFirst: number;
  /** `bpf_local_storage_elem.map_node`. */
  elemMapNode: number;
  /** `hlist_node.next`. */
  nodeNext: number;
  /** `bpf_local_storage_elem.local_storage` (pointer). */
  elemLocalStorage: number;
  /** `bpf_local_storage_elem.sdata.data`. */
  elemData: number;
  /** `bpf_local_storage.owner` (pointer). */
  storageOwner: number;
}

/** `struct bpf_arena`. */
export interface ArenaLayout {
  /** `user_vm_start` (u64). */
  userVmStart: number;
  /** `user_vm_end` (u64). */
  userVmEnd: number;
  /** `kern_vm` (pointer to `struct vm_struct`). */
  kernVm: number;
  /** `vm_struct.addr`. */
  vmAddr: number;
  /** `GUARD_SZ` of kernel/bpf/arena.c: the kernel mapping starts `guard/2` into `kern_vm`. */
  guardSize: number;
}

/** Every offset the guest walkers use; optional parts are null when the kernel lacks them. */
export interface KernelLayout {
  /** IDR / xarray. */
  xarray: XarrayLayout;
  /** `struct bpf_map`. */
  map: BpfMapLayout;
  /** `struct bpf_array`. */
  array: ArrayLayout;
  /** Hash maps (null if `bpf_htab` is not in BTF). */
  htab: HtabLayout | null;
  /** Local storage (null if absent). */
  localStorage: LocalStorageLayout | null;
  /** Arena (null before 6.9). */
  arena: ArenaLayout | null;
}

function offsetOf(btf: Btf, struct: string | number, path: string): number {
  const location = btf.memberOffset(struct, path);
  if (location.bitfieldSize !== 0 || location.bitOffset % 8 !== 0) {
    throw new GuestKernelError(
      `${
        String(struct)
      }.${path} is a bitfield; bpfmap needs a byte-aligned member`,
    );
  }
  return location.offset;
}

function structId(btf: Btf, name: string, member?: string): number {
  for (const id of btf.findAllByName(name, BtfKind.STRUCT)) {
    if (member === undefined) return id;
    try {
      btf.memberOffset(id, member);
      return id;
    } catch {
      // another struct of the same name (e.g. bcache's `struct bucket`)
    }
  }
  throw new GuestKernelError(
    `struct ${name}${
      member ? ` with member ${member}` : ""
    } not found in vmlinux BTF`,
  );
}

function optional<T>(build: () => T): T | null {
  try {
    return build();
  } catch {
    return null;
  }
}

/**
 * Reads every offset from vmlinux BTF. The core parts (xarray, bpf_map,
 * bpf_array) are required; hash, local-storage and arena parts are null when
 * their structs are missing.
 *
 * @example
 * ```ts ignore
 * import { Btf } from "../btf/mod.ts";
 * const layout = kernelLayoutFromBtf(Btf.parse(kernel.btfBytes()));
 * console.log(layout.map.name);
 * ```
 */
export function kernelLayoutFromBtf(btf: Btf): KernelLayout {
  const slotsType = btf.type(
    btf.resolve(btf.memberOffset("xa_node", "slots").type),
  );
  const xarray: XarrayLayout = {
    idrHead: offsetOf(btf, "idr", "idr_rt.xa_head"),
    idrBase: offsetOf(btf, "idr", "idr_base"),
    nodeShift: offsetOf(btf, "xa_node", "shift"),
    nodeSlots: offsetOf(btf, "xa_node", "slots"),
    chunkSize: slotsType.kind === BtfKind.ARRAY ? slotsType.nelems : 64,
  };
  const map: BpfMapLayout = {
    type: offsetOf(btf, "bpf_map", "map_type"),
    keySize: offsetOf(btf, "bpf_map", "key_size"),
    valueSize: offsetOf(btf, "bpf_map", "value_size"),
    maxEntries: offsetOf(btf, "bpf_map", "max_entries"),
    flags: offsetOf(btf, "bpf_map", "map_flags"),
    mapExtra: offsetOf(btf, "bpf_map", "map_extra"),
    id: offsetOf(btf, "bpf_map", "id"),
    name: offsetOf(btf, "bpf_map", "name"),
    btf: offsetOf(btf, "bpf_map", "btf"),
    btfKeyTypeId: offsetOf(btf, "bpf_map", "btf_key_type_id"),
    btfValueTypeId: offsetOf(btf, "bpf_map", "btf_value_type_id"),
    btfVmlinuxValueTypeId: offsetOf(
      btf,
      "bpf_map",
      "btf_vmlinux_value_type_id",
    ),
    frozen: offsetOf(btf, "bpf_map", "frozen"),
    btfData: offsetOf(btf, "btf", "data"),
    btfDataSize: offsetOf(btf, "btf", "data_size"),
    btfId: offsetOf(btf, "btf", "id"),
  };
  const array: ArrayLayout = {
    value: offsetOf(btf, "bpf_array", "value"),
    elemSize: offsetOf(btf, "bpf_array", "elem_size"),
  };
  const htab = optional((): HtabLayout => {
    const bucket = structId(btf, "bucket", "head");
    return {
      buckets: offsetOf(btf, "bpf_htab", "buckets"),
      nBuckets: offsetOf(btf, "bpf_htab", "n_buckets"),
      bucketSize: btf.sizeOf(bucket),
      bucketFirst: offsetOf(btf, bucket, "head.first"),
      elemNext: offsetOf(btf, "htab_elem", "hash_node.next"),
      elemKey: offsetOf(btf, "htab_elem", "key"),
    };
  });
  const localStorage = optional((): LocalStorageLayout => ({
    buckets: offsetOf(btf, "bpf_local_storage_map", "buckets"),
    bucketLog: offsetOf(btf, "bpf_local_storage_map", "bucket_log"),
    bucketSize: btf.sizeOf(structId(btf, "bpf_local_storage_map_bucket")),
    bucketFirst: offsetOf(btf, "bpf_local_storage_map_bucket", "list.first"),
    elemMapNode: offsetOf(btf, "bpf_local_storage_elem", "map_node"),
    nodeNext: offsetOf(btf, "hlist_node", "next"),
    elemLocalStorage: offsetOf(btf, "bpf_local_storage_elem", "local_storage"),
    elemData: offsetOf(btf, "bpf_local_storage_elem", "sdata.data"),
    storageOwner: offsetOf(btf, "bpf_local_storage", "owner"),
  }));
  const arena = optional((): ArenaLayout => {
    // GUARD_SZ = round_up(1 << (sizeof(bpf_insn.off) * 8), PAGE_SIZE << 1)
    const offBits = btf.sizeOf(btf.memberOffset("bpf_insn", "off").type) * 8;
    const guard = Math.ceil((2 ** offBits) / 8192) * 8192;
    return {
      userVmStart: offsetOf(btf, "bpf_arena", "user_vm_start"),
      userVmEnd: offsetOf(btf, "bpf_arena", "user_vm_end"),
      kernVm: offsetOf(btf, "bpf_arena", "kern_vm"),
      vmAddr: offsetOf(btf, "vm_struct", "addr"),
      guardSize: guard,
    };
  });
  return { xarray, map, array, htab, localStorage, arena };
}
