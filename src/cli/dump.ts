/**
 * Streaming map dumps: bpftool's JSON element array, or readable hex, written
 * entry by entry as the kernel hands batches over.
 *
 * @module
 */

import {
  BpfSyscallAccessor,
  type EntryBatch,
  percpuStride,
} from "../accessor/syscall.ts";
import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import {
  LOCAL_STORAGE_MAP_TYPES,
  MapType,
  mapTypeName,
  PERCPU_MAP_TYPES,
} from "../sys/constants.ts";
import type { OutputWriter } from "./writer.ts";
import { canWriteTyped, type EntryPlans, writeTypedRun } from "./typed_dump.ts";

/**
 * Turns raw key/value bytes into typed JSON and text (BTF rendering). When
 * given, `dump --json` adds bpftool's `"formatted"` object and text dumps
 * print typed values instead of hex.
 */
export interface EntryRenderer {
  /** JSON for a key, or undefined when keys have no type. */
  keyJson(bytes: Uint8Array): string | undefined;
  /** JSON for one value (one CPU's, for per-CPU maps). */
  valueJson(bytes: Uint8Array): string | undefined;
  /** Text for a key. */
  keyText(bytes: Uint8Array): string | undefined;
  /** Text for a value. */
  valueText(bytes: Uint8Array): string | undefined;
  /** Compiled plans writing the same output, when the types allow. */
  plans?: EntryPlans | undefined;
}

/** Options for {@linkcode writeMapDump}. */
export interface WriteMapDumpOptions {
  /** bpftool's JSON element array instead of text. */
  json: boolean;
  /** Stop after this many entries (the rest are counted, not written). */
  maxEntries?: number;
  /** Typed rendering, when the map has BTF. */
  renderer?: EntryRenderer | undefined;
  /** Possible CPUs (per-CPU maps). */
  cpus: number;
  /** Entries per LOOKUP_BATCH call. */
  batchSize?: number;
}

/** What a dump wrote. */
export interface DumpCount {
  /** Entries written. */
  written: number;
  /** Entries seen but left out by `maxEntries`. */
  omitted: number;
}

/** Map types whose contents are listed by key (batch or GET_NEXT_KEY). */
const KEYED_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.ARRAY,
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.LPM_TRIE,
  MapType.ARRAY_OF_MAPS,
  MapType.HASH_OF_MAPS,
  MapType.PROG_ARRAY,
  MapType.PERF_EVENT_ARRAY,
  MapType.CGROUP_ARRAY,
  MapType.STACK_TRACE,
  MapType.DEVMAP,
  MapType.DEVMAP_HASH,
  MapType.CPUMAP,
  MapType.SOCKMAP,
  MapType.SOCKHASH,
  MapType.XSKMAP,
  MapType.REUSEPORT_SOCKARRAY,
  MapType.STRUCT_OPS,
  MapType.CGROUP_STORAGE,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/** Why a map's contents cannot be listed, or undefined when they can. */
export function unlistableReason(map: BpfMapInfo): string | undefined {
  switch (map.type) {
    case MapType.BLOOM_FILTER:
      return "a bloom filter only answers membership tests; its contents cannot be listed";
    case MapType.RINGBUF:
    case MapType.USER_RINGBUF:
      return "a ring buffer has no keys; its records are read by mapping it, which bpfmap does not do here";
    default:
      return undefined;
  }
}

function* genericBatches(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  cpus: number,
): Generator<EntryBatch> {
  const one = (
    key: Uint8Array,
    value: Uint8Array,
    valueStride: number,
  ): EntryBatch => ({
    count: 1,
    keys: key,
    values: value,
    keySize: map.keySize,
    valueStride,
  });
  const indexKey = (index: number): Uint8Array => {
    const key = new Uint8Array(4);
    new DataView(key.buffer).setUint32(0, index, true);
    return key;
  };
  switch (map.type) {
    case MapType.ARRAY:
      for (let index = 0; index < map.maxEntries; index++) {
        const value = accessor.readArray(map, index);
        if (value) yield one(indexKey(index), value, map.valueSize);
      }
      return;
    case MapType.PERCPU_ARRAY: {
      const stride = percpuStride(map.valueSize);
      for (let index = 0; index < map.maxEntries; index++) {
        const values = accessor.readPercpuArray(map, index, cpus);
        if (values) {
          yield one(indexKey(index), joinPercpu(values, stride), stride * cpus);
        }
      }
      return;
    }
    case MapType.HASH:
    case MapType.LRU_HASH:
      for (const entry of accessor.iterHashMap(map)) {
        yield one(entry.key, entry.value, map.valueSize);
      }
      return;
    case MapType.PERCPU_HASH:
    case MapType.LRU_PERCPU_HASH: {
      const stride = percpuStride(map.valueSize);
      for (const entry of accessor.iterPercpuHashMap(map, cpus)) {
        yield one(entry.key, joinPercpu(entry.values, stride), stride * cpus);
      }
      return;
    }
    default:
      throw new Error(
        `Cannot list a ${mapTypeName(map.type)} map from this source`,
      );
  }
}

