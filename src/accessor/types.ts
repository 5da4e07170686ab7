/**
 * The read-only interface every data source implements, and the map record it returns.
 *
 * @module
 */

import type { Btf } from "../btf/btf.ts";
import type { TypeDump, TypeReadOptions } from "./maptypes/mod.ts";

/** One BPF map, as every backend reports it. */
export interface BpfMapInfo {
  /** Kernel map id. */
  id: number;
  /** Kernel-visible name: at most 15 characters (`BPF_OBJ_NAME_LEN` - 1). */
  name: string;
  /** The untruncated source name, recovered from the map's BTF when known. */
  fullName?: string;
  /** `enum bpf_map_type` number (see `MapType`). */
  type: number;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes. */
  valueSize: number;
  /** Maximum entries (pages, for an arena). */
  maxEntries: number;
  /** `BPF_F_*` flags. */
  flags: number;
  /** BTF object id, 0 when the map has no BTF. */
  btfId: number;
  /** Key type id in the map's BTF. */
  btfKeyTypeId: number;
  /** Value type id in the map's BTF. */
  btfValueTypeId: number;
  /** Struct-ops value type id in vmlinux BTF. */
  btfVmlinuxValueTypeId: number;
  /** Type-specific extra (bloom filter hashes, arena address). */
  mapExtra: bigint;
  /** Whether user space can no longer write it (`BPF_MAP_FREEZE`). */
  frozen: boolean;
  /** Bytes charged to memlock, as the kernel reports them (0 when unknown). */
  memlock: bigint;
  /** Kernel virtual address of `struct bpf_map` (guest backend only). */
  kernelAddress?: bigint;
}

/** A key and its value, both as raw bytes. */
export interface MapEntry {
  /** Key bytes (`keySize` long). */
  key: Uint8Array;
  /** Value bytes (`valueSize` long). */
  value: Uint8Array;
}

/** A key and one value per possible CPU. */
export interface PercpuMapEntry {
  /** Key bytes. */
  key: Uint8Array;
  /** Value bytes per CPU, `valueSize` each, index = CPU number. */
  values: Uint8Array[];
}

/** One element of a task/inode/sk/cgroup local-storage map. */
export interface LocalStorageEntry {
  /**
   * Who owns the storage. Live backend: the thread id (task storage), the
   * cgroup path (cgrp storage), `pid:fd` (sk storage). Guest backend: the
   * owner's kernel address as `0x...`.
   */
  owner: string;
  /**
   * Key bytes. Live backend: the 4-byte key as the kernel saw it, i.e. an fd
   * number that was only valid during the lookup. Guest backend: the owner's
   * kernel virtual address (8 bytes, little-endian).
   */
  key: Uint8Array;
  /** Value bytes. */
  value: Uint8Array;
}

/** A page of an arena that could be read without side effects. */
export interface ArenaPage {
  /** Page index within the arena. */
  index: number;
  /** User-space address the owner sees the page at. */
  userAddress: bigint;
  /** The page's bytes. */
  bytes: Uint8Array;
}

/** What could be seen of an arena. */
export interface ArenaPages {
  /** Pages present and read. */
  pages: ArenaPage[];
  /** The arena's size in pages (`max_entries`). */
  totalPages: number;
  /** Plain statements of what could not be seen and why. */
  notes: string[];
}

/**
 * A run of entries of a keyed map, as one LOOKUP_BATCH call returns them:
 * keys back to back, values back to back. The views may be reused by the next
 * batch: copy what you keep.
 */
export interface EntryBatch {
  /** Number of entries in this batch. */
  count: number;
  /** `count * keySize` key bytes. */
  keys: Uint8Array;
  /** `count * valueStride` value bytes. */
  values: Uint8Array;
  /** Key size in bytes. */
  keySize: number;
  /**
   * Bytes per entry in `values`: `value_size`, or for per-CPU maps
   * `round_up(value_size, 8) * possibleCpus` (the kernel's own layout).
   */
  valueStride: number;
  /**
   * Per-entry read errors, when some entry's key was listed but its value
   * could not be read (e.g. a `perf_event_array` slot: the kernel answers
   * ENOTSUPP to a lookup). `errors[i]` is one line for entry `i` (whose value
   * bytes are then zero) or null; absent when every value was read.
   */
  errors?: readonly (string | null)[];
}

/** Options for {@linkcode BpfMapAccessor.iterEntryBatches}. */
export interface EntryBatchOptions {
  /** Entries to ask for per batch at first (may grow to fit a hash bucket). Default 4096. */
  batchSize?: number;
  /**
   * Upper bound on one batch's key + value bytes, so memory stays bounded
   * for large values whatever `batchSize` says. Default 4 MiB.
   */
  maxBatchBytes?: number;
}

