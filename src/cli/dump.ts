/**
 * Streaming map dumps: bpftool's JSON element array, or readable hex, written
 * entry by entry as the kernel hands batches over.
 *
 * @module
 */

import { percpuStride } from "../accessor/percpu.ts";
import type {
  BpfMapAccessor,
  BpfMapInfo,
  EntryBatch,
} from "../accessor/types.ts";
import {
  LOCAL_STORAGE_MAP_TYPES,
  MapType,
  mapTypeName,
  PERCPU_MAP_TYPES,
} from "../sys/constants.ts";
import { OutputError, type OutputWriter } from "./writer.ts";
import { writeTypeDump } from "./dump_types.ts";
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
  /** Maps of maps: read each inner map in place. */
  recurse?: boolean;
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
  /** Upper bound on one batch's key + value bytes (memory per batch). */
  maxBatchBytes?: number;
}

/** What a dump wrote. */
export interface DumpCount {
  /** Entries written. */
  written: number;
  /** Entries seen but left out by `maxEntries`. */
  omitted: number;
  /** Entries listed with an error instead of their value. */
  entryErrors: number;
  /**
   * The error that stopped the dump, recorded as its last element (JSON
   * `{"error":"..."}`, text `error: ...`), so the output stays a complete
   * document. Absent when the dump finished.
   */
  stoppedBy?: unknown;
}

/** One line for an error, as dumps record it. */
export function errorLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error))
    .replaceAll("\n", " ");
}

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

function batchesOf(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
): Iterable<EntryBatch> {
  return accessor.iterEntryBatches(map, {
    ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    ...(options.maxBatchBytes ? { maxBatchBytes: options.maxBatchBytes } : {}),
  });
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
  // Types with their own reader read everything before writing, so a failed
  // read leaves nothing on stdout; the keyed path below streams instead.
  const typed = writeTypeDump(out, accessor, map, options);
  if (typed) return { ...typed, entryErrors: 0 };
  const count: DumpCount = { written: 0, omitted: 0, entryErrors: 0 };
  if (options.json) out.ascii("[");
  try {
    const reason = unlistableReason(map);
    if (reason) {
      throw new Error(
        `Cannot dump map "${map.name}" (id ${map.id}): ${reason}`,
      );
    }
    if (map.type === MapType.QUEUE || map.type === MapType.STACK) {
      throw new Error(
        `Cannot dump map "${map.name}" (id ${map.id}): a ${
          mapTypeName(map.type)
        } shows only its head, and reading it would need a peek; use bpftool map peek`,
      );
    }
    if (LOCAL_STORAGE_MAP_TYPES.has(map.type)) {
      writeLocalStorage(out, accessor, map, options, count);
    } else if (map.type === MapType.ARENA) {
      writeArena(out, accessor, map, options, count);
    } else {
      writeKeyed(out, accessor, map, options, count);
    }
  } catch (error) {
    if (error instanceof OutputError) throw error;
    // Close the document with the error as its last element: whatever was
    // already written stays valid, and the caller reports the failure.
    count.stoppedBy = error;
    if (options.json) {
      out.ascii(count.written + count.entryErrors === 0 ? "" : ",");
      out.text(`{"error":${JSON.stringify(errorLine(error))}}]\n`);
    } else {
      out.text(`error: ${errorLine(error)}\n`);
    }
    return count;
  }
  if (options.json) {
    out.ascii("]\n");
  } else if (map.type !== MapType.ARENA) {
    const { written, omitted, entryErrors } = count;
    const listed = written + entryErrors;
    out.ascii(`Found ${listed} element${listed === 1 ? "" : "s"}`);
    const notes = [
      ...(entryErrors > 0 ? [`${entryErrors} unreadable`] : []),
      ...(omitted > 0 ? [`${omitted} more not shown`] : []),
    ];
    out.ascii(notes.length > 0 ? ` (${notes.join(", ")})\n` : "\n");
  }
  return count;
}

function writeKeyed(
  out: OutputWriter,
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
  count: DumpCount,
): void {
  const percpu = PERCPU_MAP_TYPES.has(map.type);
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  const renderer = options.renderer;
  const stride = percpuStride(map.valueSize);
  const typedShape = {
    keySize: map.keySize,
    valueSize: map.valueSize,
    valueStride: 0,
    cpus: percpu ? options.cpus : 0,
  };
  for (const batch of batchesOf(accessor, map, options)) {
    const shown = count.written + count.entryErrors;
    if (
      options.json && !renderer && !batch.errors && shown + batch.count <= limit
    ) {
      out.jsonKeyValueRun(batch.keys, batch.values, batch.count, {
        keySize: batch.keySize,
        valueSize: map.valueSize,
        valueStride: batch.valueStride,
        cpus: percpu ? options.cpus : 0,
      }, shown === 0);
      count.written += batch.count;
      continue;
    }
    if (
      renderer?.plans && !batch.errors && shown + batch.count <= limit &&
      canWriteTyped(out, renderer.plans, typedShape, options.json)
    ) {
      writeTypedRun(
        out,
        batch,
        { ...typedShape, valueStride: batch.valueStride },
        renderer.plans,
        options.json,
        shown === 0,
      );
      count.written += batch.count;
      continue;
    }
    for (let i = 0; i < batch.count; i++) {
      if (count.written + count.entryErrors >= limit) {
        count.omitted += batch.count - i;
        break;
      }
      const key = batch.keys.subarray(
        i * batch.keySize,
        (i + 1) * batch.keySize,
      );
      const failure = batch.errors?.[i];
      if (failure) {
        writeEntryError(out, key, failure, options.json, count);
        continue;
      }
      const value = batch.values.subarray(
        i * batch.valueStride,
        (i + 1) * batch.valueStride,
      );
      if (options.json) {
        out.ascii(
          count.written + count.entryErrors === 0 ? '{"key":' : ',{"key":',
        );
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
      count.written++;
    }
  }
}

/**
 * An entry whose key was listed but whose value could not be read, as
 * bpftool shows it: `{"key":[...],"value":{"error":"..."}}`, text
 * `key: .. error: ..`.
 */
function writeEntryError(
  out: OutputWriter,
  key: Uint8Array,
  failure: string,
  json: boolean,
  count: DumpCount,
): void {
  if (json) {
    out.ascii(count.written + count.entryErrors === 0 ? '{"key":' : ',{"key":');
    out.jsonHexArray(key);
    out.text(`,"value":{"error":${JSON.stringify(failure)}}}`);
  } else {
    out.ascii("key: ");
    out.plainHex(key);
    out.text(`  error: ${failure}\n`);
  }
  count.entryErrors++;
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
  count: DumpCount,
): void {
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  for (const entry of accessor.iterTaskStorage(map)) {
    if (count.written >= limit) {
      count.omitted++;
      continue;
    }
    if (options.json) {
      out.ascii(count.written === 0 ? "{" : ",{");
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
    count.written++;
  }
}

function writeArena(
  out: OutputWriter,
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: WriteMapDumpOptions,
  count: DumpCount,
): void {
  const arena = accessor.readArenaPages(map);
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  const shown = arena.pages.slice(0, Math.min(arena.pages.length, limit));
  count.written = shown.length;
  count.omitted = arena.pages.length - shown.length;
  if (options.json) {
    shown.forEach((page, i) => {
      out.ascii(
        `${i === 0 ? "" : ","}{"page":${page.index},"address":"0x${
          page.userAddress.toString(16)
        }","value":`,
      );
      out.jsonHexArray(page.bytes);
      out.ascii("}");
    });
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
}
