/**
 * Batches built from a backend's per-entry reads, for backends without a
 * native batch primitive (guest memory): the same `EntryBatch` shape the live
 * backend's LOOKUP_BATCH produces, so consumers never ask which backend they hold.
 *
 * @module
 */

import { MapArgumentError, type MapIdentity, MapTypeError } from "../errors.ts";
import { MapType, mapTypeName } from "../sys/constants.ts";
import { joinPercpu, percpuStride } from "./percpu.ts";
import type {
  BpfMapAccessor,
  BpfMapInfo,
  EntryBatch,
  EntryBatchOptions,
} from "./types.ts";

/** Default entries per batch, the live backend's LOOKUP_BATCH size. */
export const DEFAULT_BATCH_ENTRIES = 4096;
/** Default upper bound of one batch's key + value bytes. */
export const DEFAULT_BATCH_BYTES = 4 << 20;

/** Map types `iterEntryBatches` reads on every backend. */
export const BATCHABLE_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.ARRAY,
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

/**
 * Types a backend without per-entry reads for them lists through
 * `readTypeDump`, which returns their entries as `keyed` (the guest's LPM
 * trie walk).
 */
const KEYED_READER_TYPES: ReadonlySet<number> = new Set([MapType.LPM_TRIE]);

/** The largest `batchSize` accepted: 16M entries, far past any useful batch. */
export const MAX_BATCH_ENTRIES = 1 << 24;
/** The largest `maxBatchBytes` accepted: 1 GiB. */
export const MAX_BATCH_BYTES = 1 << 30;

/**
 * Checks batch options before anything is allocated for them.
 *
 * @throws {MapArgumentError} naming the option, its value and the range
 */
export function validateBatchOptions(
  map: MapIdentity,
  options: EntryBatchOptions,
): void {
  const checks: [keyof EntryBatchOptions, number][] = [
    ["batchSize", MAX_BATCH_ENTRIES],
    ["maxBatchBytes", MAX_BATCH_BYTES],
  ];
  for (const [name, max] of checks) {
    const value = options[name];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1 || value > max) {
      throw new MapArgumentError(
        map,
        name,
        `is ${value}; it must be an integer from 1 to ${max}`,
      );
    }
  }
}

/** Bytes one entry of `map` takes in a batch's value buffer. */
export function valueStrideOf(
  map: Pick<BpfMapInfo, "type" | "valueSize">,
  possibleCpus: number,
): number {
  return map.type === MapType.PERCPU_ARRAY ||
      map.type === MapType.PERCPU_HASH ||
      map.type === MapType.LRU_PERCPU_HASH ||
      map.type === MapType.PERCPU_CGROUP_STORAGE
    ? percpuStride(map.valueSize) * possibleCpus
    : map.valueSize;
}

/**
 * How many entries one batch may hold: `batchSize`, cut so that keys and
 * values stay under `maxBatchBytes` (at least one entry).
 */
export function batchEntries(
  map: Pick<BpfMapInfo, "keySize" | "maxEntries">,
  valueStride: number,
  options: EntryBatchOptions = {},
): number {
  const wanted = options.batchSize ?? DEFAULT_BATCH_ENTRIES;
  const maxBytes = options.maxBatchBytes ?? DEFAULT_BATCH_BYTES;
  const perEntry = Math.max(1, map.keySize + valueStride);
  return Math.max(
    1,
    Math.min(
      wanted,
      Math.floor(maxBytes / perEntry),
      Math.max(map.maxEntries, 1),
    ),
  );
}

/**
 * Packs the per-entry reads of `accessor` into batches of up to
 * `batchEntries` entries (fresh buffers per batch).
 */
export function* entryBatchesFromReads(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: EntryBatchOptions = {},
): Generator<EntryBatch, void, undefined> {
  if (!BATCHABLE_TYPES.has(map.type) && !KEYED_READER_TYPES.has(map.type)) {
    throw new MapTypeError(
      map,
      map.type,
      "a hash or array map (the types read in batches)",
      { hint: `a ${mapTypeName(map.type)} map has its own reader` },
    );
  }
  validateBatchOptions(map, options);
  const cpus = accessor.possibleCpus;
  const keySize = map.keySize;
  const valueStride = valueStrideOf(map, cpus);
  const capacity = batchEntries(map, valueStride, options);
  let keys = new Uint8Array(capacity * keySize);
  let values = new Uint8Array(capacity * valueStride);
  let count = 0;
  const take = (): EntryBatch => {
    const batch = {
      count,
      keys: keys.subarray(0, count * keySize),
      values: values.subarray(0, count * valueStride),
      keySize,
      valueStride,
    };
    keys = new Uint8Array(capacity * keySize);
    values = new Uint8Array(capacity * valueStride);
    count = 0;
    return batch;
  };
  const indexKey = new Uint8Array(4);
  const indexView = new DataView(indexKey.buffer);
  for (const [key, value] of entriesOf(accessor, map, indexKey, indexView)) {
    keys.set(key.subarray(0, keySize), count * keySize);
    values.set(value.subarray(0, valueStride), count * valueStride);
    if (++count === capacity) yield take();
  }
  if (count > 0) yield take();
}

function* entriesOf(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  indexKey: Uint8Array,
  indexView: DataView,
): Generator<[Uint8Array, Uint8Array], void, undefined> {
  switch (map.type) {
    case MapType.LPM_TRIE: {
      const dump = accessor.readTypeDump(map, { keyedEntries: true });
      if (dump?.reader !== "keyed") {
        throw new MapTypeError(
          map,
          map.type,
          "a map whose entries this backend lists",
          {
            hint: dump?.reader === "unreadable"
              ? dump.unreadable.reason
              : "this backend has no LPM trie reader",
          },
        );
      }
      for (const entry of dump.keyed.entries) yield [entry.key, entry.value];
      return;
    }
    case MapType.ARRAY:
      for (let index = 0; index < map.maxEntries; index++) {
        const value = accessor.readArray(map, index);
        indexView.setUint32(0, index, true);
        if (value) yield [indexKey, value];
      }
      return;
    case MapType.PERCPU_ARRAY:
      for (let index = 0; index < map.maxEntries; index++) {
        const values = accessor.readPercpuArray(map, index);
        indexView.setUint32(0, index, true);
        if (values) yield [indexKey, joinPercpu(values, map.valueSize)];
      }
      return;
    case MapType.HASH:
    case MapType.LRU_HASH:
      for (const entry of accessor.iterHashMap(map)) {
        yield [entry.key, entry.value];
      }
      return;
    default:
      for (const entry of accessor.iterPercpuHashMap(map)) {
        yield [entry.key, joinPercpu(entry.values, map.valueSize)];
      }
  }
}
