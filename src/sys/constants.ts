/**
 * Kernel constants from `include/uapi/linux/bpf.h`.
 *
 * @module
 */

/** bpf() command numbers (`enum bpf_cmd`). */
export const BpfCommand = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  MAP_GET_NEXT_ID: 12,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  BTF_LOAD: 18,
  BTF_GET_FD_BY_ID: 19,
  MAP_LOOKUP_AND_DELETE_ELEM: 21,
  MAP_FREEZE: 22,
  BTF_GET_NEXT_ID: 23,
  MAP_LOOKUP_BATCH: 24,
  MAP_UPDATE_BATCH: 26,
} as const;
/** A bpf() command number. */
export type BpfCommand = typeof BpfCommand[keyof typeof BpfCommand];

const COMMAND_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(BpfCommand).map(([name, value]) => [value, `BPF_${name}`]),
);

/** The kernel's name for a command number, e.g. `BPF_MAP_LOOKUP_ELEM`. */
export function commandName(command: number): string {
  return COMMAND_NAMES[command] ?? `bpf command ${command}`;
}

/** Map types (`enum bpf_map_type`). Unknown future numbers are shown numerically. */
export const MapType = {
  UNSPEC: 0,
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  STACK_TRACE: 7,
  CGROUP_ARRAY: 8,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  DEVMAP: 14,
  SOCKMAP: 15,
  CPUMAP: 16,
  XSKMAP: 17,
  SOCKHASH: 18,
  CGROUP_STORAGE: 19,
  REUSEPORT_SOCKARRAY: 20,
  PERCPU_CGROUP_STORAGE: 21,
  QUEUE: 22,
  STACK: 23,
  SK_STORAGE: 24,
  DEVMAP_HASH: 25,
  STRUCT_OPS: 26,
  RINGBUF: 27,
  INODE_STORAGE: 28,
  TASK_STORAGE: 29,
  BLOOM_FILTER: 30,
  USER_RINGBUF: 31,
  CGRP_STORAGE: 32,
  ARENA: 33,
} as const;
/** A map type number. */
export type MapType = typeof MapType[keyof typeof MapType];

/** bpftool's spelling of each map type (`libbpf_bpf_map_type_str`). */
const MAP_TYPE_NAMES: Record<number, string> = {
  0: "unspec",
  1: "hash",
  2: "array",
  3: "prog_array",
  4: "perf_event_array",
  5: "percpu_hash",
  6: "percpu_array",
  7: "stack_trace",
  8: "cgroup_array",
  9: "lru_hash",
  10: "lru_percpu_hash",
  11: "lpm_trie",
  12: "array_of_maps",
  13: "hash_of_maps",
  14: "devmap",
  15: "sockmap",
  16: "cpumap",
  17: "xskmap",
  18: "sockhash",
  19: "cgroup_storage",
  20: "reuseport_sockarray",
  21: "percpu_cgroup_storage",
  22: "queue",
  23: "stack",
  24: "sk_storage",
  25: "devmap_hash",
  26: "struct_ops",
  27: "ringbuf",
  28: "inode_storage",
  29: "task_storage",
  30: "bloom_filter",
  31: "user_ringbuf",
  32: "cgrp_storage",
  33: "arena",
};

/** bpftool's name for a map type; unknown numbers come back as the number. */
export function mapTypeName(type: number): string | number {
  return MAP_TYPE_NAMES[type] ?? type;
}

/** Parses a map type name (`hash`, `percpu_array`, ...) or number. */
export function parseMapType(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text);
  const wanted = text.toLowerCase();
  for (const [number, name] of Object.entries(MAP_TYPE_NAMES)) {
    if (name === wanted) return Number(number);
  }
  return undefined;
}

/** Map types whose values hold one slot per possible CPU. */
export const PERCPU_MAP_TYPES: ReadonlySet<number> = new Set([
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/** Local-storage map types, keyed by an owner fd from user space. */
export const LOCAL_STORAGE_MAP_TYPES: ReadonlySet<number> = new Set([
  MapType.SK_STORAGE,
  MapType.INODE_STORAGE,
  MapType.TASK_STORAGE,
  MapType.CGRP_STORAGE,
]);

/** Map flags (`BPF_F_*` at map creation). */
export const MapFlag = {
  NO_PREALLOC: 1 << 0,
  NO_COMMON_LRU: 1 << 1,
  NUMA_NODE: 1 << 2,
  RDONLY: 1 << 3,
  WRONLY: 1 << 4,
  STACK_BUILD_ID: 1 << 5,
  ZERO_SEED: 1 << 6,
  RDONLY_PROG: 1 << 7,
  WRONLY_PROG: 1 << 8,
  CLONE: 1 << 9,
  MMAPABLE: 1 << 10,
  PRESERVE_ELEMS: 1 << 11,
  INNER_MAP: 1 << 12,
  LINK: 1 << 13,
  PATH_FD: 1 << 14,
  VTYPE_BTF_OBJ_FD: 1 << 15,
  TOKEN_FD: 1 << 16,
  SEGV_ON_FAULT: 1 << 17,
  NO_USER_CONV: 1 << 18,
} as const;

/** Update flags for MAP_UPDATE_ELEM. */
export const UpdateFlag = { ANY: 0, NOEXIST: 1, EXIST: 2, LOCK: 4 } as const;

/** Kernel-visible object names hold at most 15 characters plus NUL. */
export const BPF_OBJ_NAME_LEN = 16;

/** The kernel-internal ENOTSUPP, shown by libc as "Unknown error 524". */
export const ENOTSUPP = 524;

/** errno values bpfmap reacts to (every errno has a name and text in `errno.ts`). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOSPC: 28,
  E2BIG: 7,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  ENOTSUPP: 524,
} as const;

export { errnoName } from "./errno.ts";
