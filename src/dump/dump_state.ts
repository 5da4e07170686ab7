/**
 * Builds a failure-dump report from any {@linkcode BpfMapAccessor}.
 *
 * @module
 */

import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import { Btf } from "../btf/btf.ts";
import { BtfKind } from "../btf/kind.ts";
import { recoverFullMapName } from "../btf/map_name.ts";
import {
  type RenderedValue,
  renderPercpuValues,
  renderValue,
} from "../btf/render.ts";
import {
  LOCAL_STORAGE_MAP_TYPES,
  MapType,
  mapTypeName,
} from "../sys/constants.ts";
import type { PercpuRenderedValue } from "../btf/render.ts";
import {
  type DumpEntry,
  FAILURE_DUMP_SCHEMA,
  type FailureDumpReport,
  type MapDump,
} from "./report.ts";

/** Options for {@linkcode dumpState}. */
export interface DumpStateOptions {
  /** Where the maps come from (default `live kernel`). */
  source?: string;
  /** Kernel release (default: the accessor's `kernelRelease`). */
  kernelRelease?: string;
  /** The moment to record (default now). */
  takenAt?: Date;
  /** Entries shown per map (default 64). */
  entryLimit?: number;
  /** Entries counted past the limit before giving up counting (default 100000). */
  countLimit?: number;
  /** CPUs to read per-CPU values for (default: the accessor's `possibleCpus`). */
  numCpus?: number;
  /** Only maps for which this returns true. */
  filter?: (map: BpfMapInfo) => boolean;
  /** vmlinux BTF, the base for kernel-module (split) BTF objects. */
  kernelBtf?: Btf;
  /** Called before each map is read (progress lines for long dumps). */
  onMap?: (index: number, total: number, map: BpfMapInfo) => void;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function message(error: unknown): string {
  return error instanceof Error
    ? `${error.name}: ${error.message}`
    : String(error);
}

function releaseOf(accessor: BpfMapAccessor): string {
  try {
    return accessor.kernelRelease;
  } catch (error) {
    return `unknown (${message(error)})`;
  }
}

function cpusOf(accessor: BpfMapAccessor): number {
  try {
    return accessor.possibleCpus;
  } catch {
    return 1;
  }
}

const HASH_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.LRU_HASH,
]);
const PERCPU_HASH_TYPES: ReadonlySet<number> = new Set([
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

/** Renders bytes by BTF type, or hex when there is no type. */
class Typer {
  readonly btf: Btf | undefined;
  constructor(btf: Btf | undefined) {
    this.btf = btf;
  }
  render(typeId: number, bytes: Uint8Array): RenderedValue {
    if (!this.btf || typeId === 0) return hex(bytes);
    return renderValue(this.btf, typeId, bytes);
  }
}

function isGlobalData(map: BpfMapInfo, btf: Btf | undefined): boolean {
  if (map.type !== MapType.ARRAY || map.maxEntries !== 1) return false;
  if (btf && map.btfValueTypeId !== 0) {
    return btf.kindOf(btf.resolve(map.btfValueTypeId)) === BtfKind.DATASEC;
  }
  return /\.(bss|data|rodata|kconfig)/.test(map.name);
}

class MapDumper {
  #accessor: BpfMapAccessor;
  #limit: number;
  #countLimit: number;
  #numCpus: number;
  #kernelBtf: Btf | undefined;

  constructor(
    accessor: BpfMapAccessor,
    limit: number,
    countLimit: number,
    numCpus: number,
    kernelBtf: Btf | undefined,
  ) {
    this.#accessor = accessor;
    this.#limit = limit;
    this.#countLimit = countLimit;
    this.#numCpus = numCpus;
    this.#kernelBtf = kernelBtf;
  }

  dump(map: BpfMapInfo): MapDump {
    const out: MapDump = {
      id: map.id,
      name: map.name,
      type: map.type,
      typeName: String(mapTypeName(map.type)),
      keySize: map.keySize,
      valueSize: map.valueSize,
      maxEntries: map.maxEntries,
      flags: map.flags,
      btfId: map.btfId,
      frozen: map.frozen,
      kind: "unsupported",
      entries: [],
      omittedEntries: 0,
      notes: [],
      errors: [],
    };
    if (map.fullName) out.fullName = map.fullName;
    let btf: Btf | undefined;
    try {
      btf = this.#loadBtf(map);
    } catch (error) {
      out.errors.push(`Cannot load BTF ${map.btfId}: ${message(error)}`);
    }
    if (btf && !out.fullName) {
      try {
        const full = recoverFullMapName(
          btf,
          map.name,
          map.btfKeyTypeId,
          map.btfValueTypeId,
          {
            mapType: map.type,
            maxEntries: map.maxEntries,
          },
        );
        if (full && full !== map.name) out.fullName = full;
      } catch (error) {
        out.errors.push(`Cannot recover the full name: ${message(error)}`);
      }
    }
    try {
      this.#contents(map, new Typer(btf), out);
    } catch (error) {
      out.errors.push(`Cannot read contents: ${message(error)}`);
    }
    return out;
  }

  #loadBtf(map: BpfMapInfo): Btf | undefined {
    if (map.btfId === 0) return undefined;
    const bytes = this.#accessor.loadProgramBtfBytes(map);
    if (!bytes) return undefined;
    try {
      return Btf.parse(bytes);
    } catch (error) {
      // A kernel module's BTF is split on vmlinux.
      if (this.#kernelBtf) return Btf.parse(bytes, { base: this.#kernelBtf });
      throw error;
    }
  }

  /** Renders one entry, keeping a failure as an entry-level error note. */
  #push(out: MapDump, make: () => DumpEntry): void {
    try {
      out.entries.push(make());
    } catch (error) {
      out.errors.push(
        `Cannot render entry ${out.entries.length}: ${message(error)}`,
      );
    }
  }

  #contents(map: BpfMapInfo, typer: Typer, out: MapDump): void {
    const accessor = this.#accessor;
    const limit = this.#limit;
    if (isGlobalData(map, typer.btf)) {
      out.kind = "global-data";
      const bytes = accessor.readValue(map, 0, map.valueSize);
      if (!bytes) {
        out.notes.push("The value could not be read");
        return;
      }
      const btf = typer.btf;
      if (!btf || map.btfValueTypeId === 0) {
        out.globals = [{ name: "(no BTF)", value: hex(bytes) }];
        return;
      }
      out.globals = [];
      for (
        const variable of btf.datasecVariables(btf.resolve(map.btfValueTypeId))
      ) {
        try {
          out.globals.push({
            name: variable.name,
            value: renderValue(
              btf,
              variable.type,
              bytes.subarray(variable.offset, variable.offset + variable.size),
            ),
          });
        } catch (error) {
          out.errors.push(`Cannot render ${variable.name}: ${message(error)}`);
        }
      }
      return;
    }
    switch (map.type) {
      case MapType.ARRAY: {
        out.kind = "array";
        const shown = Math.min(map.maxEntries, limit);
        for (let i = 0; i < shown; i++) {
          const value = accessor.readArray(map, i);
          if (!value) continue;
          const key = new Uint8Array(new Uint32Array([i]).buffer);
          this.#push(out, () => ({
            key: typer.btf && map.btfKeyTypeId
              ? typer.render(map.btfKeyTypeId, key)
              : i,
            value: typer.render(map.btfValueTypeId, value),
          }));
        }
        out.omittedEntries = map.maxEntries - shown;
        return;
      }
      case MapType.PERCPU_ARRAY: {
        out.kind = "percpu-array";
        const shown = Math.min(map.maxEntries, limit);
        for (let i = 0; i < shown; i++) {
          const values = accessor.readPercpuArray(map, i, this.#numCpus);
          if (!values) continue;
          const key = new Uint8Array(new Uint32Array([i]).buffer);
          this.#push(out, () => ({
            key: typer.btf && map.btfKeyTypeId
              ? typer.render(map.btfKeyTypeId, key)
              : i,
            values: this.#percpu(typer, map, values),
          }));
        }
        out.omittedEntries = map.maxEntries - shown;
        return;
      }
      case MapType.ARENA: {
        out.kind = "arena";
        const pages = accessor.readArenaPages(map);
        out.arena = {
          presentPages: pages.pages.length,
          totalPages: pages.totalPages,
          pageIndexes: pages.pages.slice(0, limit).map((p) => p.index),
        };
        out.omittedEntries = Math.max(0, pages.pages.length - limit);
        out.notes.push(...pages.notes);
        return;
      }
    }
    if (HASH_TYPES.has(map.type)) {
      out.kind = "hash";
      this.#bounded(out, accessor.iterHashMap(map), (entry) => ({
        key: typer.render(map.btfKeyTypeId, entry.key),
        value: typer.render(map.btfValueTypeId, entry.value),
      }));
    } else if (PERCPU_HASH_TYPES.has(map.type)) {
      out.kind = "percpu-hash";
      this.#bounded(
        out,
        accessor.iterPercpuHashMap(map, this.#numCpus),
        (entry) => ({
          key: typer.render(map.btfKeyTypeId, entry.key),
          values: this.#percpu(typer, map, entry.values),
        }),
      );
    } else if (LOCAL_STORAGE_MAP_TYPES.has(map.type)) {
      out.kind = "local-storage";
      this.#bounded(out, accessor.iterTaskStorage(map), (entry) => ({
        owner: entry.owner,
        key: hex(entry.key),
        value: typer.render(map.btfValueTypeId, entry.value),
      }));
    } else {
      out.notes.push(
        `Contents of ${
          mapTypeName(map.type)
        } maps are not read by the failure dump`,
      );
    }
  }

  #percpu(
    typer: Typer,
    map: BpfMapInfo,
    values: readonly (Uint8Array | null)[],
  ): PercpuRenderedValue[] {
    if (typer.btf && map.btfValueTypeId) {
      return renderPercpuValues(typer.btf, map.btfValueTypeId, values);
    }
    const out: PercpuRenderedValue[] = [];
    values.forEach((bytes, cpu) => {
      if (bytes) out.push({ cpu, value: hex(bytes) });
    });
    return out;
  }

  #bounded<T>(
    out: MapDump,
    items: Iterable<T>,
    make: (item: T) => DumpEntry,
  ): void {
    let seen = 0;
    for (const item of items) {
      if (seen < this.#limit) this.#push(out, () => make(item));
      seen++;
      if (seen >= this.#limit + this.#countLimit) {
        out.notes.push(`Stopped counting after ${seen} entries`);
        break;
      }
    }
    out.omittedEntries = Math.max(0, seen - this.#limit);
  }
}

/**
 * Reads every map through `accessor` (only its read-only interface, so the
 * live kernel and a frozen guest's memory give the same report) and builds
 * a {@linkcode FailureDumpReport}: each map's info, its full name when BTF
 * recovers it, and its contents rendered by BTF, at most `entryLimit`
 * entries per map with the number left out. A map that cannot be read gets
 * its error in `errors` and the report goes on.
 *
 * @param accessor the data source
 * @param options source description, kernel release, limits, CPU count
 * @returns the report
 *
 * @example Dump the live kernel's maps after a failed test
 * ```ts ignore
 * import { BpfSyscallAccessor } from "../accessor/syscall.ts";
 * import { dumpState, reportToText } from "./mod.ts";
 * const report = dumpState(new BpfSyscallAccessor(), { entryLimit: 16 });
 * console.error(reportToText(report));
 * ```
 */
export function dumpState(
  accessor: BpfMapAccessor,
  options: DumpStateOptions = {},
): FailureDumpReport {
  const entryLimit = Math.max(0, options.entryLimit ?? 64);
  const report: FailureDumpReport = {
    schema: FAILURE_DUMP_SCHEMA,
    takenAt: (options.takenAt ?? new Date()).toISOString(),
    source: options.source ?? "live kernel",
    kernelRelease: options.kernelRelease ?? releaseOf(accessor),
    entryLimit,
    maps: [],
    errors: [],
  };
  let maps: BpfMapInfo[];
  try {
    maps = accessor.maps();
  } catch (error) {
    report.errors.push(`Cannot list maps: ${message(error)}`);
    return report;
  }
  const dumper = new MapDumper(
    accessor,
    entryLimit,
    Math.max(0, options.countLimit ?? 100_000),
    options.numCpus ?? cpusOf(accessor),
    options.kernelBtf,
  );
  const selected = options.filter ? maps.filter(options.filter) : maps;
  selected.forEach((map, index) => {
    options.onMap?.(index, selected.length, map);
    report.maps.push(dumper.dump(map));
  });
  return report;
}
