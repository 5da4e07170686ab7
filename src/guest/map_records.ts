/**
 * `struct bpf_map` records and their enumeration through `map_idr`, plus
 * what every per-type reader shares: the read context and the type check.
 *
 * @module
 */

import { MapTypeError } from "../errors.ts";
import { GuestMemoryError, hex } from "./errors.ts";
import type { KernelLayout } from "./layout.ts";
import type { KernelAddressSpace } from "./paging.ts";
import type { ProblemLog } from "./problems.ts";
import { walkIdr } from "./xarray.ts";

/** A `struct bpf_map` as read from guest memory. */
export interface GuestMapRecord {
  /** `bpf_map.id`. */
  id: number;
  /** `bpf_map.name`, cut at the first NUL. */
  name: string;
  /** `map_type`. */
  type: number;
  /** `key_size`. */
  keySize: number;
  /** `value_size`. */
  valueSize: number;
  /** `max_entries`. */
  maxEntries: number;
  /** `map_flags`. */
  flags: number;
  /** `map_extra`. */
  mapExtra: bigint;
  /** `btf->id`, 0 without BTF. */
  btfId: number;
  /** `btf_key_type_id`. */
  btfKeyTypeId: number;
  /** `btf_value_type_id`. */
  btfValueTypeId: number;
  /** `btf_vmlinux_value_type_id`. */
  btfVmlinuxValueTypeId: number;
  /** `frozen`. */
  frozen: boolean;
  /** Kernel virtual address of the `struct bpf_map`. */
  kernelAddress: bigint;
  /** Kernel virtual address of the map's `struct btf`, 0n when none. */
  btfAddress: bigint;
}

/** A `map_idr` entry whose `struct bpf_map` could not be read. */
export interface UnreadableMap {
  /** The id (`map_idr` index). */
  id: number;
  /** The pointer the entry holds. */
  address: bigint;
  /** The name, when at least that could be read. */
  name: string | null;
  /** Why the record could not be used. */
  reason: string;
}

/** Limits for walks; defaults suit real kernels. */
export interface GuestMapLimits {
  /** Most maps `maps()` returns; default 65,536. */
  maxMaps?: number;
  /** Largest `key_size`/`value_size` accepted; default 1 MiB (`KMALLOC_MAX_SIZE`-ish). */
  maxValueSize?: number;
  /** Cap on arena pages probed; default 1 << 20 (4 GiB). */
  maxArenaPages?: number;
}

/** What every per-type reader needs. */
export interface MapReadContext {
  /** The guest kernel's address space. */
  space: KernelAddressSpace;
  /** Struct offsets. */
  layout: KernelLayout;
  /** `__per_cpu_offset[0..nr_cpu_ids)`. */
  perCpuOffsets: readonly bigint[];
  /** The same, as high 32-bit halves (for number arithmetic). */
  percpuHi: readonly number[];
  /** The same, as low 32-bit halves. */
  percpuLo: readonly number[];
  /** Walk limits. */
  limits: Required<GuestMapLimits>;
  /** Where skipped parts are recorded. */
  problems: ProblemLog;
}

const NAME_LEN = 16;

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** Throws MapTypeError unless `map` has one of `types`. */
export function checkType(
  map: GuestMapRecord,
  types: ReadonlySet<number> | number,
  expected: string,
): void {
  const ok = typeof types === "number"
    ? map.type === types
    : types.has(map.type);
  if (!ok) throw new MapTypeError(map, map.type, expected);
}

