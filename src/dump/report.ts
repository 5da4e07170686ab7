/**
 * The failure-dump report: what `dumpState` returns and `reportToJson`
 * writes. The JSON schema is documented field by field here; its `schema`
 * string changes when a field changes meaning.
 *
 * @module
 */

import type { PercpuRenderedValue, RenderedValue } from "../btf/render.ts";

/** Schema identifier written in every report. */
export const FAILURE_DUMP_SCHEMA = "bpfmap.failure-dump/1";

/**
 * How a map's contents were read (and so which fields its entries use).
 *
 * - `global-data`: `.bss`/`.data`/`.rodata`/`.kconfig`: one value, shown as `globals`
 * - `array`, `hash`: `entries` with `key` and `value`
 * - `percpu-array`, `percpu-hash`: `entries` with `key` and `values`
 * - `local-storage`: `entries` with `owner`, `key` and `value`
 * - `arena`: no entries; `arena` summarises the readable pages
 * - `keyed`: other maps listed by key (stack traces, map-in-map, program and
 *   perf-event arrays, ...): `entries` with `key` and `value` (hex), or
 *   `error` where the value could not be read
 * - `unsupported`: contents not readable through the accessor; `notes` says why
 */
export type MapDumpKind =
  | "global-data"
  | "array"
  | "hash"
  | "percpu-array"
  | "percpu-hash"
  | "local-storage"
  | "arena"
  | "keyed"
  | "unsupported";

/**
 * One entry. `key`/`value` are rendered BTF values when the map has BTF,
 * else lowercase hex strings of the bytes in memory order (`"0a000000"`).
 */
export interface DumpEntry {
  /** Rendered key, or hex. */
  key: RenderedValue;
  /** Rendered value, or hex (absent for per-CPU maps). */
  value?: RenderedValue;
  /** Per-CPU values (per-CPU maps only; CPUs the kernel lacks left out). */
  values?: PercpuRenderedValue[];
  /** Owner of a local-storage element. */
  owner?: string;
  /** Why the value could not be read (then `value` is absent). */
  error?: string;
}

/** One global variable of a global-data map. */
export interface DumpGlobal {
  /** Variable name. */
  name: string;
  /** Its rendered value. */
  value: RenderedValue;
}

/** Summary of an arena's readable pages. */
export interface DumpArena {
  /** Pages present and read. */
  presentPages: number;
  /** The arena's size in pages. */
  totalPages: number;
  /** Indexes of the present pages (at most the entry limit). */
  pageIndexes: number[];
}

/** One map in the report. */
export interface MapDump {
  /** Kernel map id. */
  id: number;
  /** Kernel name (at most 15 characters). */
  name: string;
  /**
   * Full source name, only when the kernel name is a truncation of it and BTF
   * told us (never equal to `name`).
   */
  fullName?: string;
  /** Map type number. */
  type: number;
  /** bpftool's name of the type (or the number as text when unknown). */
  typeName: string;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes. */
  valueSize: number;
  /** Maximum entries. */
  maxEntries: number;
  /** `BPF_F_*` flags. */
  flags: number;
  /** BTF object id, 0 when none. */
  btfId: number;
  /** Whether the map is frozen. */
  frozen: boolean;
  /** How the contents were read. */
  kind: MapDumpKind;
  /** Entries shown (bounded by the per-map limit). */
  entries: DumpEntry[];
  /** Entries seen but not shown because of the limit (a lower bound when counting stopped early). */
  omittedEntries: number;
  /** Variables of a global-data map, in section order. */
  globals?: DumpGlobal[];
  /** Arena summary. */
  arena?: DumpArena;
  /** Plain statements about what could not be seen. */
  notes: string[];
  /** Errors met while reading this map; the rest of the report is unaffected. */
  errors: string[];
}

/**
 * The state of every BPF map at one moment, for a test failure or a crash
 * report. Build with `dumpState`, write with `reportToJson` / `reportToText`.
 */
export interface FailureDumpReport {
  /** Always {@linkcode FAILURE_DUMP_SCHEMA}. */
  schema: typeof FAILURE_DUMP_SCHEMA;
  /** When the dump was taken (ISO 8601). */
  takenAt: string;
  /** Where the maps came from, e.g. `live kernel` or `guest memory of vm-1`. */
  source: string;
  /** Kernel release of the machine whose maps these are. */
  kernelRelease: string;
  /** The per-map entry limit used. */
  entryLimit: number;
  /** Maps in id order. */
  maps: MapDump[];
  /** Errors not tied to one map (listing the maps failed). */
  errors: string[];
}

/** What is known of a map before its entries are read (written first when streaming). */
export type MapDumpHead = Omit<
  MapDump,
  | "entries"
  | "omittedEntries"
  | "notes"
  | "errors"
  | "globals"
  | "arena"
>;

/** What is known of a map once its entries are read (written after them when streaming). */
export type MapDumpTail = Pick<
  MapDump,
  "omittedEntries" | "notes" | "errors" | "globals" | "arena"
>;

/** The report's fields before its maps. */
export type FailureDumpHeader = Omit<FailureDumpReport, "maps" | "errors">;

/**
 * Receives a failure dump as it is read, in order: `start`, then per map
 * `mapStart`, its `entry` calls and `mapEnd`, then `end`; `errors` (not tied
 * to a map) may come at any point between `start` and `end`. Writers stream
 * the report through one; `dumpState` collects it.
 */
export interface FailureDumpSink {
  /** The header, before any map, with the number of maps that follow. */
  start(header: FailureDumpHeader, mapCount: number): void;
  /** Errors not tied to one map. */
  errors(errors: readonly string[]): void;
  /** A map's description, before its entries. */
  mapStart(head: MapDumpHead): void;
  /** One entry of the current map (shown: within the entry limit). */
  entry(entry: DumpEntry): void;
  /** The rest of the current map, after its entries. */
  mapEnd(tail: MapDumpTail): void;
  /** After the last map. */
  end(): void;
}