function joinPercpu(values: (Uint8Array | null)[], stride: number): Uint8Array {
  const joined = new Uint8Array(stride * values.length);
  values.forEach((value, cpu) => {
    if (value) joined.set(value, cpu * stride);
  });
  return joined;
}

function batchesOf(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
): Iterable<EntryBatch> {
  if (accessor instanceof BpfSyscallAccessor && KEYED_TYPES.has(map.type)) {
    return accessor.iterBatches(
      map,
      options.batchSize ? { batchSize: options.batchSize } : {},
    );
  }
  return genericBatches(accessor, map, options.cpus);
}

/**
 * Writes the elements of `map` to `out`: without `json`, bpftool-like
 * `key: .. value: ..` lines ending `Found N elements`; with `json`, one JSON
 * array of `{"key":[...],"value":[...]}` (per-CPU: `"values":[{"cpu":0,"value":[...]}]`).
 *
 * @returns how many entries were written and how many were left out
 */
export function writeMapDump(
  out: OutputWriter,
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
): DumpCount {
  const reason = unlistableReason(map);
  if (reason) {
    throw new Error(`Cannot dump map "${map.name}" (id ${map.id}): ${reason}`);
  }
  if (LOCAL_STORAGE_MAP_TYPES.has(map.type)) {
    return writeLocalStorage(out, accessor, map, options);
  }
  if (map.type === MapType.ARENA) {
    return writeArena(out, accessor, map, options);
  }
  if (map.type === MapType.QUEUE || map.type === MapType.STACK) {
    throw new Error(
      `Cannot dump map "${map.name}" (id ${map.id}): a ${
        mapTypeName(map.type)
      } shows only its head, and reading it would need a peek; use bpftool map peek`,
    );
  }
  const percpu = PERCPU_MAP_TYPES.has(map.type);
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  const renderer = options.renderer;
  const stride = percpuStride(map.valueSize);
  let written = 0;
  let omitted = 0;
  const typedShape = {
    keySize: map.keySize,
    valueSize: map.valueSize,
    valueStride: 0,
    cpus: percpu ? options.cpus : 0,
  };
  if (options.json) out.ascii("[");
  for (const batch of batchesOf(accessor, map, options)) {
    if (options.json && !renderer && written + batch.count <= limit) {
      out.jsonKeyValueRun(batch.keys, batch.values, batch.count, {
        keySize: batch.keySize,
        valueSize: map.valueSize,
        valueStride: batch.valueStride,
        cpus: percpu ? options.cpus : 0,
      }, written === 0);
      written += batch.count;
      continue;
    }
    if (
      renderer?.plans && written + batch.count <= limit &&
      canWriteTyped(out, renderer.plans, typedShape, options.json)
    ) {
      writeTypedRun(
        out,
        batch,
        { ...typedShape, valueStride: batch.valueStride },
        renderer.plans,
        options.json,
        written === 0,
      );
      written += batch.count;
      continue;
    }
    for (let i = 0; i < batch.count; i++) {
      if (written >= limit) {
        omitted += batch.count - i;
        break;
      }
      const key = batch.keys.subarray(
        i * batch.keySize,
        (i + 1) * batch.keySize,
      );
      const value = batch.values.subarray(
        i * batch.valueStride,
        (i + 1) * batch.valueStride,
      );
      if (options.json) {
        out.ascii(written === 0 ? '{"key":' : ',{"key":');
        out.jsonHexArray(key);
        if (percpu) {
          out.ascii(',"values":[');
          for (let cpu = 0; cpu < options.cpus; cpu++) {
            out.ascii(
              cpu === 0 ? `{"cpu":${cpu},"value":` : `,{"cpu":${cpu},"value":`,
            );
            out.jsonHexArray(
              value.subarray(cpu * stride, cpu * stride + map.valueSize),
            );
            out.ascii("}");
          }
          out.ascii("]");
        } else {
          out.ascii(',"value":');
          out.jsonHexArray(value);
        }
        if (renderer) {
          writeFormattedJson(
            out,
            renderer,
            key,
            value,
            percpu,
            stride,
            map,
            options.cpus,
          );
        }
        out.ascii("}");
      } else {
        writeTextEntry(
          out,
          renderer,
          key,
          value,
          percpu,
          stride,
          map,
          options.cpus,
        );
      }
      written++;
    }
  }
  if (options.json) {
    out.ascii("]\n");
  } else {
    out.ascii(`Found ${written} element${written === 1 ? "" : "s"}`);
    out.ascii(omitted > 0 ? ` (${omitted} more not shown)\n` : "\n");
  }
  return { written, omitted };
}

