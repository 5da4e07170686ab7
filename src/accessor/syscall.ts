/**
 * The live backend: reads maps of the running kernel through bpf().
 *
 * @module
 */

import {
  BatchBuffers,
  btfGetFdById,
  btfGetInfo,
  mapCreate,
  type MapCreateAttr,
  mapDeleteElem,
  mapFreeze,
  mapGetFdById,
  mapGetInfo,
  mapGetNextId,
  mapGetNextKey,
  mapLookupElem,
  mapUpdateElem,
  objPin,
  OpenFlag,
  type RawMapInfo,
  readFdinfo,
} from "../sys/bpf.ts";
import {
  Errno,
  LOCAL_STORAGE_MAP_TYPES,
  MapType,
  mapTypeName,
} from "../sys/constants.ts";
import { possibleCpuCount } from "../sys/cpus.ts";
import { BpfError } from "../sys/errors.ts";
import type { OwnedFd } from "../sys/fd.ts";
import { MapTypeError } from "../errors.ts";
import type { Btf } from "../btf/btf.ts";
import { loadBtfById } from "../btf/load.ts";
import { recoverFullMapName } from "../btf/map_name.ts";
import { readArenaPagesLive } from "./arena.ts";
import { iterLocalStorageLive } from "./local_storage.ts";
import { batchEntries, valueStrideOf } from "./entry_batches.ts";
import { percpuStride, splitPercpu } from "./percpu.ts";
import type {
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
  EntryBatch,
  EntryBatchOptions,
  LocalStorageEntry,
  MapEntry,
  ReadProblem,
} from "./types.ts";

/** Options for {@linkcode BpfSyscallAccessor.iterBatches}. */
export interface IterBatchesOptions extends EntryBatchOptions {
  /**
   * `"batch"` (default) uses LOOKUP_BATCH and falls back when the map type
   * lacks it; `"next-key"` forces GET_NEXT_KEY + LOOKUP (kernels before 5.6).
   */
  mode?: "batch" | "next-key";
}

/** Map types whose contents are listed by key (LOOKUP_BATCH or GET_NEXT_KEY). */
export const KEYED_MAP_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.ARRAY,
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.LPM_TRIE,
  MapType.ARRAY_OF_MAPS,
  MapType.HASH_OF_MAPS,
  MapType.PROG_ARRAY,
  MapType.PERF_EVENT_ARRAY,
  MapType.CGROUP_ARRAY,
  MapType.STACK_TRACE,
  MapType.DEVMAP,
  MapType.DEVMAP_HASH,
  MapType.CPUMAP,
  MapType.SOCKMAP,
  MapType.SOCKHASH,
  MapType.XSKMAP,
  MapType.REUSEPORT_SOCKARRAY,
  MapType.STRUCT_OPS,
  MapType.CGROUP_STORAGE,
  MapType.PERCPU_CGROUP_STORAGE,
]);