/** Reads the `struct bpf_map` at `va`. */
export function readMapRecord(
  context: MapReadContext,
  va: bigint,
): GuestMapRecord {
  const { space, layout, limits } = context;
  const m = layout.map;
  if (space.translate(va) === null) {
    throw new GuestMemoryError("read struct bpf_map", va, "not mapped");
  }
  const u32 = (off: number, what: string): number =>
    space.mustU32(va + BigInt(off), `bpf_map.${what}`);
  const btfAddress = space.mustU64(va + BigInt(m.btf), "bpf_map.btf");
  const record: GuestMapRecord = {
    id: u32(m.id, "id"),
    name: cString(
      space.mustRead(va + BigInt(m.name), NAME_LEN, "bpf_map.name"),
    ),
    type: u32(m.type, "map_type"),
    keySize: u32(m.keySize, "key_size"),
    valueSize: u32(m.valueSize, "value_size"),
    maxEntries: u32(m.maxEntries, "max_entries"),
    flags: u32(m.flags, "map_flags"),
    mapExtra: space.mustU64(va + BigInt(m.mapExtra), "bpf_map.map_extra"),
    btfId: 0,
    btfKeyTypeId: u32(m.btfKeyTypeId, "btf_key_type_id"),
    btfValueTypeId: u32(m.btfValueTypeId, "btf_value_type_id"),
    btfVmlinuxValueTypeId: u32(
      m.btfVmlinuxValueTypeId,
      "btf_vmlinux_value_type_id",
    ),
    frozen: space.mustU8(va + BigInt(m.frozen), "bpf_map.frozen") !== 0,
    kernelAddress: va,
    btfAddress,
  };
  if (
    record.keySize > limits.maxValueSize ||
    record.valueSize > limits.maxValueSize
  ) {
    throw new GuestMemoryError(
      `use bpf_map "${record.name}"`,
      va,
      `key_size ${record.keySize} / value_size ${record.valueSize} exceed ${limits.maxValueSize}`,
    );
  }
  if (btfAddress !== 0n) {
    record.btfId = space.mustU32(
      btfAddress + BigInt(m.btfId),
      `btf.id of map ${record.id}`,
    );
  }
  return record;
}

/**
 * Every map in `map_idr`, in id order, and the entries whose record could
 * not be read. Each skipped part is also recorded in `context.problems`.
 */
export function listMaps(
  context: MapReadContext,
  mapIdr: bigint,
): { records: GuestMapRecord[]; unreadable: UnreadableMap[] } {
  const { space, layout, limits, problems } = context;
  const records: GuestMapRecord[] = [];
  const unreadable: UnreadableMap[] = [];
  for (
    const { index, entry } of walkIdr(space, mapIdr, layout.xarray, {
      maxEntries: limits.maxMaps,
      onProblem: (message) =>
        problems.add({ what: "map", message: `map_idr: ${message}` }),
    })
  ) {
    if (entry & 3n) continue; // value or internal entry: not a map pointer
    const id = Number(index);
    try {
      const record = readMapRecord(context, entry);
      if (record.id !== id) {
        problems.add({
          what: "map",
          mapId: id,
          address: entry,
          message: `map_idr: entry ${id} points at ${
            hex(entry)
          } whose id is ${record.id}`,
        });
      }
      records.push(record);
    } catch (error) {
      const reason = (error as Error).message;
      const nameBytes = space.read(entry + BigInt(layout.map.name), NAME_LEN);
      unreadable.push({
        id,
        address: entry,
        name: nameBytes ? cString(nameBytes) : null,
        reason,
      });
      problems.add({
        what: "map",
        mapId: id,
        address: entry,
        message: `map_idr: entry ${id} (struct bpf_map at ${
          hex(entry)
        }) is unreadable: ${reason}`,
      });
    }
  }
  return { records, unreadable };
}

/** The raw bytes of the map's `struct btf` (its `data`/`data_size`), or null without BTF. */
export function programBtf(
  context: MapReadContext,
  map: GuestMapRecord,
): Uint8Array | null {
  if (map.btfAddress === 0n) return null;
  const { space } = context;
  const m = context.layout.map;
  const data = space.mustU64(
    map.btfAddress + BigInt(m.btfData),
    `btf.data of map ${map.id}`,
  );
  const size = space.mustU32(
    map.btfAddress + BigInt(m.btfDataSize),
    `btf.data_size of map ${map.id}`,
  );
  if (size > 64 << 20) {
    throw new GuestMemoryError(
      `read the BTF of map ${map.id}`,
      map.btfAddress,
      `data_size ${size} is implausible`,
    );
  }
  return space.mustRead(data, size, `BTF data of map ${map.id}`).slice();
}