function writeFormattedJson(
  out: OutputWriter,
  renderer: EntryRenderer,
  key: Uint8Array,
  value: Uint8Array,
  percpu: boolean,
  stride: number,
  map: BpfMapInfo,
  cpus: number,
): void {
  const keyJson = renderer.keyJson(key);
  out.ascii(',"formatted":{');
  let first = true;
  if (keyJson !== undefined) {
    out.ascii('"key":');
    out.text(keyJson);
    first = false;
  }
  if (percpu) {
    out.ascii(first ? '"values":[' : ',"values":[');
    for (let cpu = 0; cpu < cpus; cpu++) {
      out.ascii(
        cpu === 0 ? `{"cpu":${cpu},"value":` : `,{"cpu":${cpu},"value":`,
      );
      out.text(
        renderer.valueJson(
          value.subarray(cpu * stride, cpu * stride + map.valueSize),
        ) ?? "null",
      );
      out.ascii("}");
    }
    out.ascii("]");
  } else {
    out.ascii(first ? '"value":' : ',"value":');
    out.text(renderer.valueJson(value) ?? "null");
  }
  out.ascii("}");
}

function writeTextEntry(
  out: OutputWriter,
  renderer: EntryRenderer | undefined,
  key: Uint8Array,
  value: Uint8Array,
  percpu: boolean,
  stride: number,
  map: BpfMapInfo,
  cpus: number,
): void {
  const keyText = renderer?.keyText(key);
  out.ascii("key: ");
  if (keyText !== undefined) out.text(keyText);
  else out.plainHex(key);
  if (percpu) {
    out.ascii("\n");
    for (let cpu = 0; cpu < cpus; cpu++) {
      const slot = value.subarray(cpu * stride, cpu * stride + map.valueSize);
      out.ascii(`  value (CPU ${String(cpu).padStart(2, "0")}): `);
      const text = renderer?.valueText(slot);
      if (text !== undefined) out.text(text);
      else out.plainHex(slot);
      out.ascii("\n");
    }
    return;
  }
  const text = renderer?.valueText(value);
  if (text !== undefined) {
    out.ascii(text.includes("\n") ? "\nvalue: " : "  value: ");
    out.text(text);
  } else {
    out.ascii("  value: ");
    out.plainHex(value);
  }
  out.ascii("\n");
}

function writeLocalStorage(
  out: OutputWriter,
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
): DumpCount {
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  let written = 0;
  let omitted = 0;
  if (options.json) out.ascii("[");
  for (const entry of accessor.iterTaskStorage(map)) {
    if (written >= limit) {
      omitted++;
      continue;
    }
    if (options.json) {
      out.ascii(written === 0 ? "{" : ",{");
      out.text(`"owner":${JSON.stringify(entry.owner)},"key":`);
      out.jsonHexArray(entry.key);
      out.ascii(',"value":');
      out.jsonHexArray(entry.value);
      const formatted = options.renderer?.valueJson(entry.value);
      if (formatted !== undefined) {
        out.ascii(',"formatted":{"value":');
        out.text(formatted);
        out.ascii("}");
      }
      out.ascii("}");
    } else {
      out.text(`owner: ${entry.owner}  value: `);
      const text = options.renderer?.valueText(entry.value);
      if (text !== undefined) out.text(text);
      else out.plainHex(entry.value);
      out.ascii("\n");
    }
    written++;
  }
  if (options.json) out.ascii("]\n");
  else out.ascii(`Found ${written} element${written === 1 ? "" : "s"}\n`);
  return { written, omitted };
}

function writeArena(
  out: OutputWriter,
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
): DumpCount {
  const arena = accessor.readArenaPages(map);
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  const shown = arena.pages.slice(0, Math.min(arena.pages.length, limit));
  if (options.json) {
    out.ascii("[");
    shown.forEach((page, i) => {
      out.ascii(
        `${i === 0 ? "" : ","}{"page":${page.index},"address":"0x${
          page.userAddress.toString(16)
        }","value":`,
      );
      out.jsonHexArray(page.bytes);
      out.ascii("}");
    });
    out.ascii("]\n");
  } else {
    for (const note of arena.notes) out.text(`# ${note}\n`);
    for (const page of shown) {
      out.text(`page ${page.index} at 0x${page.userAddress.toString(16)}:\n`);
      for (let offset = 0; offset < page.bytes.length; offset += 16) {
        const row = page.bytes.subarray(offset, offset + 16);
        if (row.every((byte) => byte === 0)) continue;
        out.ascii(`  ${offset.toString(16).padStart(4, "0")}: `);
        out.plainHex(row);
        out.ascii("\n");
      }
    }
    out.ascii(
      `Found ${arena.pages.length} readable page${
        arena.pages.length === 1 ? "" : "s"
      } of ${arena.totalPages}\n`,
    );
  }
  return { written: shown.length, omitted: arena.pages.length - shown.length };
}
