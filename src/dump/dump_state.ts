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
import {
  type ArenaFollowOptions,
  type ArenaPointers,
  ArenaView,
  followArenaPointers,
} from "./arena.ts";
import { sdtLayouts } from "./sdt.ts";
import { BtfKind } from "../btf/kind.ts";
import { recoverFullMapName } from "../btf/map_name.ts";
import {
  type RenderedValue,
  renderPercpuValues,
  renderValue,
} from "../btf/render.ts";
import type { StackFrame, TypeDump } from "../accessor/maptypes/mod.ts";
import type { Slot } from "../accessor/maptypes/fd_slots.ts";
import {
  Errno,
  LOCAL_STORAGE_MAP_TYPES,
  MapType,
  mapTypeName,
} from "../sys/constants.ts";
import type { PercpuRenderedValue } from "../btf/render.ts";
import {
  type DumpEntry,
  type DumpSlotObject,
  type DumpStackFrame,
  FAILURE_DUMP_SCHEMA,
  type FailureDumpHeader,
  type FailureDumpReport,
  type FailureDumpSink,
  type MapDumpHead,
  type MapDumpKind,
  type MapDumpTail,
} from "./report.ts";
import {
  gatherScheduler,
  mapRoles,
  type SchedulerGatherOptions,
  type SectionUnavailable,
} from "./scheduler.ts";
import type { BpfProgramInfo } from "../accessor/types.ts";

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
  /**
   * Follow arena pointers in values and globals into the arenas' pages and
   * render what they point to (entries' and globals' `arena`); `true` for
   * the default limits. Every arena is read once, before the first map.
   */
  followArena?: boolean | ArenaFollowOptions;
  /** Options for the scheduler sections (where sched_ext's sysfs is). */
  scheduler?: SchedulerGatherOptions;
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
/**
 * Maps listed by key through `iterEntryBatches` (values as raw bytes) when
 * the accessor has no type reader for them: the LPM trie and cgroup storage
 * always, the others only on such a backend.
 */
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

/** How a dump follows arena pointers, when it does. */
interface ArenaFollowing {
  view: ArenaView;
  options: ArenaFollowOptions;
  /** Every listed map (scx_sdt's element size is in the program's `.bss`). */
  maps: readonly BpfMapInfo[];
}

