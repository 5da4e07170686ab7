/**
 * Which live reader applies to a map type. The keyed types (hash, array,
 * their per-CPU and LRU forms, LPM trie, local storage, arena) keep the
 * accessor's own paths; every other type has one reader in this folder, one
 * file per family, listed once in {@linkcode LIVE_TYPE_READERS}. Adding a
 * type is one new file and one line there. A type no reader and no keyed
 * path knows (a newer kernel's) is reported unreadable with its number,
 * never a crash.
 *
 * @module
 */

import { MapArgumentError } from "../../errors.ts";
import { MapType, mapTypeName } from "../../sys/constants.ts";
import type { BpfMapAccessor, BpfMapInfo } from "../types.ts";
import { type BloomInfo, bloomInfo } from "./bloom.ts";
import { readSlotsLive, SLOT_TYPES, type SlotDump } from "./fd_slots.ts";
import { KernelSymbols } from "./kallsyms.ts";
import { type MapOfMapsDump, readMapOfMapsLive } from "./map_in_map.ts";
export {
  readStructOpsLive,
  type StructOpsDump,
  type StructOpsMember,
} from "./struct_ops.ts";
import { peekQueueLive, type QueuePeek } from "./queue_stack.ts";
import { readRingbufLive, type RingbufSnapshot } from "./ringbuf.ts";
import { readStackTracesLive, type StackTraceDump } from "./stack_trace.ts";
import { readStructOpsLive, type StructOpsDump } from "./struct_ops.ts";

export { bloomContains } from "./bloom.ts";
export { KernelSymbols } from "./kallsyms.ts";
export {
  parseRingbuf,
  readRingbufLive,
  RingbufReader,
  type RingbufRecord,
  RingbufSnapshot,
} from "./ringbuf.ts";
export { peekQueueLive, type QueuePeek } from "./queue_stack.ts";
export type { BloomInfo } from "./bloom.ts";
export {
  readSlotsLive,
  type Slot,
  type SlotDump,
  type SlotObject,
} from "./fd_slots.ts";
export {
  readStackTracesLive,
  type StackFrame,
  type StackTrace,
  type StackTraceDump,
} from "./stack_trace.ts";
export {
  type InnerMapSlot,
  type MapOfMapsDump,
  type MapOfMapsOptions,
  readMapOfMapsLive,
} from "./map_in_map.ts";

/** The entries of a keyed inner map, copied (inner maps of a recursive read). */
export interface KeyedEntries {
  /** Entries in the kernel's order, at most `maxInnerEntries`. */
  entries: { key: Uint8Array; value: Uint8Array }[];
  /** Entries left out by the cap. */
  omitted: number;
}

/** An inner map read in place by a recursive map-of-maps read. */
export interface InnerMap {
  /** The inner map's record. */
  map: BpfMapInfo;
  /** What its reader returned. */
  dump: TypeDump;
}

/** What one type reader returned, tagged by the reader. */
export type TypeDump =
  | { reader: "ringbuf"; ringbuf: RingbufSnapshot }
  | { reader: "queue"; queue: QueuePeek }
  | { reader: "bloom"; bloom: BloomInfo }
  | { reader: "slots"; slots: SlotDump }
  | { reader: "stack_trace"; stacks: StackTraceDump }
  | { reader: "maps_of_maps"; mapsOfMaps: MapOfMapsDump<InnerMap> }
  | { reader: "struct_ops"; structOps: StructOpsDump }
  | { reader: "keyed"; keyed: KeyedEntries }
  | { reader: "unreadable"; unreadable: { type: number; reason: string } };

/** Options every reader may use. */
export interface TypeReadOptions {
  /** Kernel symbols for stack frames (loaded from /proc/kallsyms on first need when absent). */
  symbols?: KernelSymbols;
  /** Read the inner maps of a map of maps in place. */
  recurse?: boolean;
  /** How deep a recursive read goes. Default 4. */
  maxDepth?: number;
  /** At most this many entries of a keyed inner map. Default 4096. */
  maxInnerEntries?: number;
  /**
   * Return the entries of a keyed type the backend has no per-entry reads
   * for (the guest's LPM trie) as a `keyed` result instead of null; the
   * batch builder of such a backend asks for them this way.
   */
  keyedEntries?: boolean;
  /**
   * The accessor inner maps are opened and read through (a recursive read);
   * the live backend passes itself.
   */
  accessor?: BpfMapAccessor;
}

/** One family's live reader. */
export interface LiveTypeReader {
  /** The tag its result carries. */
  reader: TypeDump["reader"];
  /** The `enum bpf_map_type` numbers it reads. */
  types: readonly number[];
  /** Reads `map` (whose type is one of `types`). */
  read(map: BpfMapInfo, options: TypeReadOptions, depth: number): TypeDump;
}

/** Types the accessor's keyed paths (`iterEntryBatches`, local storage, arena) read. */
export const KEYED_PATH_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.ARRAY,
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.LPM_TRIE,
  MapType.CGROUP_STORAGE,
  MapType.PERCPU_CGROUP_STORAGE,
  MapType.SK_STORAGE,
  MapType.INODE_STORAGE,
  MapType.TASK_STORAGE,
  MapType.CGRP_STORAGE,
  MapType.ARENA,
]);

