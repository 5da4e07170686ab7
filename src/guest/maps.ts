/**
 * BPF maps read out of a guest kernel's memory: `map_idr` enumeration and a
 * reader per map type. Every walk is bounded by the map's own limits
 * (`max_entries`, bucket counts) so a corrupt image yields an error or a
 * partial result, never a hang.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import { GuestKernelError, GuestMemoryError, hex } from "./errors.ts";
import type { KernelLayout } from "./layout.ts";
import {
  joinAddress,
  type KernelAddressSpace,
  splitAddress,
} from "./paging.ts";
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

/** One key and per-CPU values (null for CPUs the kernel does not have). */
export interface GuestPercpuEntry {
  /** Key bytes. */
  key: Uint8Array;
  /** One value per requested CPU. */
  values: (Uint8Array | null)[];
}

/** One local-storage element. */
export interface GuestStorageEntry {
  /** Kernel virtual address of the owner (task_struct, inode, sock, cgroup). */
  owner: bigint;
  /** Value bytes. */
  value: Uint8Array;
}

/** One present arena page. */
export interface GuestArenaPage {
  /** Page index in the arena. */
  index: number;
  /** Address user space sees the page at. */
  userAddress: bigint;
  /** The page's bytes (a view of guest memory). */
  bytes: Uint8Array;
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

const NAME_LEN = 16;
const HASH_TYPES = new Set<number>([MapType.HASH, MapType.LRU_HASH]);
const PERCPU_HASH_TYPES = new Set<number>([
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);
const STORAGE_TYPES = new Set<number>([
  MapType.TASK_STORAGE,
  MapType.INODE_STORAGE,
  MapType.SK_STORAGE,
  MapType.CGRP_STORAGE,
]);

/** An element during a hash walk: its bytes are `bytes[at, at + span)`. */
interface HtabCursor {
  bytes: Uint8Array;
  at: number;
}

const TWO_32 = 0x1_0000_0000;

/** Copies `len` bytes; a plain loop for small runs (no subarray objects). */
function copyInto(
  to: Uint8Array,
  toAt: number,
  from: Uint8Array,
  fromAt: number,
  len: number,
): void {
  if (len <= 64) {
    for (let i = 0; i < len; i++) to[toAt + i] = from[fromAt + i]!;
  } else {
    to.set(from.subarray(fromAt, fromAt + len), toAt);
  }
}

/**
 * Copies small byte runs into shared chunks and hands out views of them, so
 * a walk allocates one buffer per chunk instead of one per key or value
 * (allocating an ArrayBuffer costs far more than copying a few bytes). Each
 * copy starts 8-byte aligned; runs over a quarter chunk get their own buffer.
 * A view keeps its whole chunk alive.
 *
 * @example
 * ```ts
 * import { CopySlab } from "./maps.ts";
 * const slab = new CopySlab(4096);
 * const a = slab.copy(new Uint8Array([1, 2, 3]), 1, 2);
 * console.log(a); // Uint8Array(2) [ 2, 3 ]
 * ```
 */
export class CopySlab {
  readonly #chunkSize: number;
  #chunk = new Uint8Array(0);
  #used = 0;

  /** @param chunkSize bytes per shared chunk */
  constructor(chunkSize = 64 << 10) {
    this.#chunkSize = Math.max(64, chunkSize);
  }

  /** A copy of `from[at, at + len)`. */
  copy(from: Uint8Array, at: number, len: number): Uint8Array {
    if (len > this.#chunkSize >> 2) {
      return from.slice(at, at + len);
    }
    let start = this.#used;
    if (start + len > this.#chunk.length) {
      this.#chunk = new Uint8Array(this.#chunkSize);
      start = 0;
    }
    copyInto(this.#chunk, start, from, at, len);
    this.#used = (start + len + 7) & ~7;
    return this.#chunk.subarray(start, start + len);
  }
}

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/**
 * Reads BPF maps from a guest kernel's memory, given its address space, its
 * struct layout and per-CPU offsets.
 *
 * @example
 * ```ts ignore
 * const reader = new GuestMapReader(kernel.space, layout, kernel.perCpuOffsets(), kernel.symbol("map_idr"));
 * for (const map of reader.maps()) console.log(map.id, map.name);
 * ```
 */
export class GuestMapReader {
  /** Address space of the guest kernel. */
  readonly space: KernelAddressSpace;
  /** Struct offsets. */
  readonly layout: KernelLayout;
  /** `__per_cpu_offset[0..nr_cpu_ids)`. */
  readonly perCpuOffsets: readonly bigint[];
  /** Address of `map_idr`. */
  readonly mapIdr: bigint;
  /** Problems met while walking (skipped nodes, truncated chains). */
  readonly problems: string[] = [];
  readonly #limits: Required<GuestMapLimits>;
  readonly #percpuHi: number[];
  readonly #percpuLo: number[];

  /**
   * @param space the guest kernel's address space
   * @param layout offsets from the guest's BTF
   * @param perCpuOffsets `__per_cpu_offset` for each possible CPU
   * @param mapIdr address of the `map_idr` symbol
   */
  constructor(
    space: KernelAddressSpace,
    layout: KernelLayout,
    perCpuOffsets: readonly bigint[],
    mapIdr: bigint,
    limits: GuestMapLimits = {},
  ) {
    this.space = space;
    this.layout = layout;
    this.perCpuOffsets = perCpuOffsets;
    const halves = perCpuOffsets.map(splitAddress);
    this.#percpuHi = halves.map(([hi]) => hi);
    this.#percpuLo = halves.map(([, lo]) => lo);
    this.mapIdr = mapIdr;
    this.#limits = {
      maxMaps: limits.maxMaps ?? 65_536,
      maxValueSize: limits.maxValueSize ?? (1 << 20),
      maxArenaPages: limits.maxArenaPages ?? (1 << 20),
    };
  }

  /** Every map in `map_idr`, in id order. Maps that cannot be read are skipped and noted in `problems`. */
  maps(): GuestMapRecord[] {
    const out: GuestMapRecord[] = [];
    const onProblem = (m: string): void => {
      this.problems.push(`map_idr: ${m}`);
    };
    for (
      const { index, entry } of walkIdr(
        this.space,
        this.mapIdr,
        this.layout.xarray,
        {
          maxEntries: this.#limits.maxMaps,
          onProblem,
        },
      )
    ) {
      if (entry & 3n) continue; // value or internal entry: not a map pointer
      try {
        const record = this.readMap(entry);
        if (BigInt(record.id) !== index) {
          onProblem(
            `entry ${index} points at ${hex(entry)} whose id is ${record.id}`,
          );
        }
        out.push(record);
      } catch (error) {
        onProblem(`entry ${index}: ${(error as Error).message}`);
      }
    }
    return out;
  }

  /** Reads the `struct bpf_map` at `va`. */
  readMap(va: bigint): GuestMapRecord {
    const m = this.layout.map;
    if (this.space.translate(va) === null) {
      throw new GuestMemoryError("read struct bpf_map", va, "not mapped");
    }
    const u32 = (off: number, what: string): number =>
      this.space.mustU32(va + BigInt(off), `bpf_map.${what}`);
    const btfAddress = this.space.mustU64(va + BigInt(m.btf), "bpf_map.btf");
    const record: GuestMapRecord = {
      id: u32(m.id, "id"),
      name: cString(
        this.space.mustRead(va + BigInt(m.name), NAME_LEN, "bpf_map.name"),
      ),
      type: u32(m.type, "map_type"),
      keySize: u32(m.keySize, "key_size"),
      valueSize: u32(m.valueSize, "value_size"),
      maxEntries: u32(m.maxEntries, "max_entries"),
      flags: u32(m.flags, "map_flags"),
      mapExtra: this.space.mustU64(
        va + BigInt(m.mapExtra),
        "bpf_map.map_extra",
      ),
      btfId: 0,
      btfKeyTypeId: u32(m.btfKeyTypeId, "btf_key_type_id"),
      btfValueTypeId: u32(m.btfValueTypeId, "btf_value_type_id"),
      btfVmlinuxValueTypeId: u32(
        m.btfVmlinuxValueTypeId,
        "btf_vmlinux_value_type_id",
      ),
      frozen: this.space.mustU8(va + BigInt(m.frozen), "bpf_map.frozen") !== 0,
      kernelAddress: va,
      btfAddress,
    };
    if (
      record.keySize > this.#limits.maxValueSize ||
      record.valueSize > this.#limits.maxValueSize
    ) {
      throw new GuestMemoryError(
        `use bpf_map "${record.name}"`,
        va,
        `key_size ${record.keySize} / value_size ${record.valueSize} exceed ${this.#limits.maxValueSize}`,
      );
    }
    if (btfAddress !== 0n) {
      record.btfId = this.space.mustU32(
        btfAddress + BigInt(m.btfId),
        `btf.id of map ${record.id}`,
      );
    }
    return record;
  }

  #checkType(
    map: GuestMapRecord,
    types: ReadonlySet<number> | number,
    what: string,
  ): void {
    const ok = typeof types === "number"
      ? map.type === types
      : types.has(map.type);
    if (!ok) {
      throw new GuestKernelError(
        `Map ${map.id} ("${map.name}") has type ${map.type}; ${what} cannot read it`,
      );
    }
  }

  #arrayElemSize(map: GuestMapRecord): number {
    const size = this.space.mustU32(
      map.kernelAddress + BigInt(this.layout.array.elemSize),
      "bpf_array.elem_size",
    );
    const expected = map.type === MapType.PERCPU_ARRAY
      ? size
      : roundUp8(map.valueSize);
    if (size !== expected) {
      throw new GuestMemoryError(
        `use map ${map.id} ("${map.name}")`,
        map.kernelAddress,
        `bpf_array.elem_size is ${size}, expected round_up(value_size ${map.valueSize}, 8) = ${expected}`,
      );
    }
    return size;
  }