/** Something a read had to skip, recorded instead of silently dropped. */
export interface ReadProblem {
  /** What was skipped. */
  what: "map" | "bucket" | "element" | "page" | "owner" | "program";
  /** The map it belongs to, when known. */
  mapId?: number;
  /** The kernel (guest) address involved, when there is one. */
  address?: bigint;
  /** One line: what was skipped and why. */
  message: string;
}

/**
 * One read-only view over BPF maps, whatever the source: the live kernel
 * (`BpfSyscallAccessor`) or a frozen guest's memory (`GuestMemMapAccessor`).
 * Writes live on a backend, never here.
 *
 * Every backend raises the same errors for the same mistakes (see
 * `src/errors.ts`): `MapTypeError` for a method given the wrong map type,
 * `MapArgumentError` for an index or buffer that does not fit the map,
 * `MapGoneError` when the map is freed mid-read, `MapUnreadableError` when it
 * exists but cannot be read.
 */
export interface BpfMapAccessor {
  /** The kernel release (`uname -r` of the kernel whose maps these are). */
  readonly kernelRelease: string;
  /** The kernel's possible-CPU count: the number of values a per-CPU map holds. */
  readonly possibleCpus: number;
  /** Every map, in id order. Maps that could not be read are left out and recorded in `problems()`. */
  maps(): BpfMapInfo[];
  /**
   * The map with this id; null when no map has it. Throws
   * `MapUnreadableError` when the map exists but its record cannot be read.
   */
  mapById(id: number): BpfMapInfo | null;
  /** The first map (lowest id) whose name ends with `suffix`, or null. */
  findMap(suffix: string): BpfMapInfo | null;
  /**
   * `len` bytes at `offset` of the single value of an ARRAY (global data) or
   * STRUCT_OPS map; null when the map has no element 0. MapTypeError for
   * other types, MapArgumentError when the range is not inside the value.
   */
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null;
  /**
   * The value at index `key` of an ARRAY map. MapTypeError for other types,
   * MapArgumentError when `key` is not an index below `max_entries`.
   */
  readArray(map: BpfMapInfo, key: number): Uint8Array | null;
  /**
   * Every entry of a keyed map (the hash and array families, per-CPU ones
   * included) in batches: the fast generic path dumps use.
   */
  iterEntryBatches(
    map: BpfMapInfo,
    options?: EntryBatchOptions,
  ): Iterable<EntryBatch>;
  /** Every entry of a HASH or LRU_HASH map. */
  iterHashMap(map: BpfMapInfo): Iterable<MapEntry>;
  /**
   * The value of every CPU `0..numCpus-1` (default: `possibleCpus`) at index
   * `key` of a PERCPU_ARRAY; CPUs the kernel does not have come back null.
   * MapTypeError for other types, MapArgumentError when `key` is out of
   * range or `numCpus` is not a CPU count (1 to 8192).
   */
  readPercpuArray(
    map: BpfMapInfo,
    key: number,
    numCpus?: number,
  ): (Uint8Array | null)[] | null;
  /**
   * Every entry of a PERCPU_HASH or LRU_PERCPU_HASH, `numCpus` (default:
   * `possibleCpus`) values each (null beyond the kernel's CPUs).
   */
  iterPercpuHashMap(
    map: BpfMapInfo,
    numCpus?: number,
  ): Iterable<{ key: Uint8Array; values: (Uint8Array | null)[] }>;
  /** Every element of a TASK/INODE/SK/CGRP storage map the backend can reach. */
  iterTaskStorage(map: BpfMapInfo): Iterable<LocalStorageEntry>;
  /** The arena's pages that can be read without allocating any. */
  readArenaPages(map: BpfMapInfo): ArenaPages;
  /** The raw BTF object the map's key/value types live in, or null when it has none. */
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null;
  /**
   * The parsed BTF the map's key/value types live in, or null when it has
   * none. `base` (vmlinux BTF) is needed for split (kernel module) BTF.
   */
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null;
  /**
   * The contents of a map whose type has its own reader (ring buffers,
   * queues and stacks, bloom filters, fd slots, stack traces, maps of maps,
   * struct_ops), tagged by reader; an `unreadable` result for a type bpfmap
   * does not know. Null for the types read through the methods above (hash
   * and array families, local storage, arena), and for types this backend
   * has no reader for yet.
   */
  readTypeDump(map: BpfMapInfo, options?: TypeReadOptions): TypeDump | null;
  /**
   * What reads so far had to skip (maps, buckets, elements, pages), oldest
   * first. Callers that must not lose data check it after reading.
   */
  problems(): readonly ReadProblem[];
}
