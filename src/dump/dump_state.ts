/**
 * Reads a failure dump from any {@linkcode BpfMapAccessor}: every map, in
 * order, into a {@linkcode FailureDumpSink} (streamed) or one report object.
 *
 * @module
 */

import type {
  BpfMapAccessor,
  BpfMapInfo,
  EntryBatch,
} from "../accessor/types.ts";
import { Btf } from "../btf/btf.ts";
import { describeMap } from "../errors.ts";
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
  type FailureDumpHeader,
  type FailureDumpReport,
  type FailureDumpSink,
  type MapDumpHead,
  type MapDumpKind,
  type MapDumpTail,
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

/** How a failure dump went, beyond what its report says. */
export interface FailureDumpSummary {
  /** Why no map could be listed, when that failed (the report is then empty). */
  listError?: string;
  /**
   * One line per thing the report had to leave out: a map's read errors and
   * what the accessor recorded in `problems()`.
   */
  skipped: string[];
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
/** Other maps `iterEntryBatches` lists by key: values shown as raw bytes. */
const OTHER_KEYED_TYPES: ReadonlySet<number> = new Set([
  MapType.STACK_TRACE,
  MapType.LPM_TRIE,
  MapType.ARRAY_OF_MAPS,
  MapType.HASH_OF_MAPS,
  MapType.PROG_ARRAY,
  MapType.PERF_EVENT_ARRAY,
  MapType.CGROUP_ARRAY,
  MapType.DEVMAP,
  MapType.DEVMAP_HASH,
  MapType.CPUMAP,
  MapType.XSKMAP,
  MapType.SOCKMAP,
  MapType.SOCKHASH,
  MapType.REUSEPORT_SOCKARRAY,
  MapType.CGROUP_STORAGE,
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

  /** Streams one map into `sink`; a map that cannot be read gets its errors, never a throw. */
  dump(
    map: BpfMapInfo,
    sink: FailureDumpSink,
  ): { tail: MapDumpTail; unreadable: number } {
    const tail: MapDumpTail = { omittedEntries: 0, notes: [], errors: [] };
    // The kernel name is the full name unless it was truncated.
    let fullName = map.fullName && map.fullName !== map.name
      ? map.fullName
      : undefined;
    let btf: Btf | undefined;
    try {
      btf = this.#loadBtf(map);
    } catch (error) {
      tail.errors.push(`Cannot load BTF ${map.btfId}: ${message(error)}`);
    }
    if (btf && fullName === undefined) {
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
        if (full && full !== map.name) fullName = full;
      } catch (error) {
        tail.errors.push(`Cannot recover the full name: ${message(error)}`);
      }
    }
    let kind: MapDumpKind = "unsupported";
    try {
      kind = kindOf(map, btf);
    } catch (error) {
      tail.errors.push(`Cannot tell the map's layout: ${message(error)}`);
    }
    sink.mapStart({
      id: map.id,
      name: map.name,
      ...(fullName !== undefined ? { fullName } : {}),
      type: map.type,
      typeName: String(mapTypeName(map.type)),
      keySize: map.keySize,
      valueSize: map.valueSize,
      maxEntries: map.maxEntries,
      flags: map.flags,
      btfId: map.btfId,
      frozen: map.frozen,
      kind,
    });
    const emitter = new EntryEmitter(sink, tail);
    try {
      this.#contents(map, kind, new Typer(btf), tail, emitter);
    } catch (error) {
      tail.errors.push(`Cannot read contents: ${message(error)}`);
    }
    sink.mapEnd(tail);
    return { tail, unreadable: emitter.unreadable };
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

  #contents(
    map: BpfMapInfo,
    kind: MapDumpKind,
    typer: Typer,
    out: MapDumpTail,
    emit: EntryEmitter,
  ): void {
    const accessor = this.#accessor;
    const limit = this.#limit;
    switch (kind) {
      case "global-data": {
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
          const variable of btf.datasecVariables(
            btf.resolve(map.btfValueTypeId),
          )
        ) {
          try {
            out.globals.push({
              name: variable.name,
              value: renderValue(
                btf,
                variable.type,
                bytes.subarray(
                  variable.offset,
                  variable.offset + variable.size,
                ),
              ),
            });
          } catch (error) {
            out.errors.push(
              `Cannot render ${variable.name}: ${message(error)}`,
            );
          }
        }
        return;
      }
      case "array": {
        const shown = Math.min(map.maxEntries, limit);
        for (let i = 0; i < shown; i++) {
          const value = accessor.readArray(map, i);
          if (!value) continue;
          const key = new Uint8Array(new Uint32Array([i]).buffer);
          emit.push(() => ({
            key: typer.btf && map.btfKeyTypeId
              ? typer.render(map.btfKeyTypeId, key)
              : i,
            value: typer.render(map.btfValueTypeId, value),
          }));
        }
        out.omittedEntries = map.maxEntries - shown;
        return;
      }
      case "percpu-array": {
        const shown = Math.min(map.maxEntries, limit);
        for (let i = 0; i < shown; i++) {
          const values = accessor.readPercpuArray(map, i, this.#numCpus);
          if (!values) continue;
          const key = new Uint8Array(new Uint32Array([i]).buffer);
          emit.push(() => ({
            key: typer.btf && map.btfKeyTypeId
              ? typer.render(map.btfKeyTypeId, key)
              : i,
            values: this.#percpu(typer, map, values),
          }));
        }
        out.omittedEntries = map.maxEntries - shown;
        return;
      }
      case "arena": {
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
      case "hash":
        this.#bounded(out, emit, accessor.iterHashMap(map), (entry) => ({
          key: typer.render(map.btfKeyTypeId, entry.key),
          value: typer.render(map.btfValueTypeId, entry.value),
        }));
        return;
      case "percpu-hash":
        this.#bounded(
          out,
          emit,
          accessor.iterPercpuHashMap(map, this.#numCpus),
          (entry) => ({
            key: typer.render(map.btfKeyTypeId, entry.key),
            values: this.#percpu(typer, map, entry.values),
          }),
        );
        return;
      case "local-storage":
        this.#bounded(out, emit, accessor.iterTaskStorage(map), (entry) => ({
          owner: entry.owner,
          key: hex(entry.key),
          value: typer.render(map.btfValueTypeId, entry.value),
        }));
        return;
      case "keyed":
        this.#bounded(
          out,
          emit,
          batchEntries(accessor.iterEntryBatches(map)),
          (entry) =>
            entry.error === null
              ? {
                key: typer.render(map.btfKeyTypeId, entry.key),
                value: typer.render(map.btfValueTypeId, entry.value),
              }
              : {
                key: typer.render(map.btfKeyTypeId, entry.key),
                error: entry.error,
              },
        );
        return;
      default:
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
    out: MapDumpTail,
    emit: EntryEmitter,
    items: Iterable<T>,
    make: (item: T) => DumpEntry,
  ): void {
    let seen = 0;
    for (const item of items) {
      if (seen < this.#limit) emit.push(() => make(item));
      seen++;
      if (seen >= this.#limit + this.#countLimit) {
        out.notes.push(`Stopped counting after ${seen} entries`);
        break;
      }
    }
    out.omittedEntries = Math.max(0, seen - this.#limit);
  }
}

/** Entries one at a time from batches; the views are valid until the next one. */
function* batchEntries(
  batches: Iterable<EntryBatch>,
): Generator<
  { key: Uint8Array; value: Uint8Array; error: string | null },
  void,
  undefined
> {
  for (const batch of batches) {
    for (let i = 0; i < batch.count; i++) {
      yield {
        key: batch.keys.subarray(i * batch.keySize, (i + 1) * batch.keySize),
        value: batch.values.subarray(
          i * batch.valueStride,
          (i + 1) * batch.valueStride,
        ),
        error: batch.errors?.[i] ?? null,
      };
    }
  }
}

/** How a map's contents are read, decided before reading them. */
function kindOf(map: BpfMapInfo, btf: Btf | undefined): MapDumpKind {
  if (isGlobalData(map, btf)) return "global-data";
  switch (map.type) {
    case MapType.ARRAY:
      return "array";
    case MapType.PERCPU_ARRAY:
      return "percpu-array";
    case MapType.ARENA:
      return "arena";
  }
  if (HASH_TYPES.has(map.type)) return "hash";
  if (PERCPU_HASH_TYPES.has(map.type)) return "percpu-hash";
  if (LOCAL_STORAGE_MAP_TYPES.has(map.type)) return "local-storage";
  if (OTHER_KEYED_TYPES.has(map.type)) return "keyed";
  return "unsupported";
}

/** Hands rendered entries to the sink; a rendering failure becomes the map's error. */
class EntryEmitter {
  readonly #sink: FailureDumpSink;
  readonly #tail: MapDumpTail;
  #count = 0;
  /** Entries shown with an error instead of their value. */
  unreadable = 0;

  constructor(sink: FailureDumpSink, tail: MapDumpTail) {
    this.#sink = sink;
    this.#tail = tail;
  }

  push(make: () => DumpEntry): void {
    let entry: DumpEntry;
    try {
      entry = make();
    } catch (error) {
      this.#tail.errors.push(
        `Cannot render entry ${this.#count}: ${message(error)}`,
      );
      return;
    }
    this.#count++;
    if (entry.error !== undefined) this.unreadable++;
    this.#sink.entry(entry);
  }
}