  /** Value `key` of an ARRAY map (stride `round_up(value_size, 8)`), or null when out of range. */
  readArray(map: GuestMapRecord, key: number): Uint8Array | null {
    this.#checkType(map, MapType.ARRAY, "readArray");
    if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) return null;
    const stride = this.#arrayElemSize(map);
    const va = map.kernelAddress + BigInt(this.layout.array.value) +
      BigInt(key) * BigInt(stride);
    // the message is built only when the read fails
    return this.space.read(va, map.valueSize) ?? this.space.mustRead(
      va,
      map.valueSize,
      `value ${key} of map ${map.id} ("${map.name}")`,
    );
  }

  /** `len` bytes at `offset` of value 0 of an ARRAY map; null when out of bounds. */
  readArrayValue(
    map: GuestMapRecord,
    offset: number,
    len: number,
  ): Uint8Array | null {
    this.#checkType(map, MapType.ARRAY, "readValue");
    if (
      offset < 0 || len < 0 || offset + len > map.valueSize ||
      map.maxEntries < 1
    ) return null;
    const va = map.kernelAddress + BigInt(this.layout.array.value + offset);
    return this.space.mustRead(
      va,
      len,
      `value of map ${map.id} ("${map.name}") at +${offset}`,
    );
  }

  #percpuValue(
    pptr: bigint,
    cpu: number,
    size: number,
    what: string,
  ): Uint8Array | null {
    const offset = this.perCpuOffsets[cpu];
    if (offset === undefined) return null;
    return this.space.mustRead(
      BigInt.asUintN(64, pptr + offset),
      size,
      `${what} on CPU ${cpu}`,
    );
  }

  /** Every CPU's copy of index `key` of a PERCPU_ARRAY; null entries for CPUs beyond `nr_cpu_ids`. */
  readPercpuArray(
    map: GuestMapRecord,
    key: number,
    numCpus: number,
  ): (Uint8Array | null)[] | null {
    this.#checkType(map, MapType.PERCPU_ARRAY, "readPercpuArray");
    if (!Number.isInteger(key) || key < 0 || key >= map.maxEntries) return null;
    const what = `value ${key} of map ${map.id} ("${map.name}")`;
    const pptr = this.space.mustU64(
      map.kernelAddress + BigInt(this.layout.array.value + key * 8),
      `pptrs[${key}] of map ${map.id}`,
    );
    const values: (Uint8Array | null)[] = [];
    for (let cpu = 0; cpu < numCpus; cpu++) {
      values.push(this.#percpuValue(pptr, cpu, map.valueSize, what));
    }
    return values;
  }

  /**
   * Walks the buckets of a hash-family map, yielding each element's first
   * `span` bytes as `cursor.bytes[cursor.at, cursor.at + span)` (one read per
   * element; a view of the image, or a copy when the element crosses a page).
   * The cursor object is reused: consume it before resuming the walk. The
   * walk stops with an error after more than `max_entries + n_buckets`
   * elements (a cycle or a corrupt count) or at an unmapped pointer.
   *
   * Addresses stay as unsigned 32-bit halves (hi:lo) in this loop, and pages
   * are translated through `KernelAddressSpace.offsetAt`'s cache, so the
   * common case does no bigint arithmetic.
   */
  *#htabElements(
    map: GuestMapRecord,
    span: number,
  ): Generator<HtabCursor> {
    const h = this.layout.htab;
    if (!h) {
      throw new GuestKernelError(
        "The guest's BTF has no struct bpf_htab/bucket/htab_elem",
      );
    }
    const base = map.kernelAddress;
    const nBuckets = this.space.mustU32(
      base + BigInt(h.nBuckets),
      "bpf_htab.n_buckets",
    );
    const buckets = this.space.mustU64(
      base + BigInt(h.buckets),
      "bpf_htab.buckets",
    );
    if (
      nBuckets === 0 || (nBuckets & (nBuckets - 1)) !== 0 ||
      nBuckets > Math.max(1, map.maxEntries) * 2 + 1
    ) {
      throw new GuestMemoryError(
        `walk map ${map.id} ("${map.name}")`,
        base,
        `n_buckets ${nBuckets} is not a power of two near max_entries ${map.maxEntries}`,
      );
    }
    const space = this.space;
    const image = space.memory.bytes;
    const imageView = new DataView(
      image.buffer,
      image.byteOffset,
      image.byteLength,
    );
    const nextOffset = h.elemNext;
    const limit = map.maxEntries + nBuckets;
    const what = `htab_elem of map ${map.id}`;
    const [bucketsHi, bucketsLo] = splitAddress(buckets);
    const cursor: HtabCursor = { bytes: image, at: 0 };
    let visited = 0;
    for (let b = 0; b < nBuckets; b++) {
      // head = buckets + b * bucket_size + offsetof(head.first), in hi:lo
      const sum = bucketsLo + b * h.bucketSize + h.bucketFirst;
      const carry = Math.floor(sum / TWO_32);
      const headLo = sum - carry * TWO_32;
      const headHi = (bucketsHi + carry) >>> 0;
      let lo: number;
      let hi: number;
      const headAt = space.offsetAt(headHi, headLo, 8);
      if (headAt >= 0) {
        lo = imageView.getUint32(headAt, true);
        hi = imageView.getUint32(headAt + 4, true);
      } else {
        [hi, lo] = splitAddress(space.mustU64(
          joinAddress(headHi, headLo),
          `bucket ${b} of map ${map.id}`,
        ));
      }
      while ((lo & 1) === 0) {
        if (lo === 0 && hi === 0) {
          throw new GuestMemoryError(
            `walk bucket ${b} of map ${map.id}`,
            joinAddress(headHi, headLo),
            "NULL in an hlist_nulls chain",
          );
        }
        if (++visited > limit) {
          throw new GuestMemoryError(
            `walk map ${map.id} ("${map.name}")`,
            joinAddress(hi, lo),
            `more than max_entries + n_buckets = ${limit} elements (cycle?)`,
          );
        }
        // elem = node - offsetof(htab_elem, hash_node.next)
        let elemLo = lo - nextOffset;
        let elemHi = hi;
        if (elemLo < 0) {
          elemLo += TWO_32;
          elemHi = (hi - 1) >>> 0;
        }
        const at = space.offsetAt(elemHi, elemLo, span);
        if (at >= 0) {
          cursor.bytes = image;
          cursor.at = at;
          yield cursor;
          lo = imageView.getUint32(at + nextOffset, true);
          hi = imageView.getUint32(at + nextOffset + 4, true);
        } else {
          const bytes = space.mustRead(joinAddress(elemHi, elemLo), span, what);
          cursor.bytes = bytes;
          cursor.at = 0;
          yield cursor;
          const view = new DataView(bytes.buffer, bytes.byteOffset, span);
          lo = view.getUint32(nextOffset, true);
          hi = view.getUint32(nextOffset + 4, true);
        }
      }
      if (hi !== 0 || lo >>> 1 !== b) {
        this.problems.push(
          `map ${map.id}: bucket ${b} ends with nulls marker ${
            hex(joinAddress(hi, lo))
          } (element moved?)`,
        );
      }
    }
  }

  #hashShape(map: GuestMapRecord): {
    keyOffset: number;
    valueOffset: number;
    span: number;
  } {
    const keyOffset = this.layout.htab?.elemKey ?? 0;
    const valueOffset = keyOffset + roundUp8(map.keySize);
    const span = Math.max(
      valueOffset + map.valueSize,
      (this.layout.htab?.elemNext ?? 0) + 8,
    );
    return { keyOffset, valueOffset, span };
  }

  /** Every element of a HASH or LRU_HASH map (views of guest memory). */
  *iterHash(
    map: GuestMapRecord,
  ): Generator<{ key: Uint8Array; value: Uint8Array }> {
    this.#checkType(map, HASH_TYPES, "iterHash");
    const { keyOffset, valueOffset, span } = this.#hashShape(map);
    const keySize = map.keySize;
    const valueSize = map.valueSize;
    for (const { bytes, at } of this.#htabElements(map, span)) {
      yield {
        key: bytes.subarray(at + keyOffset, at + keyOffset + keySize),
        value: bytes.subarray(at + valueOffset, at + valueOffset + valueSize),
      };
    }
  }

  /**
   * Every element of a HASH or LRU_HASH map, copied out of guest memory
   * (into shared chunks; see {@linkcode CopySlab}), so entries stay valid
   * after the walk moves on or the guest runs again.
   */
  *iterHashCopies(
    map: GuestMapRecord,
  ): Generator<{ key: Uint8Array; value: Uint8Array }> {
    this.#checkType(map, HASH_TYPES, "iterHashCopies");
    const { keyOffset, valueOffset, span } = this.#hashShape(map);
    const keySize = map.keySize;
    const valueSize = map.valueSize;
    const slab = new CopySlab();
    for (const { bytes, at } of this.#htabElements(map, span)) {
      yield {
        key: slab.copy(bytes, at + keyOffset, keySize),
        value: slab.copy(bytes, at + valueOffset, valueSize),
      };
    }
  }

  #percpuPointer(
    pptrHi: number,
    pptrLo: number,
    cpu: number,
    size: number,
    what: string,
  ): Uint8Array | null {
    const offsetLo = this.#percpuLo[cpu];
    const offsetHi = this.#percpuHi[cpu];
    if (offsetLo === undefined || offsetHi === undefined) return null;
    const sum = pptrLo + offsetLo;
    const carry = sum >= TWO_32 ? 1 : 0;
    const lo = sum - carry * TWO_32;
    const hi = (pptrHi + offsetHi + carry) >>> 0;
    const at = this.space.offsetAt(hi, lo, size);
    if (at >= 0) return this.space.memory.bytes.subarray(at, at + size);
    return this.space.mustRead(
      joinAddress(hi, lo),
      size,
      `${what} on CPU ${cpu}`,
    );
  }

  /**
   * Every element of a PERCPU_HASH or LRU_PERCPU_HASH: the per-CPU pointer
   * sits where a plain hash keeps its value, at `key + round_up(key_size, 8)`
   * (verified on 6.1 and 6.12 with a 4-byte key). Keys are copies, values
   * views of guest memory.
   */
  iterPercpuHash(
    map: GuestMapRecord,
    numCpus: number,
  ): Generator<GuestPercpuEntry> {
    this.#checkType(map, PERCPU_HASH_TYPES, "iterPercpuHash");
    return this.#percpuHashEntries(map, numCpus, null);
  }

  /** Like `iterPercpuHash`, but values are copies too (into shared chunks; see {@linkcode CopySlab}). */
  iterPercpuHashCopies(
    map: GuestMapRecord,
    numCpus: number,
  ): Generator<GuestPercpuEntry> {
    this.#checkType(map, PERCPU_HASH_TYPES, "iterPercpuHashCopies");
    return this.#percpuHashEntries(map, numCpus, new CopySlab());
  }

  *#percpuHashEntries(
    map: GuestMapRecord,
    numCpus: number,
    slab: CopySlab | null,
  ): Generator<GuestPercpuEntry> {
    const keyOffset = this.layout.htab?.elemKey ?? 0;
    const pointerOffset = keyOffset + roundUp8(map.keySize);
    const span = Math.max(
      pointerOffset + 8,
      (this.layout.htab?.elemNext ?? 0) + 8,
    );
    const what = `value of map ${map.id}`;
    const image = this.space.memory.bytes;
    const imageView = new DataView(
      image.buffer,
      image.byteOffset,
      image.byteLength,
    );
    const valueSize = map.valueSize;
    for (const { bytes, at } of this.#htabElements(map, span)) {
      const view = bytes === image
        ? imageView
        : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const pptrLo = view.getUint32(at + pointerOffset, true);
      const pptrHi = view.getUint32(at + pointerOffset + 4, true);
      const values: (Uint8Array | null)[] = [];
      for (let cpu = 0; cpu < numCpus; cpu++) {
        const value = this.#percpuPointer(pptrHi, pptrLo, cpu, valueSize, what);
        values.push(
          slab && value ? slab.copy(value, 0, valueSize) : value,
        );
      }
      yield {
        key: slab
          ? slab.copy(bytes, at + keyOffset, map.keySize)
          : bytes.slice(at + keyOffset, at + keyOffset + map.keySize),
        values,
      };
    }
  }

  /** Every element of a TASK/INODE/SK/CGRP storage map, keyed by owner address. */
  *iterLocalStorage(map: GuestMapRecord): Generator<GuestStorageEntry> {
    this.#checkType(map, STORAGE_TYPES, "iterLocalStorage");
    const s = this.layout.localStorage;
    if (!s) {
      throw new GuestKernelError(
        "The guest's BTF has no struct bpf_local_storage_map",
      );
    }
    const base = map.kernelAddress;
    const log = this.space.mustU32(
      base + BigInt(s.bucketLog),
      "bpf_local_storage_map.bucket_log",
    );
    if (log > 24) {
      throw new GuestMemoryError(
        `walk map ${map.id} ("${map.name}")`,
        base,
        `bucket_log ${log} is implausible`,
      );
    }
    const buckets = this.space.mustU64(
      base + BigInt(s.buckets),
      "bpf_local_storage_map.buckets",
    );
    const nBuckets = 1 << log;
    // local storage has no max_entries bound: detect cycles exactly, and cap the total
    const limit = 1 << 22;
    const seen = new Set<bigint>();
    for (let b = 0; b < nBuckets; b++) {
      let node = this.space.mustU64(
        buckets + BigInt(b * s.bucketSize + s.bucketFirst),
        `bucket ${b} of map ${map.id}`,
      );
      while (node !== 0n) {
        if (seen.has(node)) {
          throw new GuestMemoryError(
            `walk map ${map.id}`,
            node,
            `selem at ${hex(node)} of map ${map.id} is reached twice (cycle)`,
          );
        }
        seen.add(node);
        if (seen.size > limit) {
          throw new GuestMemoryError(
            `walk map ${map.id}`,
            node,
            `more than ${limit} elements`,
          );
        }
        const elem = node - BigInt(s.elemMapNode);
        const storage = this.space.mustU64(
          elem + BigInt(s.elemLocalStorage),
          `selem.local_storage of map ${map.id}`,
        );
        const owner = storage === 0n ? 0n : this.space.mustU64(
          storage + BigInt(s.storageOwner),
          `bpf_local_storage.owner of map ${map.id}`,
        );
        yield {
          owner,
          value: this.space.mustRead(
            elem + BigInt(s.elemData),
            map.valueSize,
            `value of map ${map.id}`,
          ),
        };
        node = this.space.mustU64(
          node + BigInt(s.nodeNext),
          `selem.map_node.next of map ${map.id}`,
        );
      }
    }
  }

  /**
   * The arena's present pages: each page's kernel address is
   * `kern_vm->addr + GUARD_SZ/2 + (u32)(user_vm_start + index * 4096)`;
   * pages the page tables do not map are absent (never allocated).
   */
  readArena(
    map: GuestMapRecord,
  ): { pages: GuestArenaPage[]; userVmStart: bigint; notes: string[] } {
    this.#checkType(map, MapType.ARENA, "readArena");
    const a = this.layout.arena;
    if (!a) {
      throw new GuestKernelError(
        "The guest's BTF has no struct bpf_arena (kernel older than 6.9)",
      );
    }
    const base = map.kernelAddress;
    const userVmStart = this.space.mustU64(
      base + BigInt(a.userVmStart),
      "bpf_arena.user_vm_start",
    );
    const kernVm = this.space.mustU64(
      base + BigInt(a.kernVm),
      "bpf_arena.kern_vm",
    );
    const notes: string[] = [];
    if (kernVm === 0n) {
      return { pages: [], userVmStart, notes: ["arena has no kernel VM area"] };
    }
    const kernStart = this.space.mustU64(
      kernVm + BigInt(a.vmAddr),
      "vm_struct.addr of the arena",
    ) +
      BigInt(a.guardSize / 2);
    const total = Math.min(map.maxEntries, this.#limits.maxArenaPages);
    if (total < map.maxEntries) {
      notes.push(
        `only the first ${total} of ${map.maxEntries} pages were probed`,
      );
    }
    const pages: GuestArenaPage[] = [];
    let index = 0;
    while (index < total) {
      const userAddress = userVmStart + BigInt(index) * 4096n;
      const va = kernStart + (userAddress & 0xffffffffn);
      const walked = this.space.walk(va);
      if (walked.pa === null) {
        // skip the whole unmapped span of the missing table entry
        const spanPages = Number(walked.span / 4096n);
        const inSpan = Number((va % walked.span) / 4096n);
        index += Math.max(1, spanPages - inSpan);
        continue;
      }
      const bytes = this.space.memory.view(walked.pa & ~0xfffn, 4096);
      if (bytes) pages.push({ index, userAddress, bytes });
      else {notes.push(
          `page ${index} maps to ${hex(walked.pa)}, outside the image`,
        );}
      index++;
    }
    return { pages, userVmStart, notes };
  }

  /** The raw bytes of the map's `struct btf` (its `data`/`data_size`), or null without BTF. */
  programBtf(map: GuestMapRecord): Uint8Array | null {
    if (map.btfAddress === 0n) return null;
    const m = this.layout.map;
    const data = this.space.mustU64(
      map.btfAddress + BigInt(m.btfData),
      `btf.data of map ${map.id}`,
    );
    const size = this.space.mustU32(
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
    return this.space.mustRead(data, size, `BTF data of map ${map.id}`).slice();
  }
}