let kernelSymbols: KernelSymbols | undefined;

/** Every family's reader, once. */
export const LIVE_TYPE_READERS: readonly LiveTypeReader[] = [
  {
    reader: "ringbuf",
    types: [MapType.RINGBUF, MapType.USER_RINGBUF],
    read: (map) => ({ reader: "ringbuf", ringbuf: readRingbufLive(map) }),
  },
  {
    reader: "queue",
    types: [MapType.QUEUE, MapType.STACK],
    read: (map) => ({ reader: "queue", queue: peekQueueLive(map) }),
  },
  {
    reader: "bloom",
    types: [MapType.BLOOM_FILTER],
    read: (map) => ({ reader: "bloom", bloom: bloomInfo(map) }),
  },
  {
    reader: "slots",
    types: SLOT_TYPES,
    read: (map) => ({ reader: "slots", slots: readSlotsLive(map) }),
  },
  {
    reader: "stack_trace",
    types: [MapType.STACK_TRACE],
    read: (map, options) => ({
      reader: "stack_trace",
      stacks: readStackTracesLive(
        map,
        options.symbols ?? (kernelSymbols ??= KernelSymbols.load()),
      ),
    }),
  },
  {
    reader: "maps_of_maps",
    types: [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS],
    read: (map, options, depth) => ({
      reader: "maps_of_maps",
      mapsOfMaps: readMapOfMapsLive<InnerMap>(map, {
        depth,
        ...(options.maxDepth !== undefined
          ? { maxDepth: options.maxDepth }
          : {}),
        ...(options.recurse
          ? {
            readInner: (id, innerDepth) => readInner(id, options, innerDepth),
          }
          : {}),
      }),
    }),
  },
  {
    reader: "struct_ops",
    types: [MapType.STRUCT_OPS],
    read: (map) => ({
      reader: "struct_ops",
      structOps: readStructOpsLive(map),
    }),
  },
];

const BY_TYPE = new Map<number, LiveTypeReader>(
  LIVE_TYPE_READERS.flatMap((reader) =>
    reader.types.map((type) => [type, reader] as const)
  ),
);

/**
 * The reader for a map type: a {@linkcode LiveTypeReader}, `"keyed"` when
 * the accessor's keyed paths read it, or `null` when bpfmap does not know
 * the type.
 */
export function liveReaderFor(type: number): LiveTypeReader | "keyed" | null {
  return BY_TYPE.get(type) ?? (KEYED_PATH_TYPES.has(type) ? "keyed" : null);
}

/** Why a type is not readable, in one line with its number. */
export function unknownTypeReason(type: number): string {
  const name = mapTypeName(type);
  return typeof name === "number"
    ? `map type ${type} is not known to bpfmap; its contents are not readable`
    : `map type ${name} (${type}) has no reader in bpfmap; its contents are not readable`;
}

/**
 * Reads a live map through its type reader. Returns null for the keyed
 * types (read them with the accessor), and an `unreadable` result for a
 * type bpfmap does not know.
 */
export function readMapTypeLive(
  map: BpfMapInfo,
  options: TypeReadOptions = {},
  depth = 0,
): TypeDump | null {
  const reader = liveReaderFor(map.type);
  if (reader === "keyed") return null;
  if (reader === null) {
    return {
      reader: "unreadable",
      unreadable: { type: map.type, reason: unknownTypeReason(map.type) },
    };
  }
  return reader.read(map, options, depth);
}

function readInner(
  id: number,
  options: TypeReadOptions,
  depth: number,
): InnerMap | null {
  const accessor = options.accessor;
  if (accessor === undefined) {
    throw new MapArgumentError(
      null,
      "options.accessor",
      "is needed to read inner maps in place",
      { hint: "call accessor.readTypeDump(map, { recurse: true })" },
    );
  }
  const map = accessor.mapById(id);
  if (map === null) return null;
  const typed = readMapTypeLive(map, options, depth);
  if (typed !== null) return { map, dump: typed };
  return {
    map,
    dump: { reader: "keyed", keyed: copyKeyedInner(accessor, map, options) },
  };
}

/**
 * The entries of a keyed inner map, copied, at most `maxInnerEntries` (the
 * rest counted): what a recursive read shows of an inner hash or array, on
 * every backend.
 */
export function copyKeyedInner(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: TypeReadOptions,
): KeyedEntries {
  const cap = options.maxInnerEntries ?? 4096;
  const keyed: KeyedEntries = { entries: [], omitted: 0 };
  for (const batch of accessor.iterEntryBatches(map)) {
    for (let i = 0; i < batch.count; i++) {
      if (keyed.entries.length >= cap) {
        keyed.omitted++;
        continue;
      }
      keyed.entries.push({
        key: batch.keys.slice(i * batch.keySize, (i + 1) * batch.keySize),
        value: batch.values.slice(
          i * batch.valueStride,
          (i + 1) * batch.valueStride,
        ),
      });
    }
  }
  return keyed;
}
