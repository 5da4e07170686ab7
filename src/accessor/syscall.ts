/**
 * The live backend: reads maps of the running kernel through bpf().
 *
 * Two rules shape every method here:
 *
 * - The caller's {@linkcode BpfMapInfo} names a map by id and nothing more.
 *   Each call opens the id and takes type and sizes from the kernel's own
 *   record of the opened fd, so a stale or edited record can never size a
 *   buffer the kernel writes into; caller buffers are checked against those
 *   real sizes before anything is sent.
 * - No fd outlives a call, and no iterator holds one while suspended: walks
 *   reopen the map by id for each batch, so an iterator dropped mid-walk
 *   costs memory only until it is collected, never a descriptor.
 *
 * @module
 */

import { ByteKeySet } from "./key_set.ts";
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
  mapLookupElemErrno,
  mapUpdateElem,
  mapUpdateStorageElem,
  objPin,
  OpenFlag,
  type RawMapInfo,
  readFdinfo,
} from "../sys/bpf.ts";
import {
  BpfCommand,
  Errno,
  LOCAL_STORAGE_MAP_TYPES,
  MapFlag,
  MapType,
  mapTypeName,
  PERCPU_MAP_TYPES,
  UpdateFlag,
} from "../sys/constants.ts";
import { possibleCpuCount } from "../sys/cpus.ts";
import { BpfError } from "../sys/errors.ts";
import type { OwnedFd } from "../sys/fd.ts";
import {
  MapArgumentError,
  MapChangedError,
  MapGoneError,
  type MapIdentity,
  MapReadOnlyError,
} from "../errors.ts";
import {
  type BpfMapFieldWriter,
  type FieldValue,
  fieldWriteKey,
  type FieldWriteResult,
  prepareFieldWrite,
  type WriteFieldOptions,
} from "./field_write.ts";
import type { Btf } from "../btf/btf.ts";
import { loadBtfById } from "../btf/load.ts";
import { recoverFullMapName } from "../btf/map_name.ts";
import { readArenaPagesLive } from "./arena.ts";
import {
  checkIndex,
  checkValueRange,
  expectMapType,
  MAX_CPUS,
} from "./checks.ts";
import {
  liveReaderFor,
  readMapTypeLive,
  type TypeDump,
  type TypeReadOptions,
} from "./maptypes/mod.ts";
import { iterLocalStorageLive } from "./local_storage.ts";
import {
  batchEntries,
  DEFAULT_BATCH_BYTES,
  validateBatchOptions,
  valueStrideOf,
} from "./entry_batches.ts";
import { percpuStride, splitPercpu, validateCpuCount } from "./percpu.ts";
import { liveProgramById, livePrograms } from "./programs_live.ts";
import type {
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
  BpfProgramInfo,
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
/**
 * Types whose walk can never return a key twice: the htab batch walks by
 * bucket, and array indexes cannot be deleted. Every other type's walk is
 * GET_NEXT_KEY (in the kernel's generic batch or ours), which restarts from
 * the first key when the cursor key is deleted, so it is deduplicated.
 */
const REPEAT_FREE_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.PERCPU_HASH,
  MapType.LRU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.ARRAY,
  MapType.PERCPU_ARRAY,
]);
/** fd arrays whose slots the kernel will not show user space (ENOTSUPP per lookup). */
const HIDDEN_SLOT_TYPES: ReadonlySet<number> = new Set([
  MapType.PERF_EVENT_ARRAY,
  MapType.CGROUP_ARRAY,
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

/** A map opened for one call, with the kernel's record of what the fd is. */
class OpenedMap implements Disposable {
  readonly fd: OwnedFd;
  readonly real: RawMapInfo;

  constructor(fd: OwnedFd, real: RawMapInfo) {
    this.fd = fd;
    this.real = real;
  }

  [Symbol.dispose](): void {
    this.fd.close();
  }
}

function sameShape(a: RawMapInfo, b: RawMapInfo): boolean {
  return a.type === b.type && a.keySize === b.keySize &&
    a.valueSize === b.valueSize && a.maxEntries === b.maxEntries;
}

function identity(real: RawMapInfo): MapIdentity {
  return { id: real.id, name: real.name };
}

function hexKey(key: Uint8Array): string {
  let text = "";
  for (const byte of key) text += byte.toString(16).padStart(2, "0");
  return text === "" ? "(none)" : `0x${text}`;
}

/** One line for an element whose lookup failed: the walk records it and goes on. */
function elementError(
  real: RawMapInfo,
  key: Uint8Array,
  errno: number,
): string {
  const hint = errno === Errno.ENOTSUPP && HIDDEN_SLOT_TYPES.has(real.type)
    ? `the kernel does not show user space what a ${
      mapTypeName(real.type)
    } slot holds`
    : undefined;
  return new BpfError(BpfCommand.MAP_LOOKUP_ELEM, errno, {
    action: `map "${real.name}" (id ${real.id}), key ${hexKey(key)}`,
    ...(hint ? { hint } : {}),
  }).message;
}

/**
 * The keys a GET_NEXT_KEY-based walk has listed, so that a walk restarted by
 * a deletion lists each key once. Holds at most `max_entries + 1` keys: more
 * distinct keys than the map can hold means it is refilled faster than it is
 * walked, and the walk stops with MapChangedError.
 */
class KeyDedupe {
  readonly #seen: ByteKeySet;
  readonly #limit: number;
  /** Keys returned again (each one a sign the walk restarted). */
  duplicates = 0;

  constructor(maxEntries: number, keySize: number) {
    this.#limit = maxEntries + 1;
    this.#seen = new ByteKeySet(keySize, Math.min(maxEntries, 1 << 20));
  }

  has(key: Uint8Array): boolean {
    return this.#seen.has(key);
  }

  /** Records `key`; false (and a counted duplicate) when it was listed before. */
  add(key: Uint8Array, map: MapIdentity): boolean {
    if (this.#seen.has(key)) {
      if (++this.duplicates > this.#limit) {
        throw new MapChangedError(
          map,
          `GET_NEXT_KEY returned ${this.duplicates} keys it had already returned (more than max_entries + 1), so keys are deleted under the walk faster than it advances`,
          { hint: "read it again when it is quieter, or stop its writers" },
        );
      }
      return false;
    }
    if (this.#seen.size >= this.#limit) {
      throw new MapChangedError(
        map,
        `more than max_entries + 1 (${this.#limit}) distinct keys were listed, so entries are replaced faster than the walk advances`,
        { hint: "read it again when it is quieter, or stop its writers" },
      );
    }
    this.#seen.add(key);
    return true;
  }
}

/** Lookup errnos that condemn the whole walk rather than one element. */
const MAP_WIDE_ERRNOS: ReadonlySet<number> = new Set([
  Errno.EPERM,
  Errno.EACCES,
  Errno.EBADF,
  Errno.EFAULT,
  Errno.ENOMEM,
]);

/** The largest per-CPU count a caller may ask for: no kernel has more possible CPUs (CONFIG_NR_CPUS). */

/**
 * Reads the running kernel's maps through the bpf() syscall. Every call
 * opens the map by id and closes it before returning; iterators reopen it
 * for each batch and hold no fd between yields, so the accessor never keeps
 * a map alive (or a descriptor open).
 *
 * Requires root or CAP_SYS_ADMIN, and `--allow-ffi --allow-read`.
 *
 * @example List maps
 * ```ts
 * import { BpfSyscallAccessor } from "@bpfmap/bpfmap";
 * const accessor = new BpfSyscallAccessor();
 * for (const map of accessor.maps()) console.log(map.id, map.name);
 * ```
 */
export class BpfSyscallAccessor implements BpfMapAccessor, BpfMapFieldWriter {
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

  /**
   * The map read through its type's own reader (see `src/accessor/maptypes`).
   * The readers size their buffers from the record they are given, so they
   * get the kernel's record of the map, never the caller's.
   */
  readTypeDump(
    map: BpfMapInfo,
    options: TypeReadOptions = {},
  ): TypeDump | null {
    // Keyed and unknown types need no kernel buffer: answered as given.
    const reader = liveReaderFor(map.type);
    if (reader === null || reader === "keyed") {
      return readMapTypeLive(map, { accessor: this, ...options });
    }
    let real: BpfMapInfo;
    {
      using fd = this.open(map);
      real = mapInfoFromFd(fd.fd);
    }
    if (map.fullName !== undefined && real.name === map.name) {
      real.fullName = map.fullName;
    }
    return readMapTypeLive(real, { accessor: this, ...options });
  }

  /** What reads so far had to skip or could only give a torn view of. */
  problems(): readonly ReadProblem[] {
    return this.#problems;
  }

  // --- programs (issue 11 item 3): the work is in programs_live.ts ---

  /** Every program, in id order; programs freed mid-walk are skipped. */
  programs(): BpfProgramInfo[] {
    return livePrograms();
  }

  /** The program with this id, or null when it does not exist (any more). */
  programById(id: number): BpfProgramInfo | null {
    return liveProgramById(id);
  }

  // --- end programs ---

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
    if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
      throw new MapArgumentError(
        null,
        "id",
        `${id} is not a map id (an integer from 0 to 2147483647)`,
      );
    }
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

  /**
   * Opens `map` by id (read-only by default); the caller owns (and must
   * close) the fd.
   *
   * @throws {MapGoneError} when no map has that id any more
   */
  open(map: BpfMapInfo, openFlags: number = OpenFlag.RDONLY): OwnedFd {
    try {
      return mapGetFdById(map.id, openFlags);
    } catch (error) {
      if (error instanceof BpfError && error.errno === Errno.ENOENT) {
        throw new MapGoneError(map, {
          cause: error,
          hint: "list the maps again; a freed map's id is not reused",
        });
      }
      throw error;
    }
  }

  /** Opens `map` and reads the kernel's record of it: the only source of sizes. */
  #openReal(map: BpfMapInfo, openFlags: number = OpenFlag.RDONLY): OpenedMap {
    const fd = this.open(map, openFlags);
    try {
      return new OpenedMap(fd, mapGetInfo(fd.fd));
    } catch (error) {
      fd.close();
      throw error;
    }
  }

  /** Reopens a map mid-walk, refusing a different map behind the same id. */
  #reopen(map: BpfMapInfo, first: RawMapInfo): OpenedMap {
    const opened = this.#openReal(map);
    if (!sameShape(opened.real, first)) {
      opened.fd.close();
      throw new MapChangedError(
        identity(first),
        `its id now opens a map of type ${opened.real.type} with key ${opened.real.keySize}, value ${opened.real.valueSize} and ${opened.real.maxEntries} entries`,
      );
    }
    return opened;
  }

  /**
   * `len` bytes at `offset` of the single value of an ARRAY (global data)
   * or STRUCT_OPS map.
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when the range is not inside the value
   */
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null {
    using opened = this.#openReal(map);
    const real = opened.real;
    expectMapType(
      real,
      new Set([MapType.ARRAY, MapType.STRUCT_OPS]),
      "an ARRAY or STRUCT_OPS map (a map with one value)",
    );
    checkValueRange(real, "offset", offset, len);
    const value = new Uint8Array(new ArrayBuffer(real.valueSize));
    if (!mapLookupElem(opened.fd.fd, indexKey(0), value)) return null;
    return value.slice(offset, offset + len);
  }

  /**
   * The value at index `key` of an ARRAY map.
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when `key` is not an index of the map
   */
  readArray(map: BpfMapInfo, key: number): Uint8Array | null {
    using opened = this.#openReal(map);
    const real = opened.real;
    expectMapType(real, new Set([MapType.ARRAY]), "an ARRAY map");
    checkIndex(real, key);
    const value = new Uint8Array(new ArrayBuffer(real.valueSize));
    return mapLookupElem(opened.fd.fd, indexKey(key), value) ? value : null;
  }

  /**
   * Per-CPU values at index `key` of a PERCPU_ARRAY; CPUs beyond the
   * kernel's are null.
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when `key` is not an index or `numCpus` is not a CPU count
   */
  readPercpuArray(
    map: BpfMapInfo,
    key: number,
    numCpus: number = this.possibleCpus,
  ): (Uint8Array | null)[] | null {
    validateCpuCount(map, numCpus, Math.max(MAX_CPUS, this.possibleCpus));
    using opened = this.#openReal(map);
    const real = opened.real;
    expectMapType(
      real,
      new Set([MapType.PERCPU_ARRAY]),
      "a PERCPU_ARRAY map",
    );
    checkIndex(real, key);
    const cpus = this.possibleCpus;
    const all = new Uint8Array(
      new ArrayBuffer(percpuStride(real.valueSize) * cpus),
    );
    if (!mapLookupElem(opened.fd.fd, indexKey(key), all)) return null;
    return splitPercpu(all, real.valueSize, cpus, numCpus);
  }

  /**
   * Walks a keyed map in LOOKUP_BATCH runs (HASH family, ARRAY,
   * PERCPU_ARRAY, LPM trie), reusing the same buffers for every batch: copy
   * what you keep. Falls back to GET_NEXT_KEY + LOOKUP for maps without
   * batch support; there an element whose lookup fails (a perf_event_array
   * slot) is listed with its error in `errors`, and the walk goes on.
   *
   * The map is reopened by id for each batch, so a suspended or abandoned
   * iterator holds no fd; a map freed mid-walk ends it with MapGoneError.
   *
   * @param map the map to walk
   * @param options batch size, byte bound and mode
   * @throws {MapArgumentError} for a batch size or byte bound out of range
   */
  iterBatches(
    map: BpfMapInfo,
    options: IterBatchesOptions = {},
  ): Generator<EntryBatch, void, undefined> {
    validateBatchOptions(map, options);
    if (
      options.mode !== undefined && options.mode !== "batch" &&
      options.mode !== "next-key"
    ) {
      throw new MapArgumentError(
        map,
        "mode",
        `is "${options.mode}"; it must be "batch" or "next-key"`,
      );
    }
    const real = this.#realInfo(map);
    return this.#walk(map, real, options);
  }

  /**
   * The kernel's own record of `map` (opened by id and closed again), so
   * buffers are sized from the real map, never the caller's record; with
   * `types`, MapTypeError unless the map is one of them.
   */
  #realInfo(
    map: BpfMapInfo,
    types?: ReadonlySet<number>,
    expected = "",
  ): RawMapInfo {
    let real: RawMapInfo;
    {
      using opened = this.#openReal(map);
      real = opened.real;
    }
    if (types) expectMapType(real, types, expected);
    return real;
  }

  *#walk(
    map: BpfMapInfo,
    real: RawMapInfo,
    options: IterBatchesOptions,
  ): Generator<EntryBatch, void, undefined> {
    const valueStride = valueStrideOf(real, this.possibleCpus);
    const capacity = batchEntries(real, valueStride, options);
    const dedupe = REPEAT_FREE_TYPES.has(real.type)
      ? null
      : new KeyDedupe(real.maxEntries, real.keySize);
    if (options.mode === "next-key") {
      yield* this.#walkByNextKey(
        map,
        real,
        valueStride,
        capacity,
        null,
        dedupe,
      );
      return;
    }
    const perEntry = Math.max(1, real.keySize + valueStride);
    const byteBound = options.maxBatchBytes ?? DEFAULT_BATCH_BYTES;
    const maxCapacity = Math.max(
      capacity,
      Math.min(Math.floor(byteBound / perEntry), Math.max(real.maxEntries, 1)),
    );
    const buffers = new BatchBuffers(real.keySize, valueStride, capacity);
    let first = true;
    let interrupted = 0;
    let lastKey: Uint8Array | null = null;
    let recentKeys: Uint8Array[] = [];
    for (;;) {
      let result: { count: number; errno: number };
      {
        using opened = this.#reopen(map, real);
        result = buffers.next(opened.fd.fd);
      }
      const { count, errno } = result;
      if (errno === Errno.ENOSPC && count === 0) {
        // A hash bucket larger than the space left: retry from the same
        // cursor with room for it, within the caller's byte bound.
        if (buffers.capacity >= maxCapacity) {
          throw new MapArgumentError(
            identity(real),
            "maxBatchBytes",
            `(${byteBound} bytes, ${maxCapacity} entries of ${perEntry} bytes) cannot hold one hash bucket of the map`,
            { hint: "raise maxBatchBytes" },
          );
        }
        buffers.resize(Math.min(buffers.capacity * 2, maxCapacity));
        continue;
      }
      if (
        first && count === 0 && errno !== 0 && errno !== Errno.ENOENT &&
        errno !== Errno.EINTR && !REPEAT_FREE_TYPES.has(real.type)
      ) {
        // No LOOKUP_BATCH for this type (ENOTSUPP, EINVAL), or an element
        // the kernel's generic batch could not copy: walk key by key, where
        // one element's error is recorded instead of ending the walk.
        yield* this.#walkByNextKey(
          map,
          real,
          valueStride,
          capacity,
          null,
          dedupe,
        );
        return;
      }
      if (errno === Errno.EINTR) {
        // The kernel's generic walk lost an element three times in a row
        // (deleted between its next-key and lookup); go on from the cursor.
        if (++interrupted > 16) {
          throw new MapChangedError(
            identity(real),
            "LOOKUP_BATCH was interrupted 16 times by elements deleted under it",
          );
        }
        if (count === 0) continue;
      }
      first = false;
      let kept = count;
      let restarted = false;
      if (count > 0) {
        lastKey = buffers.keys.slice(
          (count - 1) * real.keySize,
          count * real.keySize,
        );
      }
      if (count > 0 && dedupe !== null) {
        const before = dedupe.duplicates;
        const latest = lastKeys(buffers.keys, count, real.keySize);
        kept = this.#dropRepeats(real, buffers, count, valueStride, dedupe);
        // The kernel's generic batch restarted from the first key: its
        // cursor (our last key) was deleted. Finish key by key, resuming
        // after the newest earlier key that still exists.
        restarted = dedupe.duplicates > before && recentKeys.length > 0;
        if (!restarted) recentKeys = latest;
      }
      if (kept > 0) {
        yield {
          count: kept,
          keys: buffers.keys.subarray(0, kept * real.keySize),
          values: buffers.values.subarray(0, kept * valueStride),
          keySize: real.keySize,
          valueStride,
        };
      }
      if (restarted) {
        yield* this.#walkByNextKey(
          map,
          real,
          valueStride,
          capacity,
          recentKeys[recentKeys.length - 1]!,
          dedupe,
          recentKeys,
        );
        return;
      }
      if (errno === Errno.ENOENT) return;
      if (errno !== 0 && errno !== Errno.EINTR) {
        if (!REPEAT_FREE_TYPES.has(real.type) && lastKey !== null) {
          // The generic batch walks by key: carry on key by key after the
          // last key it gave, recording the element it stumbled on.
          yield* this.#walkByNextKey(
            map,
            real,
            valueStride,
            capacity,
            lastKey,
            dedupe,
          );
          return;
        }
        throw new BpfError(BpfCommand.MAP_LOOKUP_BATCH, errno, {
          action: `map "${real.name}" (id ${real.id})`,
        });
      }
    }
  }

  /** Compacts a batch to the keys not listed before; returns how many remain. */
  #dropRepeats(
    real: RawMapInfo,
    buffers: BatchBuffers,
    count: number,
    valueStride: number,
    dedupe: KeyDedupe,
  ): number {
    const keySize = real.keySize;
    let kept = 0;
    const before = dedupe.duplicates;
    const who = identity(real);
    for (let i = 0; i < count; i++) {
      const key = buffers.keys.subarray(i * keySize, (i + 1) * keySize);
      if (!dedupe.add(key, who)) continue;
      if (kept !== i) {
        buffers.keys.copyWithin(kept * keySize, i * keySize, (i + 1) * keySize);
        buffers.values.copyWithin(
          kept * valueStride,
          i * valueStride,
          (i + 1) * valueStride,
        );
      }
      kept++;
    }
    if (before === 0 && dedupe.duplicates > 0) this.#tornWalk(real);
    return kept;
  }

  #tornWalk(real: RawMapInfo): void {
    this.#problems.push({
      what: "element",
      mapId: real.id,
      message: new MapChangedError(
        identity(real),
        "a key was deleted under the GET_NEXT_KEY cursor, so the walk restarted from the first key",
        {
          hint:
            "each key is listed once, but entries added, deleted or updated during the walk may be missing or stale (the view may be torn)",
        },
      ).message,
    });
  }

  /**
   * GET_NEXT_KEY + LOOKUP_ELEM in chunks of `capacity` entries, each chunk
   * under its own fd. A deleted cursor key makes the kernel restart from the
   * first key: the walk then resumes from the newest earlier key that still
   * leads somewhere new, and lists every key once whatever happens.
   */
  *#walkByNextKey(
    map: BpfMapInfo,
    real: RawMapInfo,
    valueStride: number,
    capacity: number,
    startAfter: Uint8Array | null,
    dedupe: KeyDedupe | null,
    recentSeed: readonly Uint8Array[] = [],
  ): Generator<EntryBatch, void, undefined> {
    const keySize = real.keySize;
    const who = identity(real);
    const seen = dedupe ?? new KeyDedupe(real.maxEntries, real.keySize);
    const keys = new Uint8Array(
      new ArrayBuffer(Math.max(1, capacity * keySize)),
    );
    const values = new Uint8Array(
      new ArrayBuffer(Math.max(1, capacity * valueStride)),
    );
    const next = new Uint8Array(new ArrayBuffer(Math.max(1, keySize)));
    let current = startAfter;
    // The last keys that existed when looked up: where to resume from when
    // the cursor key is deleted.
    const recent: Uint8Array[] = recentSeed.length > 0
      ? [...recentSeed]
      : startAfter
      ? [startAfter]
      : [];
    let done = false;
    let restarting = false;
    while (!done) {
      let count = 0;
      let errors: (string | null)[] | null = null;
      {
        using opened = this.#reopen(map, real);
        const fd = opened.fd.fd;
        values.fill(0);
        while (count < capacity) {
          if (!mapGetNextKey(fd, current, next)) {
            done = true;
            break;
          }
          if (!seen.add(next, who)) {
            if (seen.duplicates === 1) this.#tornWalk(real);
            const resumed = restarting
              ? "restart"
              : resumeAfterRestart(fd, recent, current, next, seen);
            if (resumed === "end") {
              done = true;
              break;
            }
            if (resumed === "restart") {
              // Walk on through keys already listed until new ones appear.
              restarting = true;
              current = next.slice();
              continue;
            }
            seen.add(next, who);
          }
          restarting = false;
          const key = keys.subarray(count * keySize, (count + 1) * keySize);
          key.set(next.subarray(0, keySize));
          const value = values.subarray(
            count * valueStride,
            (count + 1) * valueStride,
          );
          const errno = mapLookupElemErrno(fd, key, value);
          current = key.slice();
          if (errno === Errno.ENOENT) continue; // deleted since, or an empty fd slot
          recent.push(current);
          if (recent.length > 8) recent.shift();
          if (MAP_WIDE_ERRNOS.has(errno)) {
            // About the map or this process, not the element: every other
            // element would fail the same way.
            throw new BpfError(BpfCommand.MAP_LOOKUP_ELEM, errno, {
              action: `map "${real.name}" (id ${real.id}), key ${hexKey(key)}`,
            });
          }
          if (errno !== 0) {
            value.fill(0);
            errors ??= new Array<string | null>(count).fill(null);
            errors.push(elementError(real, key, errno));
          } else {
            errors?.push(null);
          }
          count++;
        }
      }
      if (count > 0) {
        yield {
          count,
          keys: keys.subarray(0, count * keySize),
          values: values.subarray(0, count * valueStride),
          keySize,
          valueStride,
          ...(errors ? { errors } : {}),
        };
      }
    }
  }

  /** Every entry of a keyed map in LOOKUP_BATCH runs (see {@linkcode iterBatches}). */
  iterEntryBatches(
    map: BpfMapInfo,
    options: EntryBatchOptions = {},
  ): Iterable<EntryBatch> {
    validateBatchOptions(map, options);
    const real = this.#realInfo(
      map,
      KEYED_MAP_TYPES,
      "a map whose entries are listed by key",
    );
    return this.#walk(map, real, options);
  }

  /**
   * Every entry of a HASH or LRU_HASH map (batched, with a GET_NEXT_KEY
   * fallback). Each batch is copied once and entries are views into that
   * copy, so they stay valid after the walk moves on.
   *
   * @throws {MapTypeError} for other map types
   */
  iterHashMap(map: BpfMapInfo): Generator<MapEntry, void, undefined> {
    const real = this.#realInfo(map, HASH_TYPES, "a HASH or LRU_HASH map");
    return this.#hashEntries(map, real);
  }

  *#hashEntries(
    map: BpfMapInfo,
    real: RawMapInfo,
  ): Generator<MapEntry, void, undefined> {
    for (const batch of this.#walk(map, real, {})) {
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

  /**
   * Every entry of a PERCPU_HASH or LRU_PERCPU_HASH map, one value per CPU.
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when `numCpus` is not a CPU count
   */
  iterPercpuHashMap(
    map: BpfMapInfo,
    numCpus: number = this.possibleCpus,
  ): Generator<
    { key: Uint8Array; values: (Uint8Array | null)[] },
    void,
    undefined
  > {
    validateCpuCount(map, numCpus, Math.max(MAX_CPUS, this.possibleCpus));
    const real = this.#realInfo(
      map,
      PERCPU_HASH_TYPES,
      "a PERCPU_HASH or LRU_PERCPU_HASH map",
    );
    return this.#percpuEntries(map, real, numCpus);
  }

  *#percpuEntries(
    map: BpfMapInfo,
    real: RawMapInfo,
    numCpus: number,
  ): Generator<
    { key: Uint8Array; values: (Uint8Array | null)[] },
    void,
    undefined
  > {
    const cpus = this.possibleCpus;
    for (const batch of this.#walk(map, real, {})) {
      for (let i = 0; i < batch.count; i++) {
        yield {
          key: batch.keys.slice(i * batch.keySize, (i + 1) * batch.keySize),
          values: splitPercpu(
            batch.values.subarray(
              i * batch.valueStride,
              (i + 1) * batch.valueStride,
            ),
            real.valueSize,
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
   * during that call. Like every walk here, it holds no fd between yields.
   *
   * @throws {MapTypeError} for other map types
   */
  iterTaskStorage(map: BpfMapInfo): Iterable<LocalStorageEntry> {
    const real = this.#realInfo(
      map,
      LOCAL_STORAGE_MAP_TYPES,
      "a task, inode, sk or cgroup storage map",
    );
    return iterLocalStorageLive(real, () => this.#reopen(map, real).fd);
  }

  /**
   * The arena's pages that some process has mapped and present, read through
   * /proc without faulting any page in (a fault would allocate it).
   *
   * @throws {MapTypeError} for other map types
   */
  readArenaPages(map: BpfMapInfo): ArenaPages {
    const real = this.#realInfo(map, new Set([MapType.ARENA]), "an ARENA map");
    return readArenaPagesLive({
      ...map,
      ...identity(real),
      maxEntries: real.maxEntries,
    });
  }

  /** The raw bytes of the BTF object holding the map's key/value types, or null. */
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null {
    const btfId = this.#realBtfId(map);
    if (btfId === 0) return null;
    using fd = btfGetFdById(btfId);
    return btfGetInfo(fd.fd).bytes;
  }

  #realBtfId(map: BpfMapInfo): number {
    using opened = this.#openReal(map);
    return opened.real.btfId;
  }

  /**
   * The parsed BTF object holding the map's key/value types, or null when
   * the map has none. Module BTF is split on `base` (read from sysfs when
   * not given). Parsed objects are cached per BTF id for this accessor.
   */
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null {
    const btfId = this.#realBtfId(map);
    if (btfId === 0) return null;
    if (base !== undefined) return loadBtfById(btfId, base);
    return this.#cachedBtf(btfId);
  }

  // Writes: on the backend only, never on the read-only interface.

  /**
   * Creates a map; the returned fd owns it (the map lives while it is open).
   *
   * @example A hash map for a scope
   * ```ts
   * import { MapType } from "../sys/constants.ts";
   * using fd = BpfSyscallAccessor.createMap({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: "demo" });
   * ```
   */
  static createMap(attr: MapCreateAttr): OwnedFd {
    return mapCreate(attr);
  }

  /** The bytes a value of the opened map takes in an update or lookup. */
  #valueBytes(real: RawMapInfo): number {
    return PERCPU_MAP_TYPES.has(real.type)
      ? percpuStride(real.valueSize) * this.possibleCpus
      : real.valueSize;
  }

  /**
   * Writes `value` at `key` (flags: UpdateFlag). Per-CPU maps take one slot
   * of `round_up(value_size, 8)` bytes per possible CPU.
   *
   * @throws {MapArgumentError} when `key` or `value` is not the map's size
   */
  update(
    map: BpfMapInfo,
    key: Uint8Array,
    value: Uint8Array,
    flags = 0n,
  ): void {
    using opened = this.#openReal(map, OpenFlag.READ_WRITE);
    const real = opened.real;
    checkBuffer(real, "key", key, real.keySize, "the key size");
    const valueBytes = this.#valueBytes(real);
    checkBuffer(
      real,
      "value",
      value,
      valueBytes,
      PERCPU_MAP_TYPES.has(real.type)
        ? `round_up(value_size ${real.valueSize}, 8) x ${this.possibleCpus} possible CPUs`
        : "the value size",
    );
    try {
      if (LOCAL_STORAGE_MAP_TYPES.has(real.type)) {
        mapUpdateStorageElem(opened.fd.fd, key, value, flags);
      } else {
        mapUpdateElem(
          opened.fd.fd,
          key.length === 0 ? null : key,
          value,
          flags,
        );
      }
    } catch (error) {
      throw frozenHint(error, opened.fd.fd, real);
    }
  }

  /**
   * Deletes `key`; false when it was absent.
   *
   * @throws {MapArgumentError} when `key` is not the map's key size
   */
  delete(map: BpfMapInfo, key: Uint8Array): boolean {
    using opened = this.#openReal(map, OpenFlag.READ_WRITE);
    const real = opened.real;
    checkBuffer(real, "key", key, real.keySize, "the key size");
    try {
      return mapDeleteElem(opened.fd.fd, key);
    } catch (error) {
      throw frozenHint(error, opened.fd.fd, real);
    }
  }

  /**
   * Overwrites `bytes` at `offset` of an ARRAY map's single value (global data).
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when the bytes do not fit in the value at `offset`
   */
  writeValue(map: BpfMapInfo, offset: number, bytes: Uint8Array): void {
    using opened = this.#openReal(map, OpenFlag.READ_WRITE);
    const real = opened.real;
    expectMapType(real, new Set([MapType.ARRAY]), "an ARRAY map");
    checkValueRange(real, "offset", offset, bytes.length);
    const value = new Uint8Array(new ArrayBuffer(real.valueSize));
    const key = indexKey(0);
    if (!mapLookupElem(opened.fd.fd, key, value)) {
      throw new MapArgumentError(
        identity(real),
        "offset",
        "cannot be written: the map has no element 0",
        { hint: "writeValue is for global-data arrays of one element" },
      );
    }
    value.set(bytes, offset);
    try {
      mapUpdateElem(opened.fd.fd, key, value);
    } catch (error) {
      throw frozenHint(error, opened.fd.fd, real);
    }
  }

  /**
   * Sets fields of one element by BTF path (see `BpfMapFieldWriter`): the
   * element is looked up, changed in a copy and written back whole with
   * `BPF_MAP_UPDATE_ELEM` (`BPF_EXIST`: a hash element is never created).
   * bpf() has no partial update, so a BPF program's own store to another
   * field of the same element between the lookup and the update is lost.
   *
   * @throws {MapTypeError} for maps other than ARRAY, HASH and LRU_HASH
   * @throws {MapReadOnlyError} for a frozen or `BPF_F_RDONLY` map
   * @throws {FieldError} for a bad path or a value that does not fit
   * @throws {MapArgumentError} for a key that is not in the map
   */
  writeFields(
    map: BpfMapInfo,
    assignments: Iterable<readonly [string, FieldValue]>,
    options: WriteFieldOptions = {},
  ): FieldWriteResult {
    using opened = this.#openReal(map, OpenFlag.READ_WRITE);
    const real = opened.real;
    const who = identity(real);
    expectMapType(
      real,
      FIELD_WRITE_TYPES,
      "an ARRAY, HASH or LRU_HASH map (fields are written in one value per key)",
    );
    if ((real.flags & MapFlag.RDONLY) !== 0) {
      throw new MapReadOnlyError(
        who,
        "was created BPF_F_RDONLY: user space cannot write it",
      );
    }
    if (readFdinfo(opened.fd.fd).get("frozen") === "1") {
      throw new MapReadOnlyError(
        who,
        "is frozen (BPF_MAP_FREEZE, as libbpf does to .rodata after load): the kernel refuses every write from user space",
        {
          hint:
            "write a knob in .bss or .data instead; a frozen guest's .rodata can be written with allowReadonly (--allow-rodata), usually to no effect",
        },
      );
    }
    const prepared = prepareFieldWrite(
      who,
      real.btfId === 0 ? null : this.#cachedBtf(real.btfId),
      real.btfValueTypeId,
      real.valueSize,
      assignments,
    );
    const key = fieldWriteKey(
      {
        ...who,
        type: real.type,
        keySize: real.keySize,
        maxEntries: real.maxEntries,
      },
      options.key,
    );
    const value = new Uint8Array(new ArrayBuffer(real.valueSize));
    if (!mapLookupElem(opened.fd.fd, key, value)) {
      throw new MapArgumentError(
        who,
        "key",
        `${hexKey(key)} is not in the map`,
      );
    }
    const changes = prepared.apply(value);
    try {
      mapUpdateElem(opened.fd.fd, key, value, BigInt(UpdateFlag.EXIST));
    } catch (error) {
      throw frozenHint(error, opened.fd.fd, real);
    }
    // The kernel skips kernel-owned fields (locks, timers, kptrs) in an
    // update without a word, and a program may store in between: say so
    // rather than report a change that is not there.
    const warnings: string[] = [];
    const now = new Uint8Array(new ArrayBuffer(real.valueSize));
    if (mapLookupElem(opened.fd.fd, key, now)) {
      for (const change of changes) {
        const end = change.byteOffset + change.byteSize;
        if (
          !sameBytes(
            now.subarray(change.byteOffset, end),
            value.subarray(change.byteOffset, end),
          )
        ) {
          warnings.push(
            `${change.path} does not read back as ${change.new} right after the update: a kernel-owned field (the kernel skips those) or a BPF program stored to it`,
          );
        }
      }
    }
    return { map, key, changes, warnings };
  }

  /** {@linkcode writeFields} with one field. */
  writeField(
    map: BpfMapInfo,
    path: string,
    value: FieldValue,
    options: WriteFieldOptions = {},
  ): FieldWriteResult {
    return this.writeFields(map, [[path, value]], options);
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

/** Map types whose one value per key `writeFields` changes. */
const FIELD_WRITE_TYPES: ReadonlySet<number> = new Set([
  MapType.ARRAY,
  MapType.HASH,
  MapType.LRU_HASH,
]);

/** Copies of the last (up to 8) keys of a batch, oldest first. */
function lastKeys(
  keys: Uint8Array,
  count: number,
  keySize: number,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = Math.max(0, count - 8); i < count; i++) {
    out.push(keys.slice(i * keySize, (i + 1) * keySize));
  }
  return out;
}

/** Where a walk whose cursor key was deleted goes on. */
function resumeAfterRestart(
  fd: number,
  recent: readonly Uint8Array[],
  cursor: Uint8Array | null,
  next: Uint8Array,
  seen: KeyDedupe,
): "resumed" | "restart" | "end" {
  // The newest key before the cursor that still exists leads to the key
  // after the deleted one; older ones are tried when it was deleted too.
  for (let i = recent.length - 1; i >= 0; i--) {
    const earlier = recent[i]!;
    if (cursor !== null && sameBytes(earlier, cursor)) continue;
    if (!mapGetNextKey(fd, earlier, next)) return "end";
    if (!seen.has(next)) return "resumed";
  }
  return "restart";
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function indexKey(index: number): Uint8Array {
  const key = new Uint8Array(new ArrayBuffer(4));
  new DataView(key.buffer).setUint32(0, index, true);
  return key;
}

function checkBuffer(
  real: RawMapInfo,
  argument: string,
  buffer: Uint8Array,
  expected: number,
  what: string,
): void {
  if (!(buffer instanceof Uint8Array) || buffer.byteLength !== expected) {
    const size = buffer instanceof Uint8Array
      ? `${buffer.byteLength} byte${buffer.byteLength === 1 ? "" : "s"}`
      : `not a Uint8Array`;
    throw new MapArgumentError(
      identity(real),
      argument,
      `is ${size} but ${what} is ${expected}`,
    );
  }
}

/** A write refused with EPERM on a frozen map says so instead of blaming privileges. */
function frozenHint(error: unknown, fd: number, real: RawMapInfo): unknown {
  if (!(error instanceof BpfError) || error.errno !== Errno.EPERM) return error;
  let frozen = false;
  try {
    frozen = readFdinfo(fd).get("frozen") === "1";
  } catch {
    return error;
  }
  if (!frozen) return error;
  return new BpfError(error.command, error.errno, {
    action: `map "${real.name}" (id ${real.id})`,
    hint:
      "the map is frozen (BPF_MAP_FREEZE): user space can no longer write it",
    cause: error,
  });
}
