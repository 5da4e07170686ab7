/**
 * A real backend seen through a narrowing, fault-injecting window: only the
 * test's own maps are visible, and reads can be made to fail after N
 * entries. Everything else goes to the kernel unchanged.
 *
 * @module
 */

import type {
  TypeDump,
  TypeReadOptions,
} from "../../src/accessor/maptypes/mod.ts";
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
} from "../../src/accessor/types.ts";
import type { Btf } from "../../src/btf/btf.ts";

/** What to change about the wrapped backend. */
export interface Faults {
  /** Ids of the maps to show (others are hidden from maps() and mapById()). */
  only: ReadonlySet<number>;
  /**
   * Act as a backend without per-type readers (as the guest backend is for
   * ring buffers today): readTypeDump answers null.
   */
  noTypeReaders?: boolean;
  /** Make entry reads of these maps throw after this many entries. */
  failAfter?: { ids: ReadonlySet<number>; entries: number; error: Error };
  /** Called when a map's entries start to be read (before the kernel is asked). */
  onRead?: (map: BpfMapInfo) => void;
  /** Problems to report besides the backend's own. */
  problems?: ReadProblem[];
  /** Mark every odd entry of these maps' batches unreadable with `message`. */
  oddEntriesUnreadable?: { ids: ReadonlySet<number>; message: string };
  /** mapById() throws this for these ids. */
  unreadable?: { ids: ReadonlySet<number>; error: Error };
}

/** The wrapped accessor. */
export class WrappedAccessor implements BpfMapAccessor {
  readonly #inner: BpfMapAccessor;
  readonly #faults: Faults;

  constructor(inner: BpfMapAccessor, faults: Faults) {
    this.#inner = inner;
    this.#faults = faults;
  }

  get kernelRelease(): string {
    return this.#inner.kernelRelease;
  }
  get possibleCpus(): number {
    return this.#inner.possibleCpus;
  }
  maps(): BpfMapInfo[] {
    return this.#inner.maps().filter((m) => this.#faults.only.has(m.id));
  }
  mapById(id: number): BpfMapInfo | null {
    if (this.#faults.unreadable?.ids.has(id)) {
      throw this.#faults.unreadable.error;
    }
    return this.#faults.only.has(id) ? this.#inner.mapById(id) : null;
  }
  findMap(suffix: string): BpfMapInfo | null {
    return this.maps().find((m) => m.name.endsWith(suffix)) ?? null;
  }
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null {
    return this.#inner.readValue(map, offset, len);
  }
  readArray(map: BpfMapInfo, key: number): Uint8Array | null {
    return this.#inner.readArray(map, key);
  }
  *iterEntryBatches(
    map: BpfMapInfo,
    options?: EntryBatchOptions,
  ): Iterable<EntryBatch> {
    this.#faults.onRead?.(map);
    let seen = 0;
    for (const batch of this.#inner.iterEntryBatches(map, options)) {
      const limit = this.#limitFor(map);
      if (seen + batch.count > limit) {
        const keep = limit - seen;
        if (keep > 0) yield { ...batch, count: keep };
        throw this.#faults.failAfter!.error;
      }
      seen += batch.count;
      const odd = this.#faults.oddEntriesUnreadable;
      if (odd?.ids.has(map.id)) {
        const errors = Array.from(
          { length: batch.count },
          (_, i) => (seen - batch.count + i) % 2 === 1 ? odd.message : null,
        );
        yield { ...batch, errors };
      } else {
        yield batch;
      }
    }
  }
  *iterHashMap(map: BpfMapInfo): Iterable<MapEntry> {
    this.#faults.onRead?.(map);
    let seen = 0;
    for (const entry of this.#inner.iterHashMap(map)) {
      if (seen++ >= this.#limitFor(map)) throw this.#faults.failAfter!.error;
      yield entry;
    }
  }
  readPercpuArray(
    map: BpfMapInfo,
    key: number,
    numCpus?: number,
  ): (Uint8Array | null)[] | null {
    return this.#inner.readPercpuArray(map, key, numCpus);
  }
  iterPercpuHashMap(
    map: BpfMapInfo,
    numCpus?: number,
  ): Iterable<{ key: Uint8Array; values: (Uint8Array | null)[] }> {
    return this.#inner.iterPercpuHashMap(map, numCpus);
  }
  iterTaskStorage(map: BpfMapInfo): Iterable<LocalStorageEntry> {
    return this.#inner.iterTaskStorage(map);
  }
  readArenaPages(map: BpfMapInfo): ArenaPages {
    return this.#inner.readArenaPages(map);
  }
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null {
    return this.#inner.loadProgramBtfBytes(map);
  }
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null {
    return this.#inner.loadProgramBtf(map, base);
  }
  readTypeDump(map: BpfMapInfo, options?: TypeReadOptions): TypeDump | null {
    if (this.#faults.noTypeReaders) return null;
    return this.#inner.readTypeDump(map, options);
  }
  problems(): readonly ReadProblem[] {
    return [...this.#inner.problems(), ...(this.#faults.problems ?? [])];
  }
  programs(): BpfProgramInfo[] {
    return this.#inner.programs();
  }
  programById(id: number): BpfProgramInfo | null {
    return this.#inner.programById(id);
  }

  #limitFor(map: BpfMapInfo): number {
    const fail = this.#faults.failAfter;
    return fail && fail.ids.has(map.id) ? fail.entries : Infinity;
  }
}