const HASH_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.LRU_HASH,
]);
const PERCPU_HASH_TYPES: ReadonlySet<number> = new Set([
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

/** Builds a {@linkcode BpfMapInfo} from the kernel's info struct and the fd's fdinfo. */
export function mapInfoFromFd(
  fd: number,
  raw: RawMapInfo = mapGetInfo(fd),
): BpfMapInfo {
  let frozen = false;
  let memlock = 0n;
  try {
    const fdinfo = readFdinfo(fd);
    frozen = fdinfo.get("frozen") === "1";
    memlock = BigInt(fdinfo.get("memlock") ?? "0");
  } catch {
    // fdinfo is missing only without /proc; the bpf() facts still stand.
  }
  return {
    id: raw.id,
    name: raw.name,
    type: raw.type,
    keySize: raw.keySize,
    valueSize: raw.valueSize,
    maxEntries: raw.maxEntries,
    flags: raw.flags,
    btfId: raw.btfId,
    btfKeyTypeId: raw.btfKeyTypeId,
    btfValueTypeId: raw.btfValueTypeId,
    btfVmlinuxValueTypeId: raw.btfVmlinuxValueTypeId,
    mapExtra: raw.mapExtra,
    frozen,
    memlock,
  };
}

/**
 * Reads the running kernel's maps through the bpf() syscall. Every call
 * opens the map by id and closes it before returning (iterators close when
 * done or abandoned), so the accessor never keeps a map alive.
 *
 * Requires root or CAP_SYS_ADMIN, and `--allow-ffi --allow-read`.
 *
 * @example List maps
 * ```ts ignore
 * import { BpfSyscallAccessor } from "@bpfmap/bpfmap";
 * const accessor = new BpfSyscallAccessor();
 * for (const map of accessor.maps()) console.log(map.id, map.name);
 * ```
 */
export class BpfSyscallAccessor implements BpfMapAccessor {
  readonly #btfCache = new Map<number, Btf | null>();
  readonly #problems: ReadProblem[] = [];
  #possibleCpus: number | undefined;

  /** The running kernel's release (`uname -r`). */
  get kernelRelease(): string {
    return Deno.osRelease();
  }

  /** The running kernel's possible CPUs (`/sys/devices/system/cpu/possible`). */
  get possibleCpus(): number {
    return this.#possibleCpus ??= possibleCpuCount();
  }

  /** What reads so far had to skip. */
  problems(): readonly ReadProblem[] {
    return this.#problems;
  }

  /** Every map, in id order; maps freed mid-walk are skipped. */
  maps(): BpfMapInfo[] {
    const result: BpfMapInfo[] = [];
    for (let id = mapGetNextId(0); id !== null; id = mapGetNextId(id)) {
      const info = this.mapById(id);
      if (info) result.push(info);
    }
    return result;
  }

  /** The map with this id, or null when it does not exist (any more). */
  mapById(id: number): BpfMapInfo | null {
    let fd: OwnedFd;
    try {
      fd = mapGetFdById(id, OpenFlag.RDONLY);
    } catch (error) {
      if (error instanceof BpfError && error.errno === Errno.ENOENT) {
        return null;
      }
      throw error;
    }
    let info: BpfMapInfo;
    try {
      info = mapInfoFromFd(fd.fd);
    } finally {
      fd.close();
    }
    const fullName = this.#fullName(info);
    if (fullName !== undefined) info.fullName = fullName;
    return info;
  }

  /**
   * A 15-character kernel name may be a truncation: the map's BTF usually
   * holds the full source name (a VAR in the `.maps` DATASEC).
   */
  #fullName(info: BpfMapInfo): string | undefined {
    if (info.btfId === 0 || info.name.length !== 15) return undefined;
    let btf: Btf | null;
    try {
      btf = this.#cachedBtf(info.btfId);
    } catch {
      return undefined;
    }
    if (btf === null) return undefined;
    try {
      return recoverFullMapName(
        btf,
        info.name,
        info.btfKeyTypeId,
        info.btfValueTypeId,
        {
          mapType: info.type,
          maxEntries: info.maxEntries,
        },
      );
    } catch {
      return undefined;
    }
  }

  #cachedBtf(btfId: number): Btf | null {
    if (!this.#btfCache.has(btfId)) {
      try {
        this.#btfCache.set(btfId, loadBtfById(btfId));
      } catch (error) {
        if (error instanceof BpfError && error.errno === Errno.ENOENT) {
          this.#btfCache.set(btfId, null);
        } else {
          throw error;
        }
      }
    }
    return this.#btfCache.get(btfId) ?? null;
  }

  /** The first map (lowest id) whose name ends with `suffix`, or null. */
  findMap(suffix: string): BpfMapInfo | null {
    for (let id = mapGetNextId(0); id !== null; id = mapGetNextId(id)) {
      const info = this.mapById(id);
      if (
        info && (info.name.endsWith(suffix) || info.fullName?.endsWith(suffix))
      ) {
        return info;
      }
    }
    return null;
  }

  /** Opens `map` read-only; the caller owns (and must close) the fd. */
  open(map: BpfMapInfo, openFlags: number = OpenFlag.RDONLY): OwnedFd {
    return mapGetFdById(map.id, openFlags);
  }

  /** `len` bytes at `offset` of the single value of an ARRAY or STRUCT_OPS map. */
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null {
    if (map.type !== MapType.ARRAY && map.type !== MapType.STRUCT_OPS) {
      return null;
    }
    if (offset < 0 || len < 0 || offset + len > map.valueSize) {
      throw new RangeError(
        `Cannot read ${len} bytes at offset ${offset} of map "${map.name}" (id ${map.id}): its value is ${map.valueSize} bytes`,
      );
    }
    const value = this.#lookupIndex(map, 0, map.valueSize);
    return value === null ? null : value.slice(offset, offset + len);
  }

  /** The value at index `key` of an ARRAY map. */
  readArray(map: BpfMapInfo, key: number): Uint8Array | null {
    if (map.type !== MapType.ARRAY) return null;
    if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) return null;
    return this.#lookupIndex(map, key, map.valueSize);
  }

  /** Per-CPU values at index `key` of a PERCPU_ARRAY; CPUs beyond the kernel's are null. */
  readPercpuArray(
    map: BpfMapInfo,
    key: number,
    numCpus: number = this.possibleCpus,
  ): (Uint8Array | null)[] | null {
    if (map.type !== MapType.PERCPU_ARRAY) return null;
    if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) return null;
    const cpus = this.possibleCpus;
    const stride = percpuStride(map.valueSize);
    const all = this.#lookupIndex(map, key, stride * cpus);
    if (all === null) return null;
    return splitPercpu(all, map.valueSize, cpus, numCpus);
  }

  #lookupIndex(
    map: BpfMapInfo,
    index: number,
    size: number,
  ): Uint8Array | null {
    const key = new Uint8Array(new ArrayBuffer(4));
    new DataView(key.buffer).setUint32(0, index, true);
    const value = new Uint8Array(new ArrayBuffer(size));
    using fd = this.open(map);
    return mapLookupElem(fd.fd, key, value) ? value : null;
  }

  /**
   * Walks a map in LOOKUP_BATCH runs (HASH family, ARRAY, PERCPU_ARRAY, LPM
   * trie), reusing the same buffers for every batch: copy what you keep.
   * Falls back to GET_NEXT_KEY + LOOKUP for maps without batch support.
   *
   * @param map the map to walk
   * @param options the first batch size
   */
  *iterBatches(
    map: BpfMapInfo,
    options: IterBatchesOptions = {},
  ): Generator<EntryBatch, void, undefined> {
    const valueStride = valueStrideOf(map, this.possibleCpus);
    using fd = this.open(map);
    const initial = batchEntries(map, valueStride, options);
    if (options.mode === "next-key") {
      yield* this.#iterByNextKey(fd.fd, map, valueStride);
      return;
    }
    const buffers = new BatchBuffers(map.keySize, valueStride, initial);
    let first = true;
    for (;;) {
      const { count, errno } = buffers.next(fd.fd);
      if (errno === Errno.ENOSPC) {
        // A hash bucket larger than the space left: retry from the same cursor.
        buffers.resize(buffers.capacity * 2);
        continue;
      }
      if (
        first && count === 0 &&
        (errno === Errno.EINVAL || errno === Errno.ENOTSUPP ||
          errno === Errno.EOPNOTSUPP)
      ) {
        yield* this.#iterByNextKey(fd.fd, map, valueStride);
        return;
      }
      first = false;
      if (count > 0) {
        yield {
          count,
          keys: buffers.keys.subarray(0, count * map.keySize),
          values: buffers.values.subarray(0, count * valueStride),
          keySize: map.keySize,
          valueStride,
        };
      }
      if (errno === Errno.ENOENT) return;
      if (errno !== 0) {
        throw new BpfError(24, errno, {
          action: `map "${map.name}" id ${map.id}`,
        });
      }
    }
  }

  /** Every entry of a keyed map in LOOKUP_BATCH runs (see {@linkcode iterBatches}). */
  iterEntryBatches(
    map: BpfMapInfo,
    options: EntryBatchOptions = {},
  ): Iterable<EntryBatch> {
    if (!KEYED_MAP_TYPES.has(map.type)) {
      throw new MapTypeError(
        map,
        map.type,
        "a map whose entries are listed by key",
        {
          hint: `a ${mapTypeName(map.type)} map has its own reader`,
        },
      );
    }
    return this.iterBatches(map, options);
  }

  *#iterByNextKey(
    fd: number,
    map: BpfMapInfo,
    valueStride: number,
  ): Generator<EntryBatch, void, undefined> {
    // A key deleted under us makes GET_NEXT_KEY restart from the first bucket,
    // so a busy map could cycle forever: stop after max_entries + 1 keys.
    const limit = map.maxEntries + 1;
    let current: Uint8Array | null = null;
    const next = new Uint8Array(new ArrayBuffer(Math.max(map.keySize, 1)));
    const value = new Uint8Array(new ArrayBuffer(Math.max(valueStride, 1)));
    for (let seen = 0; mapGetNextKey(fd, current, next); seen++) {
      if (seen >= limit) {
        throw new Error(
          `Map "${map.name}" (id ${map.id}) changed during iteration: more than max_entries (${map.maxEntries}) keys were returned, so the walk stopped`,
        );
      }
      const key = next.slice();
      if (mapLookupElem(fd, key, value)) {
        yield {
          count: 1,
          keys: key,
          values: value,
          keySize: map.keySize,
          valueStride,
        };
      }
      current = key;
    }
  }

  /**
   * Every entry of a HASH or LRU_HASH map (batched, with a GET_NEXT_KEY
   * fallback). Each batch is copied once and entries are views into that
   * copy, so they stay valid after the walk moves on.
   */
  *iterHashMap(map: BpfMapInfo): Generator<MapEntry, void, undefined> {
    if (!HASH_TYPES.has(map.type)) {
      throw new MapTypeError(map, map.type, "a HASH or LRU_HASH map");
    }
    for (const batch of this.iterBatches(map)) {
      const keys = batch.keys.slice();
      const values = batch.values.slice();
      const keySize = batch.keySize;
      const stride = batch.valueStride;
      for (
        let i = 0, k = 0, v = 0;
        i < batch.count;
        i++, k += keySize, v += stride
      ) {
        yield {
          key: keys.subarray(k, k + keySize),
          value: values.subarray(v, v + stride),
        };
      }
    }
  }

  /** Every entry of a PERCPU_HASH or LRU_PERCPU_HASH map, one value per CPU. */
  *iterPercpuHashMap(
    map: BpfMapInfo,
    numCpus: number = this.possibleCpus,
  ): Generator<
    { key: Uint8Array; values: (Uint8Array | null)[] },
    void,
    undefined
  > {
    if (!PERCPU_HASH_TYPES.has(map.type)) {
      throw new MapTypeError(
        map,
        map.type,
        "a PERCPU_HASH or LRU_PERCPU_HASH map",
      );
    }
    const cpus = this.possibleCpus;
    for (const batch of this.iterBatches(map)) {
      for (let i = 0; i < batch.count; i++) {
        yield {
          key: batch.keys.slice(i * batch.keySize, (i + 1) * batch.keySize),
          values: splitPercpu(
            batch.values.subarray(
              i * batch.valueStride,
              (i + 1) * batch.valueStride,
            ),
            map.valueSize,
            cpus,
            numCpus,
          ),
        };
      }
    }
  }

  /**
   * Every element of a TASK/CGRP/SK/INODE storage map that can be reached
   * from user space. Storage cannot be enumerated by key, so bpfmap opens an
   * owner fd for each candidate and looks it up:
   * - TASK_STORAGE: every thread in /proc, through a pidfd (PIDFD_THREAD on
   *   6.9+; older kernels reach thread-group leaders only). `owner` is the tid.
   * - CGRP_STORAGE: every directory of the cgroup v2 mount. `owner` is the path within it.
   * - SK_STORAGE: every socket open in some process (via pidfd_getfd). `owner` is `pid/fd socket:[inode]`.
   * - INODE_STORAGE: every file open in some process. `owner` is the path.
   *
   * `key` is the 4-byte fd number used for the lookup: it meant something only
   * during that call.
   */
  iterTaskStorage(map: BpfMapInfo): Iterable<LocalStorageEntry> {
    if (!LOCAL_STORAGE_MAP_TYPES.has(map.type)) {
      throw new MapTypeError(
        map,
        map.type,
        "a task, inode, sk or cgroup storage map",
      );
    }
    return iterLocalStorageLive(map, () => this.open(map));
  }

  /**
   * The arena's pages that some process has mapped and present, read through
   * /proc without faulting any page in (a fault would allocate it).
   */
  readArenaPages(map: BpfMapInfo): ArenaPages {
    if (map.type !== MapType.ARENA) {
      throw new MapTypeError(map, map.type, "an ARENA map");
    }
    return readArenaPagesLive(map);
  }

  /** The raw bytes of the BTF object holding the map's key/value types, or null. */
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null {
    if (map.btfId === 0) return null;
    using fd = btfGetFdById(map.btfId);
    return btfGetInfo(fd.fd).bytes;
  }

  /**
   * The parsed BTF object holding the map's key/value types, or null when
   * the map has none. Module BTF is split on `base` (read from sysfs when
   * not given). Parsed objects are cached per BTF id for this accessor.
   */
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null {
    if (map.btfId === 0) return null;
    if (base !== undefined) return loadBtfById(map.btfId, base);
    return this.#cachedBtf(map.btfId);
  }

  // Writes: on the backend only, never on the read-only interface.

  /**
   * Creates a map; the returned fd owns it (the map lives while it is open).
   *
   * @example A hash map for a scope
   * ```ts ignore
   * using fd = BpfSyscallAccessor.createMap({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: "demo" });
   * ```
   */
  static createMap(attr: MapCreateAttr): OwnedFd {
    return mapCreate(attr);
  }

  /** Writes `value` at `key` (flags: UpdateFlag). */
  update(
    map: BpfMapInfo,
    key: Uint8Array,
    value: Uint8Array,
    flags = 0n,
  ): void {
    using fd = this.open(map, OpenFlag.READ_WRITE);
    mapUpdateElem(fd.fd, key, value, flags);
  }

  /** Deletes `key`; false when it was absent. */
  delete(map: BpfMapInfo, key: Uint8Array): boolean {
    using fd = this.open(map, OpenFlag.READ_WRITE);
    return mapDeleteElem(fd.fd, key);
  }

  /** Overwrites `bytes` at `offset` of an ARRAY map's single value (global data). */
  writeValue(map: BpfMapInfo, offset: number, bytes: Uint8Array): void {
    if (map.type !== MapType.ARRAY) {
      throw new MapTypeError(map, map.type, "an ARRAY map");
    }
    if (offset < 0 || offset + bytes.length > map.valueSize) {
      throw new RangeError(
        `Cannot write ${bytes.length} bytes at offset ${offset} of map "${map.name}": its value is ${map.valueSize} bytes`,
      );
    }
    const value = this.#lookupIndex(map, 0, map.valueSize);
    if (value === null) throw new Error(`Map "${map.name}" has no element 0`);
    value.set(bytes, offset);
    const key = new Uint8Array(4);
    this.update(map, key, value);
  }

  /** Freezes the map: user space can no longer write it. */
  freeze(map: BpfMapInfo): void {
    using fd = this.open(map, OpenFlag.READ_WRITE);
    mapFreeze(fd.fd);
  }

  /** Pins the map at a bpffs path. */
  pin(map: BpfMapInfo, path: string): void {
    using fd = this.open(map);
    objPin(fd.fd, path);
  }
}