/** Renders bytes by BTF type, or hex when there is no type. */
class Typer {
  readonly btf: Btf | undefined;
  readonly #arenas: ArenaFollowing | undefined;
  constructor(btf: Btf | undefined, arenas?: ArenaFollowing) {
    this.btf = btf;
    this.#arenas = arenas;
  }
  render(typeId: number, bytes: Uint8Array): RenderedValue {
    if (!this.btf || typeId === 0) return hex(bytes);
    return renderValue(this.btf, typeId, bytes);
  }
  /** `{arena}` to spread into an entry when the value holds arena pointers. */
  arena(typeId: number, bytes: Uint8Array): { arena?: ArenaPointers } {
    if (!this.#arenas || !this.btf || typeId === 0) return {};
    const found = followArenaPointers(
      this.btf,
      typeId,
      bytes,
      this.#arenas.view,
      this.#arenas.options,
    );
    return found.pointees.length ? { arena: found } : {};
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
  #arenas: ArenaFollowing | undefined;
  #roles: ReadonlyMap<number, "active" | "outgoing">;

  constructor(
    accessor: BpfMapAccessor,
    limit: number,
    countLimit: number,
    numCpus: number,
    kernelBtf: Btf | undefined,
    arenas: ArenaFollowing | undefined,
    roles: ReadonlyMap<number, "active" | "outgoing">,
  ) {
    this.#roles = roles;
    this.#accessor = accessor;
    this.#limit = limit;
    this.#countLimit = countLimit;
    this.#numCpus = numCpus;
    this.#kernelBtf = kernelBtf;
    this.#arenas = arenas;
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
    // The type readers return their whole result before anything is
    // written, so the kind and the reader's summary can lead the map. Maps
    // the keyed paths read never get here: their readers would return null.
    let typed: TypeDump | null = null;
    let typedFailed = false;
    if (kind === "keyed" || kind === "unsupported") {
      try {
        const result = this.#accessor.readTypeDump(map);
        // "keyed" is an inner map's tag; a top-level map never carries it.
        if (result !== null && result.reader !== "keyed") {
          typed = result;
          kind = READER_KINDS[result.reader];
        }
      } catch (error) {
        // No second try through the keyed path: it would fail on the same
        // map, or report per-slot errors for what the reader already refused.
        tail.errors.push(`Cannot read contents: ${message(error)}`);
        typedFailed = true;
        kind = TYPE_READER_KINDS.get(map.type) ?? kind;
      }
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
      ...(this.#roles.has(map.id) ? { role: this.#roles.get(map.id)! } : {}),
      kind,
      ...(typed ? typedHead(typed) : {}),
    });
    const emitter = new EntryEmitter(sink, tail);
    const typer = new Typer(btf, this.#arenasFor(map, btf));
    try {
      if (typed) this.#typed(map, typed, typer, tail, emitter);
      else if (!typedFailed) this.#contents(map, kind, typer, tail, emitter);
    } catch (error) {
      tail.errors.push(`Cannot read contents: ${message(error)}`);
    }
    sink.mapEnd(tail);
    return { tail, unreadable: emitter.unreadable };
  }

  /** Entries and notes from a type reader's result, bounded by the entry limit. */
  #typed(
    map: BpfMapInfo,
    typed: TypeDump,
    typer: Typer,
    out: MapDumpTail,
    emit: EntryEmitter,
  ): void {
    const limit = this.#limit;
    switch (typed.reader) {
      case "slots":
        this.#slots(map, typed.slots.slots, typer, out, emit);
        return;
      case "maps_of_maps":
        this.#slots(map, typed.mapsOfMaps.slots, typer, out, emit);
        return;
      case "ringbuf": {
        const ring = typed.ringbuf;
        const shown = Math.min(ring.count, limit);
        for (let i = 0; i < shown; i++) {
          emit.push(() => {
            const record = ring.record(i);
            return {
              key: record.position,
              value: hex(record.data),
              length: record.length,
              ...(record.busy ? { busy: true } : {}),
              ...(record.discarded ? { discarded: true } : {}),
            };
          });
        }
        out.omittedEntries = ring.count - shown;
        // Positions out of bounds or a cut record: part of the ring is not
        // in the report, which is lost data, not a fact about the type.
        for (const problem of ring.problems) {
          out.errors.push(`Ring buffer: ${problem}`);
        }
        return;
      }
      case "queue": {
        const head = typed.queue.head;
        const elements = typed.queue.elements;
        if (elements) {
          // guest memory shows every element: the head, then pop order
          const shown = Math.min(elements.length, limit);
          for (let i = 0; i < shown; i++) {
            const element = elements[i]!;
            emit.push(() => ({
              key: i === 0 ? "head" : i,
              value: typer.render(map.btfValueTypeId, element),
            }));
          }
          out.omittedEntries = elements.length - shown;
          out.notes.push(capitalized(typed.queue.note));
          return;
        }
        if (head && limit > 0) {
          emit.push(() => ({
            key: "head",
            value: typer.render(map.btfValueTypeId, head),
          }));
        }
        out.omittedEntries = head && limit === 0 ? 1 : 0;
        out.notes.push(capitalized(typed.queue.note));
        return;
      }
      case "bloom":
        out.notes.push(capitalized(typed.bloom.note));
        if (typed.bloom.bits !== undefined) {
          out.notes.push(
            `${typed.bloom.bitsSet} of ${typed.bloom.bits} bits set (${
              (100 * (typed.bloom.bitsSet ?? 0) / typed.bloom.bits).toFixed(2)
            }% full)`,
          );
        }
        return;
      case "stack_trace": {
        const stacks = typed.stacks;
        const total = stacks.stacks.length + stacks.errors.length;
        let shown = 0;
        for (const stack of stacks.stacks) {
          if (shown >= limit) break;
          emit.push(() => ({
            key: stack.id,
            frames: stack.frames.map(frameOf),
          }));
          shown++;
        }
        for (const failed of stacks.errors) {
          if (shown >= limit) break;
          emit.push(() => ({ key: failed.id, error: failed.error }));
          shown++;
        }
        out.omittedEntries = total - shown;
        return;
      }
      case "struct_ops": {
        const members = typed.structOps.members;
        const shown = Math.min(members.length, limit);
        for (const member of members.slice(0, shown)) {
          emit.push(() =>
            member.kind === "prog"
              ? {
                key: member.name,
                object: {
                  progId: member.progId ?? 0,
                  ...(member.progName !== undefined
                    ? { progName: member.progName }
                    : {}),
                },
              }
              : { key: member.name, value: member.value ?? null }
          );
        }
        out.omittedEntries = members.length - shown;
        return;
      }
      case "unreadable":
        out.notes.push(capitalized(typed.unreadable.reason));
        return;
      case "keyed":
        // Filtered out before the map started; kept for exhaustiveness.
        return;
    }
  }

  /**
   * Populated slots as entries. Slots the kernel never shows for this type
   * become one note: that is how the kernel works, not data the dump lost.
   */
  #slots(
    map: BpfMapInfo,
    slots: readonly (Slot & { innerMapId?: number })[],
    typer: Typer,
    out: MapDumpTail,
    emit: EntryEmitter,
  ): void {
    let seen = 0;
    let hidden = 0;
    let hiddenError = "";
    for (const slot of slots) {
      if (slot.status === "empty") continue;
      if (slot.status === "error" && neverShown(map, slot.errno)) {
        hidden++;
        hiddenError ||= slot.error ?? `errno ${slot.errno}`;
        continue;
      }
      if (seen < this.#limit) {
        emit.push(() => {
          const key = slotKey(map, typer, slot.key);
          if (slot.status !== "value" || !slot.value) {
            return { key, error: slot.error ?? `errno ${slot.errno}` };
          }
          const object = objectOf(slot);
          return {
            key,
            value: typer.render(map.btfValueTypeId, slot.value),
            ...(object ? { object } : {}),
          };
        });
      }
      seen++;
    }
    out.omittedEntries = Math.max(0, seen - this.#limit);
    if (hidden > 0) {
      out.notes.push(
        `The kernel does not hand ${
          mapTypeName(map.type)
        } values to user space (a lookup answers "${hiddenError}"): ${hidden} slot${
          hidden === 1 ? "" : "s"
        } listed, none readable`,
      );
    }
  }

  /** The arena following for `map`'s values, with its program's declared-only layouts. */
  #arenasFor(
    map: BpfMapInfo,
    btf: Btf | undefined,
  ): ArenaFollowing | undefined {
    const arenas = this.#arenas;
    if (!arenas || !btf || arenas.view.empty) return undefined;
    const declared = sdtLayouts(this.#accessor, arenas.maps, btf, map.btfId);
    return declared
      ? { ...arenas, options: { declared, ...arenas.options } }
      : arenas;
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
            const varBytes = bytes.subarray(
              variable.offset,
              variable.offset + variable.size,
            );
            out.globals.push({
              name: variable.name,
              value: renderValue(btf, variable.type, varBytes),
              ...typer.arena(variable.type, varBytes),
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
            ...typer.arena(map.btfValueTypeId, value),
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
        // Already read when arena pointers are followed: read once.
        const pages = this.#arenas?.view.pagesOf(map.id) ??
          accessor.readArenaPages(map);
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
          ...typer.arena(map.btfValueTypeId, entry.value),
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
          ...typer.arena(map.btfValueTypeId, entry.value),
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
                ...typer.arena(map.btfValueTypeId, entry.value),
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

/** The report kind of each type reader's result. */
const READER_KINDS:
  & Record<
    Exclude<TypeDump["reader"], "keyed">,
    MapDumpKind
  >
  & { keyed: MapDumpKind } = {
    slots: "slots",
    "maps_of_maps": "maps-of-maps",
    ringbuf: "ringbuf",
    queue: "queue",
    bloom: "bloom",
    "stack_trace": "stack-trace",
    "struct_ops": "struct-ops",
    unreadable: "unreadable",
    keyed: "keyed",
  };

/** The kind a type's reader would have given, for a map whose read threw. */
const TYPE_READER_KINDS: ReadonlyMap<number, MapDumpKind> = new Map([
  [MapType.PROG_ARRAY, "slots"],
  [MapType.PERF_EVENT_ARRAY, "slots"],
  [MapType.CGROUP_ARRAY, "slots"],
  [MapType.DEVMAP, "slots"],
  [MapType.DEVMAP_HASH, "slots"],
  [MapType.CPUMAP, "slots"],
  [MapType.XSKMAP, "slots"],
  [MapType.SOCKMAP, "slots"],
  [MapType.SOCKHASH, "slots"],
  [MapType.REUSEPORT_SOCKARRAY, "slots"],
  [MapType.ARRAY_OF_MAPS, "maps-of-maps"],
  [MapType.HASH_OF_MAPS, "maps-of-maps"],
  [MapType.RINGBUF, "ringbuf"],
  [MapType.USER_RINGBUF, "ringbuf"],
  [MapType.QUEUE, "queue"],
  [MapType.STACK, "queue"],
  [MapType.BLOOM_FILTER, "bloom"],
  [MapType.STACK_TRACE, "stack-trace"],
  [MapType.STRUCT_OPS, "struct-ops"],
]);

/** Maps keyed by a u32 index: without BTF their key is shown as that number. */
const INDEXED_TYPES: ReadonlySet<number> = new Set([
  MapType.PROG_ARRAY,
  MapType.PERF_EVENT_ARRAY,
  MapType.CGROUP_ARRAY,
  MapType.DEVMAP,
  MapType.CPUMAP,
  MapType.XSKMAP,
  MapType.SOCKMAP,
  MapType.REUSEPORT_SOCKARRAY,
  MapType.ARRAY_OF_MAPS,
]);

/**
 * Whether a failed lookup is one the kernel gives for every slot of this
 * type (so nothing was lost): perf-event and cgroup arrays answer ENOTSUPP,
 * xskmaps EOPNOTSUPP, socket maps with 4-byte values ENOSPC (only an
 * 8-byte value can hold the cookie).
 */
function neverShown(map: BpfMapInfo, errno: number | undefined): boolean {
  switch (map.type) {
    case MapType.PERF_EVENT_ARRAY:
    case MapType.CGROUP_ARRAY:
      return errno === Errno.ENOTSUPP;
    case MapType.XSKMAP:
      return errno === Errno.EOPNOTSUPP || errno === Errno.ENOTSUPP;
    case MapType.SOCKMAP:
    case MapType.SOCKHASH:
    case MapType.REUSEPORT_SOCKARRAY:
      return map.valueSize !== 8 && errno === Errno.ENOSPC;
    default:
      return false;
  }
}

function slotKey(
  map: BpfMapInfo,
  typer: Typer,
  key: Uint8Array,
): RenderedValue {
  if (typer.btf && map.btfKeyTypeId) {
    return typer.render(map.btfKeyTypeId, key);
  }
  if (INDEXED_TYPES.has(map.type) && key.byteLength === 4) {
    return new DataView(key.buffer, key.byteOffset, 4).getUint32(0, true);
  }
  return hex(key);
}

function objectOf(
  slot: Slot & { innerMapId?: number },
): DumpSlotObject | undefined {
  const object: DumpSlotObject = {};
  const from = slot.object ?? {};
  if (from.progId !== undefined) object.progId = from.progId;
  if (from.progName !== undefined) object.progName = from.progName;
  if (from.ifindex !== undefined) object.ifindex = from.ifindex;
  if (from.qsize !== undefined) object.qsize = from.qsize;
  if (from.cookie !== undefined) object.cookie = from.cookie;
  const inner = from.innerMapId ?? slot.innerMapId;
  if (inner !== undefined) object.innerMapId = inner;
  return Object.keys(object).length > 0 ? object : undefined;
}

function frameOf(frame: StackFrame): DumpStackFrame {
  return {
    ip: `0x${frame.ip.toString(16).padStart(16, "0")}`,
    ...(frame.symbol !== undefined ? { symbol: frame.symbol } : {}),
    ...(frame.buildId !== undefined ? { buildId: frame.buildId } : {}),
    ...(frame.buildIdStatus !== undefined
      ? { buildIdStatus: frame.buildIdStatus }
      : {}),
  };
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The reader's summary, written with the map's info before its entries. */
function typedHead(typed: TypeDump): Partial<MapDumpHead> {
  switch (typed.reader) {
    case "ringbuf": {
      const ring = typed.ringbuf;
      return {
        ringbuf: {
          capacity: ring.capacity,
          consumerPos: ring.consumerPos,
          producerPos: ring.producerPos,
          pendingBytes: ring.pendingBytes,
          records: ring.count,
        },
      };
    }
    case "queue":
      return {
        queue: { kind: typed.queue.kind, maxEntries: typed.queue.maxEntries },
      };
    case "bloom":
      return {
        bloom: {
          // map_extra 0 means the kernel's default of 5 hash functions.
          hashes: typed.bloom.hashes || 5,
          valueSize: typed.bloom.valueSize,
        },
      };
    case "stack_trace":
      return { stackTrace: { buildId: typed.stacks.buildId } };
    case "struct_ops":
      return {
        structOps: {
          structName: typed.structOps.structName,
          state: typed.structOps.state,
          refcnt: typed.structOps.refcnt,
        },
      };
    default:
      return {};
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
  // The scheduler and program sections are small: gathered first, so the
  // maps can be marked by role as they stream.
  const scheduler = gatherScheduler(accessor, options.scheduler ?? {});
  const header: FailureDumpHeader = {
    schema: FAILURE_DUMP_SCHEMA,
    takenAt: (options.takenAt ?? new Date()).toISOString(),
    source: options.source ?? "live kernel",
    kernelRelease: options.kernelRelease ?? releaseOf(accessor),
    entryLimit,
    scheduler,
    programs: programsOf(accessor),
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
  // Arena pointers may point into an arena the filter leaves out: all
  // listed maps are candidates.
  const arenas = options.followArena
    ? {
      view: ArenaView.read(accessor, maps),
      options: options.followArena === true ? {} : options.followArena,
      maps,
    }
    : undefined;
  const dumper = new MapDumper(
    accessor,
    entryLimit,
    Math.max(0, options.countLimit ?? 100_000),
    options.numCpus ?? cpusOf(accessor),
    options.kernelBtf,
    arenas,
    mapRoles(scheduler),
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
  const problems = [...(arenas?.view.problems ?? []), ...problemsOf(accessor)];
  summary.skipped.push(...problems);
  if (problems.length > 0) sink.errors(problems);
  sink.end();
  return summary;
}

function programsOf(
  accessor: BpfMapAccessor,
): BpfProgramInfo[] | SectionUnavailable {
  try {
    return accessor.programs();
  } catch (error) {
    return { unavailable: message(error) };
  }
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
