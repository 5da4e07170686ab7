/**
 * The `union bpf_attr` layouts (and the info structs) bpfmap encodes, as
 * declarative tables: one per command, each field with the kernel's C name,
 * byte offset and size. Encoders write through these tables only, so an
 * offset is stated once and a test can hold every table against the kernel's
 * own header (`tests/sys_attr_test.ts` compiles `offsetof` with clang).
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";

/** One field of a kernel struct. */
export interface AttrField {
  /** The kernel's C name (a member path, e.g. `batch.in_batch`, in `cType`). */
  readonly cName: string;
  /** Byte offset in the struct. */
  readonly offset: number;
  /** Byte size: 4 or 8 for integers and pointers, 16 for `char[16]` names. */
  readonly size: 4 | 8 | 16;
  /** The kernel release that named the field, when newer than 5.6 (older headers have padding there). */
  readonly since?: string;
}

/** A struct layout: its C type and fields by our name. */
export interface AttrLayout<F extends string> {
  /** What it encodes, e.g. `BPF_MAP_LOOKUP_BATCH`. */
  readonly what: string;
  /** The C type the offsets are relative to, e.g. `union bpf_attr`. */
  readonly cType: string;
  /** Fields by name. */
  readonly fields: { readonly [K in F]: AttrField };
  /** Bytes up to the end of the last field. */
  readonly size: number;
}

function layout<F extends string>(
  what: string,
  cType: string,
  prefix: string,
  rows: readonly (readonly [F, number, 4 | 8 | 16, string?])[],
): AttrLayout<F> {
  const fields = {} as { [K in F]: AttrField };
  let size = 0;
  for (const [name, offset, fieldSize, since] of rows) {
    fields[name] = {
      cName: prefix + name,
      offset,
      size: fieldSize,
      ...(since ? { since } : {}),
    };
    size = Math.max(size, offset + fieldSize);
  }
  return { what, cType, fields, size };
}

const ATTR = "union bpf_attr";

/** MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY, MAP_FREEZE. */
export const ELEM_ATTR = layout("BPF_MAP_*_ELEM", ATTR, "", [
  ["map_fd", 0, 4],
  ["key", 8, 8],
  // `next_key` for GET_NEXT_KEY shares this slot (a union in the kernel).
  ["value", 16, 8],
  ["flags", 24, 8],
]);

/** MAP_LOOKUP_BATCH, MAP_UPDATE_BATCH (and the other *_BATCH commands). */
export const BATCH_ATTR = layout("BPF_MAP_*_BATCH", ATTR, "batch.", [
  ["in_batch", 0, 8],
  ["out_batch", 8, 8],
  ["keys", 16, 8],
  ["values", 24, 8],
  ["count", 32, 4],
  ["map_fd", 36, 4],
  ["elem_flags", 40, 8],
  ["flags", 48, 8],
]);

/** MAP_CREATE. */
export const MAP_CREATE_ATTR = layout("BPF_MAP_CREATE", ATTR, "", [
  ["map_type", 0, 4],
  ["key_size", 4, 4],
  ["value_size", 8, 4],
  ["max_entries", 12, 4],
  ["map_flags", 16, 4],
  ["inner_map_fd", 20, 4],
  ["numa_node", 24, 4],
  ["map_name", 28, 16],
  ["map_ifindex", 44, 4],
  ["btf_fd", 48, 4],
  ["btf_key_type_id", 52, 4],
  ["btf_value_type_id", 56, 4],
  ["btf_vmlinux_value_type_id", 60, 4],
  ["map_extra", 64, 8],
]);

/** MAP_GET_NEXT_ID, BTF_GET_NEXT_ID, MAP_GET_FD_BY_ID, BTF_GET_FD_BY_ID. */
export const ID_ATTR = layout("BPF_*_GET_NEXT_ID / GET_FD_BY_ID", ATTR, "", [
  // `map_id` / `btf_id` for GET_FD_BY_ID share this slot.
  ["start_id", 0, 4],
  ["next_id", 4, 4],
  ["open_flags", 8, 4],
]);

/** OBJ_GET_INFO_BY_FD. */
export const INFO_ATTR = layout("BPF_OBJ_GET_INFO_BY_FD", ATTR, "info.", [
  ["bpf_fd", 0, 4],
  ["info_len", 4, 4],
  ["info", 8, 8],
]);

/** OBJ_PIN, OBJ_GET. */
export const OBJ_ATTR = layout("BPF_OBJ_PIN / BPF_OBJ_GET", ATTR, "", [
  ["pathname", 0, 8],
  ["bpf_fd", 8, 4],
  ["file_flags", 12, 4],
]);

/** BTF_LOAD. */
export const BTF_LOAD_ATTR = layout("BPF_BTF_LOAD", ATTR, "", [
  ["btf", 0, 8],
  ["btf_log_buf", 8, 8],
  ["btf_size", 16, 4],
  ["btf_log_size", 20, 4],
  ["btf_log_level", 24, 4],
]);