/**
 * Reads every map through `accessor` (only its read-only interface, so the
 * live kernel and a frozen guest's memory give the same report) and streams
 * the failure dump into `sink`, one map at a time: memory holds one entry,
 * not the report. A map that cannot be read gets its error in its `errors`
 * and the dump goes on; what the accessor had to skip (`problems()`) ends in
 * the report's `errors`.
 *
 * @param accessor the data source
 * @param sink receives the report in order
 * @param options source description, kernel release, limits, CPU count
 * @returns whether the maps could be listed, and what was left out
 */
export function streamFailureDump(
  accessor: BpfMapAccessor,
  sink: FailureDumpSink,
  options: DumpStateOptions = {},
): FailureDumpSummary {
  const entryLimit = Math.max(0, options.entryLimit ?? 64);
  const header: FailureDumpHeader = {
    schema: FAILURE_DUMP_SCHEMA,
    takenAt: (options.takenAt ?? new Date()).toISOString(),
    source: options.source ?? "live kernel",
    kernelRelease: options.kernelRelease ?? releaseOf(accessor),
    entryLimit,
  };
  const summary: FailureDumpSummary = { skipped: [] };
  let maps: BpfMapInfo[];
  try {
    maps = accessor.maps();
  } catch (error) {
    summary.listError = `Cannot list maps: ${message(error)}`;
    sink.start(header, 0);
    sink.errors([summary.listError]);
    sink.end();
    return summary;
  }
  const selected = options.filter ? maps.filter(options.filter) : maps;
  sink.start(header, selected.length);
  const dumper = new MapDumper(
    accessor,
    entryLimit,
    Math.max(0, options.countLimit ?? 100_000),
    options.numCpus ?? cpusOf(accessor),
    options.kernelBtf,
  );
  selected.forEach((map, index) => {
    options.onMap?.(index, selected.length, map);
    const { tail, unreadable } = dumper.dump(map, sink);
    for (const error of tail.errors) {
      summary.skipped.push(`${describeMap(map)}: ${error}`);
    }
    if (unreadable > 0) {
      summary.skipped.push(
        `${describeMap(map)}: ${unreadable} value${
          unreadable === 1 ? "" : "s"
        } could not be read (shown with their error)`,
      );
    }
  });
  const problems = problemsOf(accessor);
  summary.skipped.push(...problems);
  if (problems.length > 0) sink.errors(problems);
  sink.end();
  return summary;
}

