/**
 * BPF maps read out of a guest kernel's memory: one reader over the
 * per-concept walkers (`map_records.ts` for `map_idr`, `array_maps.ts`,
 * `htab.ts`, `local_storage.ts`, `arena.ts`). Every walk is bounded by the
 * map's own limits so a corrupt image yields an error or a partial result
 * whose gaps are recorded in `problems`, never a hang or a silent loss.
 *
 * @module
 */

import { readArena } from "./arena.ts";
import type { GuestArenaPage } from "./arena.ts";
import { readArray, readArrayValue, readPercpuArray } from "./array_maps.ts";
import {
  type GuestPercpuEntry,
  iterHash,
  iterHashCopies,
  iterPercpuHash,
} from "./htab.ts";
import type { KernelLayout } from "./layout.ts";
import { type GuestStorageEntry, iterLocalStorage } from "./local_storage.ts";
import {
  type GuestMapLimits,
  type GuestMapRecord,
  listMaps,
  type MapReadContext,
  programBtf,
  readMapRecord,
  type UnreadableMap,
} from "./map_records.ts";
import { type KernelAddressSpace, splitAddress } from "./paging.ts";
import { type GuestProblem, ProblemLog } from "./problems.ts";

export { CopySlab } from "./copy_slab.ts";
export type {
  GuestArenaPage,
  GuestMapLimits,
  GuestMapRecord,
  GuestPercpuEntry,
  GuestProblem,
  GuestStorageEntry,
  UnreadableMap,
};

/**
 * Reads BPF maps from a guest kernel's memory, given its address space, its
 * struct layout and per-CPU offsets.
 *
 * @example
 * ```ts ignore
 * const reader = new GuestMapReader(kernel.space, layout, kernel.perCpuOffsets(), kernel.symbol("map_idr"));
 * for (const map of reader.maps()) console.log(map.id, map.name);
 * console.log(reader.problems);
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
  readonly #context: MapReadContext;
  #unreadable: UnreadableMap[] = [];

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
    this.mapIdr = mapIdr;
    const halves = perCpuOffsets.map(splitAddress);
    this.#context = {
      space,
      layout,
      perCpuOffsets,
      percpuHi: halves.map(([hi]) => hi),
      percpuLo: halves.map(([, lo]) => lo),
      limits: {
        maxMaps: limits.maxMaps ?? 65_536,
        maxValueSize: limits.maxValueSize ?? (1 << 20),
        maxArenaPages: limits.maxArenaPages ?? (1 << 20),
      },
      problems: new ProblemLog(),
    };
  }

  /** What walks so far had to skip, oldest first. */
  get problems(): GuestProblem[] {
    return this.#context.problems.list();
  }

  /** `map_idr` entries whose record could not be read, as of the last `maps()`. */
  get unreadable(): readonly UnreadableMap[] {
    return this.#unreadable;
  }

  /** Every readable map in `map_idr`, in id order; the rest are in `unreadable` and `problems`. */
  maps(): GuestMapRecord[] {
    const { records, unreadable } = listMaps(this.#context, this.mapIdr);
    this.#unreadable = unreadable;
    return records;
  }

  /** Reads the `struct bpf_map` at `va`. */
  readMap(va: bigint): GuestMapRecord {
    return readMapRecord(this.#context, va);
  }

  /** Value `key` of an ARRAY map, or null when out of range (a view: copy it). */
  readArray(map: GuestMapRecord, key: number): Uint8Array | null {
    return readArray(this.#context, map, key);
  }

  /** `len` bytes at `offset` of value 0 of an ARRAY map (a view: copy it). */
  readArrayValue(
    map: GuestMapRecord,
    offset: number,
    len: number,
  ): Uint8Array | null {
    return readArrayValue(this.#context, map, offset, len);
  }

  /** Every CPU's copy of index `key` of a PERCPU_ARRAY; null beyond `nr_cpu_ids`. */
  readPercpuArray(
    map: GuestMapRecord,
    key: number,
    numCpus: number,
  ): (Uint8Array | null)[] | null {
    return readPercpuArray(this.#context, map, key, numCpus);
  }

  /** Every element of a HASH or LRU_HASH map (views: use each before resuming). */
  iterHash(
    map: GuestMapRecord,
  ): Generator<{ key: Uint8Array; value: Uint8Array }> {
    return iterHash(this.#context, map);
  }

  /** Every element of a HASH or LRU_HASH map, copied. */
  iterHashCopies(
    map: GuestMapRecord,
  ): Generator<{ key: Uint8Array; value: Uint8Array }> {
    return iterHashCopies(this.#context, map);
  }

  /** Every element of a PERCPU_HASH or LRU_PERCPU_HASH, copied. */
  iterPercpuHash(
    map: GuestMapRecord,
    numCpus: number,
  ): Generator<GuestPercpuEntry> {
    return iterPercpuHash(this.#context, map, numCpus);
  }

  /** Same as `iterPercpuHash` (kept for callers of the older name). */
  iterPercpuHashCopies(
    map: GuestMapRecord,
    numCpus: number,
  ): Generator<GuestPercpuEntry> {
    return iterPercpuHash(this.#context, map, numCpus);
  }

  /** Every element of a TASK/INODE/SK/CGRP storage map, keyed by owner address. */
  iterLocalStorage(map: GuestMapRecord): Generator<GuestStorageEntry> {
    return iterLocalStorage(this.#context, map);
  }

  /** The arena's present pages. */
  readArena(
    map: GuestMapRecord,
  ): { pages: GuestArenaPage[]; userVmStart: bigint; notes: string[] } {
    return readArena(this.#context, map);
  }

  /** The raw bytes of the map's `struct btf`, or null without BTF. */
  programBtf(map: GuestMapRecord): Uint8Array | null {
    return programBtf(this.#context, map);
  }
}