/** `struct bpf_map_info`, as far as bpfmap reads it (the 6.18 hash fields stay zero). */
export const MAP_INFO = layout(
  "struct bpf_map_info",
  "struct bpf_map_info",
  "",
  [
    ["type", 0, 4],
    ["id", 4, 4],
    ["key_size", 8, 4],
    ["value_size", 12, 4],
    ["max_entries", 16, 4],
    ["map_flags", 20, 4],
    ["name", 24, 16],
    ["ifindex", 40, 4],
    ["btf_vmlinux_value_type_id", 44, 4],
    ["netns_dev", 48, 8],
    ["netns_ino", 56, 8],
    ["btf_id", 64, 4],
    ["btf_key_type_id", 68, 4],
    ["btf_value_type_id", 72, 4],
    ["btf_vmlinux_id", 76, 4, "6.9"],
    ["map_extra", 80, 8],
  ],
);

/** `struct bpf_btf_info`. */
export const BTF_INFO = layout(
  "struct bpf_btf_info",
  "struct bpf_btf_info",
  "",
  [
    ["btf", 0, 8],
    ["btf_size", 8, 4],
    ["id", 12, 4],
    ["name", 16, 8],
    ["name_len", 24, 4],
    ["kernel_btf", 28, 4],
  ],
);

/** PROG_LOAD (as far as bpfmap's test programs need it). */
export const PROG_LOAD_ATTR = layout("BPF_PROG_LOAD", ATTR, "", [
  ["prog_type", 0, 4],
  ["insn_cnt", 4, 4],
  ["insns", 8, 8],
  ["license", 16, 8],
  ["log_level", 24, 4],
  ["log_size", 28, 4],
  ["log_buf", 32, 8],
  ["prog_name", 48, 16],
  ["expected_attach_type", 68, 4],
]);

/** PROG_TEST_RUN. */
export const TEST_RUN_ATTR = layout("BPF_PROG_TEST_RUN", ATTR, "test.", [
  ["prog_fd", 0, 4],
  ["retval", 4, 4],
  ["data_size_in", 8, 4],
  ["data_in", 16, 8],
  ["repeat", 32, 4],
  ["ctx_size_in", 40, 4],
  ["ctx_in", 48, 8],
]);

/**
 * `struct bpf_prog_info`, up to `verified_insns` (5.16). `gpl_compatible` is
 * a bitfield (bit 0 of the word after `ifindex`): offsetof cannot name it, so
 * readers take it from `ifindex.offset + 4`, pinned by `netns_dev` at 88.
 */
export const PROG_INFO = layout(
  "struct bpf_prog_info",
  "struct bpf_prog_info",
  "",
  [
    ["type", 0, 4],
    ["id", 4, 4],
    ["tag", 8, 8],
    ["jited_prog_len", 16, 4],
    ["xlated_prog_len", 20, 4],
    ["load_time", 40, 8],
    ["created_by_uid", 48, 4],
    ["nr_map_ids", 52, 4],
    ["map_ids", 56, 8],
    ["name", 64, 16],
    ["ifindex", 80, 4],
    ["netns_dev", 88, 8],
    ["btf_id", 128, 4],
    ["run_time_ns", 192, 8],
    ["run_cnt", 200, 8],
    ["recursion_misses", 208, 8],
    ["verified_insns", 216, 4],
  ],
);

/** ENABLE_STATS. */
export const ENABLE_STATS_ATTR = layout("BPF_ENABLE_STATS", ATTR, "", [
  ["enable_stats.type", 0, 4],
]);

/** Every table, for the layout test. */
export const ALL_LAYOUTS: readonly AttrLayout<string>[] = [
  ELEM_ATTR,
  BATCH_ATTR,
  MAP_CREATE_ATTR,
  ID_ATTR,
  INFO_ATTR,
  OBJ_ATTR,
  BTF_LOAD_ATTR,
  MAP_INFO,
  BTF_INFO,
  PROG_LOAD_ATTR,
  TEST_RUN_ATTR,
  PROG_INFO,
  ENABLE_STATS_ATTR,
];

/** Writes an integer field (u32 or u64, little-endian). */
export function put(
  view: DataView,
  field: AttrField,
  value: number | bigint,
): void {
  if (field.size === 4) {
    view.setUint32(field.offset, Number(value), true);
  } else if (field.size === 8) {
    view.setBigUint64(field.offset, BigInt(value), true);
  } else {
    throw new BpfmapError(
      `field ${field.cName} is ${field.size} bytes, not an integer: write it as bytes`,
    );
  }
}

/** Reads a u32 field. */
export function getU32(view: DataView, field: AttrField): number {
  return view.getUint32(field.offset, true);
}

/** Reads a u64 field. */
export function getU64(view: DataView, field: AttrField): bigint {
  return view.getBigUint64(field.offset, true);
}