function problemsOf(accessor: BpfMapAccessor): string[] {
  try {
    return accessor.problems().map((problem) => problem.message);
  } catch (error) {
    return [`Cannot tell what was skipped: ${message(error)}`];
  }
}

/** Collects a streamed failure dump into one report object. */
class ReportCollector implements FailureDumpSink {
  report: FailureDumpReport | undefined;
  #entries: DumpEntry[] = [];
  #head: MapDumpHead | undefined;

  start(header: FailureDumpHeader): void {
    this.report = { ...header, maps: [], errors: [] };
  }
  errors(errors: readonly string[]): void {
    this.report!.errors.push(...errors);
  }
  mapStart(head: MapDumpHead): void {
    this.#head = head;
    this.#entries = [];
  }
  entry(entry: DumpEntry): void {
    this.#entries.push(entry);
  }
  mapEnd(tail: MapDumpTail): void {
    this.report!.maps.push({ ...this.#head!, entries: this.#entries, ...tail });
  }
  end(): void {}
}

/**
 * Reads every map through `accessor` (only its read-only interface, so the
 * live kernel and a frozen guest's memory give the same report) and builds
 * a {@linkcode FailureDumpReport} in memory: each map's info, its full name
 * when the kernel name is a truncation of it, and its contents rendered by
 * BTF, at most `entryLimit` entries per map with the number left out. A map
 * that cannot be read gets its error in `errors` and the report goes on.
 * For many or large maps, stream instead ({@linkcode streamFailureDump}).
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
  const collector = new ReportCollector();
  streamFailureDump(accessor, collector, options);
  return collector.report!;
}
