/**
 * The failure-dump report: what `dumpState` returns and `reportToJson`
 * writes. The JSON schema is documented field by field here; its `schema`
 * string changes when a field changes meaning.
 *
 * @module
 */

import type { ArenaPointers } from "./arena.ts";
import type { BpfProgramInfo } from "../accessor/types.ts";
import type { PercpuRenderedValue, RenderedValue } from "../btf/render.ts";
import type { SchedulerReport, SectionUnavailable } from "./scheduler.ts";

/**
 * Schema identifier written in every report.
 *
 * - `/3` adds `scheduler` (sections, each its data or `{ unavailable }`:
 *   `active` is the active-scheduler decision; `root`, `events`, `cpus` and
 *   `dsqs` the sched_ext views of `scxViews()`), `programs` (every program
 *   with its run statistics, u64 exact) and each map's `role` (`active` or
 *   `outgoing` where the decision marks it), and with `followArena` an
 *   entry's or global's `arena` (the arena pointers in it, followed).
 *   Maps and entries are otherwise as in `/2`.
 * - `/2` added the per-type kinds (`slots`, `ringbuf`, ..., `struct-ops`).
 */
export const FAILURE_DUMP_SCHEMA = "bpfmap.failure-dump/3";

/**
 * How a map's contents were read (and so which fields its entries use).
 *
 * Read through the accessor's keyed paths:
 * - `global-data`: `.bss`/`.data`/`.rodata`/`.kconfig`: one value, shown as `globals`
 * - `array`, `hash`: `entries` with `key` and `value`
 * - `percpu-array`, `percpu-hash`: `entries` with `key` and `values`
 * - `local-storage`: `entries` with `owner`, `key` and `value`
 * - `arena`: no entries; `arena` summarises the readable pages
 *
 * Read through the type's own reader (`readTypeDump`), schema 2:
 * - `slots`: program/perf-event/cgroup arrays, devmaps, cpumaps, xskmaps,
 *   sockmaps...: one entry per populated slot with `key`, the raw `value`
 *   (hex) and `object` (what the value means: program id and name, ifindex,
 *   cookie...). Empty slots are left out. Slots whose lookup the kernel
 *   never supports for the type (perf_event_array, cgroup_array: ENOTSUPP;
 *   xskmap: EOPNOTSUPP; 4-byte sockmap values: ENOSPC) are no entries: one
 *   note says so, with how many keys were listed. Any other failed lookup is
 *   an entry with `error`.
 * - `maps-of-maps`: as `slots`, `object.innerMapId` the inner map's id (the
 *   inner maps are not read; they are in the report as maps of their own)
 * - `ringbuf`: `ringbuf` summarises positions and counts; one entry per
 *   pending record, oldest first: `key` its position (u64), `value` its data
 *   (hex), `length`, and `busy`/`discarded` when set
 * - `queue`: `queue` says which and its capacity; one entry, key `"head"`,
 *   when the map is not empty; a note says the rest is not readable
 * - `bloom`: no entries; `bloom` gives the hash count and value size, a note
 *   says why nothing is listed
 * - `stack-trace`: one entry per stack: `key` the stack id, `frames`
 * - `struct-ops`: `structOps` names the struct; one entry per member of the
 *   kernel struct, `key` its name, `value` the typed data or `object` the
 *   attached program
 * - `unreadable`: a type bpfmap does not know; one note with its number
 *
 * Fallbacks (a backend whose `readTypeDump` has no reader for the type):
 * - `keyed`: listed by key through `iterEntryBatches`: `entries` with `key`
 *   and `value` (hex), or `error` where the value could not be read
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
  | "slots"
  | "maps-of-maps"
  | "ringbuf"
  | "queue"
  | "bloom"
  | "stack-trace"
  | "struct-ops"
  | "unreadable"
  | "keyed"
  | "unsupported";

/** What a slot's value stands for (kind `slots`, `maps-of-maps`, `struct-ops`). */
export interface DumpSlotObject {
  /** Program id (prog arrays, devmap/cpumap with an 8-byte value, struct_ops members; 0 = none). */
  progId?: number;
  /** That program's name, when it still exists. */
  progName?: string;
  /** Network device index (devmap). */
  ifindex?: number;
  /** Queue size towards the CPU (cpumap). */
  qsize?: number;
  /** Socket cookie (sockmap, sockhash, reuseport array), u64 exact. */
  cookie?: bigint;
  /** Inner map id (maps of maps). */
  innerMapId?: number;
}

/** One frame of a stored stack (kind `stack-trace`). */
export interface DumpStackFrame {
  /**
   * The address as 16 hex digits with `0x` (exact): the instruction pointer,
   * or for a build-id frame of status 1 the offset in the object file.
   */
  ip: string;
  /** `sym+0xoff` for a kernel address the symbol table names. */
  symbol?: string;
  /** Build-id frames: the object's build id as hex. */
  buildId?: string;
  /** Build-id frames: 1 build id + offset, 2 ip only. */
  buildIdStatus?: number;
}

/** A ring buffer's state (kind `ringbuf`). */
export interface DumpRingbuf {
  /** Data area size in bytes. */
  capacity: number;
  /** Consumer position (u64, never wrapped). */
  consumerPos: bigint;
  /** Producer position (u64, never wrapped). */
  producerPos: bigint;
  /** Bytes not yet consumed, headers and padding included. */
  pendingBytes: bigint;
  /** Pending records found (those beyond the entry limit are in `omittedEntries`). */
  records: number;
}

/** A queue or stack (kind `queue`). */
export interface DumpQueue {
  /** `queue` (head = oldest) or `stack` (head = newest). */
  kind: "queue" | "stack";
  /** Capacity; how many elements it holds is not visible. */
  maxEntries: number;
}

/** A bloom filter (kind `bloom`). */
export interface DumpBloom {
  /** Hash functions used (`map_extra`; the kernel's default 5 when it is 0). */
  hashes: number;
  /** Size in bytes of the values tested. */
  valueSize: number;
}

/** A struct_ops map (kind `struct-ops`). */
export interface DumpStructOps {
  /** The kernel struct, e.g. `tcp_congestion_ops`. */
  structName: string;
  /** `common.state` by name, e.g. `BPF_STRUCT_OPS_STATE_INUSE`. */
  state: string;
  /** `common.refcnt`. */
  refcnt: number;
}

/**
 * One entry. `key`/`value` are rendered BTF values when the map has BTF,
 * else lowercase hex strings of the bytes in memory order (`"0a000000"`);
 * array-like maps without BTF have their index as the key. Which other
 * fields appear depends on the map's {@linkcode MapDumpKind}.
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
  /** What a slot's value stands for (slots, maps of maps, struct_ops programs). */
  object?: DumpSlotObject;
  /** Ring buffer records: the data length from the header. */
  length?: number;
  /** Ring buffer records: reserved, not yet submitted (the data may be incomplete); only when set. */
  busy?: boolean;
  /** Ring buffer records: discarded, a consumer skips it; only when set. */
  discarded?: boolean;
  /** Stack traces: the frames, innermost first. */
  frames?: DumpStackFrame[];
  /** Arena pointers in the value, followed (only with `followArena`, only when there are some). */
  arena?: ArenaPointers;
}

/** One global variable of a global-data map. */
export interface DumpGlobal {
  /** Variable name. */
  name: string;
  /** Its rendered value. */
  value: RenderedValue;
  /** Arena pointers in it, followed (only with `followArena`, only when there are some). */
  arena?: ArenaPointers;
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
  /**
   * The map's place in the sched_ext scheduler's group, when the active
   * decision (`scheduler.active`) names it: `active` (the attached
   * scheduler's) or `outgoing` (same name, not used by it: a previous
   * instance's map still held). Absent for every other map.
   */
  role?: "active" | "outgoing";
  /** How the contents were read. */
  kind: MapDumpKind;
  /** Ring buffer state (kind `ringbuf`); written before the records. */
  ringbuf?: DumpRingbuf;
  /** Queue or stack facts (kind `queue`). */
  queue?: DumpQueue;
  /** Bloom filter facts (kind `bloom`). */
  bloom?: DumpBloom;
  /** Whether frames are build-id frames (kind `stack-trace`). */
  stackTrace?: { buildId: boolean };
  /** The struct_ops struct and state (kind `struct-ops`). */
  structOps?: DumpStructOps;
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
  /**
   * The sched_ext scheduler's state, one member per section (see
   * `SCHEDULER_SECTIONS`), each its data or `{ unavailable: "reason" }`;
   * gathered before the maps.
   */
  scheduler: SchedulerReport;
  /**
   * Every BPF program in id order (`BpfProgramInfo`: run time and count
   * exact), or `{ unavailable }` when the source cannot list programs.
   */
  programs: BpfProgramInfo[] | SectionUnavailable;
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
