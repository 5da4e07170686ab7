/**
 * `bpfmap dump` for the map types that have their own reader
 * (`src/accessor/maptypes/`): ring buffers, queues and stacks, bloom
 * filters, object slots, stack traces, maps of maps, struct_ops.
 *
 * JSON: where bpftool dumps the type (slot maps, stack traces, maps of
 * maps) the document is bpftool's, key for key, failed slots included as
 * `{"key":[...],"value":{"error":"..."}}` (empty prog-array and
 * map-of-maps slots left out, as bpftool does). Where bpftool cannot dump
 * the type, the shapes are bpfmap's own, documented in the README:
 * - ringbuf: `{"type","capacity","consumer_pos","producer_pos","pending_bytes","records":[{"position","length","busy","discarded","data":[hex]}],"problems":[...]}`
 * - queue/stack: `{"type","max_entries","head":[hex]|null,"note"}`, plus
 *   `"elements":[[hex],...]` in pop order when the backend sees them all
 *   (guest memory)
 * - bloom filter: `{"type","hashes","value_size","note"}`, plus
 *   `"bits","bits_set"` when the backend sees the bitset (guest memory)
 *
 * Every reader returns its whole result before anything is written, so a
 * failed read never leaves a partial JSON document on stdout.
 *
 * @module
 */

import type { InnerMap, TypeDump } from "../accessor/maptypes/mod.ts";
import type { Slot } from "../accessor/maptypes/fd_slots.ts";
import type { RingbufSnapshot } from "../accessor/maptypes/ringbuf.ts";
import type { StackTraceDump } from "../accessor/maptypes/stack_trace.ts";
import type { MapOfMapsDump } from "../accessor/maptypes/map_in_map.ts";
import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import { MapUnreadableError } from "../errors.ts";
import { MapType } from "../sys/constants.ts";
import { toJson } from "../btf/json.ts";
import { formatValue } from "../btf/format_value.ts";
import type { OutputWriter } from "./writer.ts";

/** Options {@linkcode writeTypeDump} reads (a subset of `writeMapDump`'s). */
export interface TypeDumpOptions {
  /** JSON instead of text. */
  json: boolean;
  /** Stop after this many records, slots or stacks. */
  maxEntries?: number;
  /** Read the inner maps of a map of maps in place. */
  recurse?: boolean;
}

/** What a type dump wrote. */
export interface TypeDumpCount {
  /** Records, slots or stacks written. */
  written: number;
  /** Left out by `maxEntries`. */
  omitted: number;
}

/**
 * Writes `map` through its type reader and returns the count, or returns
 * null when the map's type is read by the keyed path (or the backend has no
 * reader for it). A type bpfmap does not know
 * throws one line naming the map and the type number.
 */
export function writeTypeDump(
  out: OutputWriter,
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  options: TypeDumpOptions,
): TypeDumpCount | null {
  const dump = accessor.readTypeDump(map, {
    recurse: options.recurse === true,
  });
  // "keyed" comes only from inner maps; a top-level keyed map has its own path.
  if (dump === null || dump.reader === "keyed") return null;
  if (dump.reader === "unreadable") {
    throw new MapUnreadableError(map, dump.unreadable.reason);
  }
  const limit = options.maxEntries ?? Number.POSITIVE_INFINITY;
  return options.json
    ? writeJson(out, map, dump, limit)
    : writeText(out, map, dump, limit);
}

function json(value: string | string[]): string {
  return toJson(value);
}

function hexJson(bytes: Uint8Array): string {
  return `[${
    Array.from(bytes, (b) => `"0x${b.toString(16).padStart(2, "0")}"`).join(",")
  }]`;
}

/** Whether bpftool leaves this failed slot out (empty prog-array and map-of-maps slots). */
function bpftoolSkips(type: number, slot: Slot): boolean {
  return slot.status === "empty" && (
    type === MapType.PROG_ARRAY || type === MapType.ARRAY_OF_MAPS ||
    type === MapType.HASH_OF_MAPS
  );
}

function writeSlotsJson(
  out: OutputWriter,
  type: number,
  slots: readonly Slot[],
  limit: number,
  inner?: (slot: Slot) => string | undefined,
): TypeDumpCount {
  let written = 0;
  let omitted = 0;
  out.ascii("[");
  for (const slot of slots) {
    if (bpftoolSkips(type, slot)) continue;
    if (written >= limit) {
      omitted++;
      continue;
    }
    out.ascii(written === 0 ? '{"key":' : ',{"key":');
    out.jsonHexArray(slot.key);
    if (slot.status === "value" && slot.value) {
      out.ascii(',"value":');
      out.jsonHexArray(slot.value);
      const nested = inner?.(slot);
      if (nested !== undefined) out.text(`,"inner":${nested}`);
    } else {
      out.text(`,"value":{"error":${JSON.stringify(slot.error ?? "")}}`);
    }
    out.ascii("}");
    written++;
  }
  out.ascii("]\n");
  return { written, omitted };
}

function ringbufJsonHead(ring: RingbufSnapshot): string {
  return `{"type":"${ring.kind}","capacity":${ring.capacity},"consumer_pos":${ring.consumerPos},"producer_pos":${ring.producerPos},"pending_bytes":${ring.pendingBytes},"records":[`;
}

function ringbufJson(ring: RingbufSnapshot, limit: number): string {
  const shown = ring.records.slice(0, Math.min(ring.records.length, limit));
  const records = shown.map((r) =>
    `{"position":${r.position},"length":${r.length},"busy":${r.busy},"discarded":${r.discarded},"data":${
      hexJson(r.data)
    }}`
  );
  return `${ringbufJsonHead(ring)}${records.join(",")}],"problems":${
    json(ring.problems)
  }}`;
}

/** JSON of an inner map read in place (a recursive map-of-maps dump). */
function innerJson(inner: InnerMap): string {
  const dump = inner.dump;
  const head = `{"id":${inner.map.id},"name":${json(inner.map.name)}`;
  switch (dump.reader) {
    case "keyed":
      return `${head},"elements":[${
        dump.keyed.entries.map((e) =>
          `{"key":${hexJson(e.key)},"value":${hexJson(e.value)}}`
        ).join(",")
      }]}`;
    case "ringbuf":
      return `${head},"ringbuf":${ringbufJson(dump.ringbuf, Infinity)}}`;
    case "slots":
      return `${head},"elements":[${
        dump.slots.slots.map((s) =>
          s.status === "value" && s.value
            ? `{"key":${hexJson(s.key)},"value":${hexJson(s.value)}}`
            : `{"key":${hexJson(s.key)},"value":{"error":${
              json(s.error ?? "")
            }}}`
        ).join(",")
      }]}`;
    default:
      return `${head},"reader":${json(dump.reader)}}`;
  }
}

function innerSummary(inner: InnerMap): string {
  const dump = inner.dump;
  switch (dump.reader) {
    case "keyed": {
      const n = dump.keyed.entries.length + dump.keyed.omitted;
      return `${n} entr${n === 1 ? "y" : "ies"}`;
    }
    case "slots":
      return plural(dump.slots.slots.length, "slot");
    case "maps_of_maps":
      return plural(
        dump.mapsOfMaps.slots.filter((s) => s.innerMapId !== undefined).length,
        "inner map",
      );
    case "unreadable":
      return dump.unreadable.reason;
    default:
      return `read by the ${dump.reader} reader`;
  }
}

function writeJson(
  out: OutputWriter,
  map: BpfMapInfo,
  dump: Exclude<TypeDump, { reader: "unreadable" } | { reader: "keyed" }>,
  limit: number,
): TypeDumpCount {
  switch (dump.reader) {
    case "ringbuf": {
      const ring = dump.ringbuf;
      // Streamed record by record: a full 64 MiB ring is half a gigabyte of
      // JSON, which must not be built as one string.
      const shown = Math.min(ring.count, limit);
      out.text(ringbufJsonHead(ring));
      for (let i = 0; i < shown; i++) {
        const r = ring.record(i);
        out.ascii(
          `${
            i === 0 ? "" : ","
          }{"position":${r.position},"length":${r.length},"busy":${r.busy},"discarded":${r.discarded},"data":`,
        );
        out.jsonHexArray(r.data);
        out.ascii("}");
      }
      out.text(`],"problems":${json(ring.problems)}}\n`);
      return { written: shown, omitted: ring.count - shown };
    }
    case "queue": {
      const q = dump.queue;
      out.text(
        `{"type":"${q.kind}","max_entries":${q.maxEntries},"head":${
          q.head ? hexJson(q.head) : "null"
        }${
          q.elements
            ? `,"elements":[${
              q.elements.slice(0, Math.min(q.elements.length, limit)).map(
                hexJson,
              ).join(",")
            }]`
            : ""
        },"note":${json(q.note)}}\n`,
      );
      if (q.elements) {
        const shown = Math.min(q.elements.length, limit);
        return { written: shown, omitted: q.elements.length - shown };
      }
      return { written: q.head ? 1 : 0, omitted: 0 };
    }
    case "bloom":
      out.text(
        `{"type":"bloom_filter","hashes":${dump.bloom.hashes},"value_size":${dump.bloom.valueSize}${
          dump.bloom.bits !== undefined
            ? `,"bits":${dump.bloom.bits},"bits_set":${dump.bloom.bitsSet}`
            : ""
        },"note":${json(dump.bloom.note)}}\n`,
      );
      return { written: 0, omitted: 0 };
    case "slots":
      return writeSlotsJson(out, map.type, dump.slots.slots, limit);
    case "stack_trace":
      return writeStacksJson(out, dump.stacks, limit);
    case "struct_ops": {
      // bpftool's shape: key 0, the raw value, and the value typed with vmlinux BTF.
      out.ascii('[{"key":');
      out.jsonHexArray(new Uint8Array(4));
      out.ascii(',"value":');
      out.jsonHexArray(dump.structOps.value);
      out.text(
        `,"formatted":{"value":${toJson(dump.structOps.formatted)}}}]\n`,
      );
      return { written: 1, omitted: 0 };
    }
    case "maps_of_maps":
      return writeSlotsJson(
        out,
        map.type,
        dump.mapsOfMaps.slots,
        limit,
        (slot) => {
          const s = slot as MapOfMapsDump<InnerMap>["slots"][number];
          return s.inner ? innerJson(s.inner) : undefined;
        },
      );
  }
}

function writeStacksJson(
  out: OutputWriter,
  stacks: StackTraceDump,
  limit: number,
): TypeDumpCount {
  // bpftool's shape: the u32 stack id as the key, the raw frames as the value.
  const key = new Uint8Array(4);
  const keyView = new DataView(key.buffer);
  let written = 0;
  out.ascii("[");
  for (
    const stack of stacks.stacks.slice(0, Math.min(stacks.stacks.length, limit))
  ) {
    keyView.setUint32(0, stack.id, true);
    out.ascii(written === 0 ? '{"key":' : ',{"key":');
    out.jsonHexArray(key);
    out.ascii(',"value":');
    out.jsonHexArray(stack.value);
    out.ascii("}");
    written++;
  }
  for (const failed of stacks.errors) {
    keyView.setUint32(0, failed.id, true);
    out.ascii(written === 0 ? '{"key":' : ',{"key":');
    out.jsonHexArray(key);
    out.text(`,"value":{"error":${JSON.stringify(failed.error)}}}`);
    written++;
  }
  out.ascii("]\n");
  return {
    written,
    omitted: stacks.stacks.length - Math.min(stacks.stacks.length, limit),
  };
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function describeObject(slot: Slot): string {
  const o = slot.object;
  if (!o) return "";
  const parts: string[] = [];
  if (o.innerMapId !== undefined) parts.push(`inner map ${o.innerMapId}`);
  if (o.ifindex !== undefined) parts.push(`ifindex ${o.ifindex}`);
  if (o.qsize !== undefined) parts.push(`qsize ${o.qsize}`);
  if (o.cookie !== undefined) parts.push(`socket cookie ${o.cookie}`);
  if (o.progId !== undefined && o.progId !== 0) {
    parts.push(`prog ${o.progId}${o.progName ? ` "${o.progName}"` : ""}`);
  }
  return parts.length ? `  (${parts.join(", ")})` : "";
}

function writeSlotsText(
  out: OutputWriter,
  type: number,
  slots: readonly Slot[],
  limit: number,
): TypeDumpCount {
  let written = 0;
  let omitted = 0;
  let found = 0;
  for (const slot of slots) {
    if (bpftoolSkips(type, slot)) continue;
    if (written >= limit) {
      omitted++;
      continue;
    }
    if (slot.status === "value" && slot.value) {
      out.ascii("key: ");
      out.plainHex(slot.key);
      out.ascii("  value: ");
      out.plainHex(slot.value);
      out.text(`${describeObject(slot)}\n`);
      found++;
    } else if (slot.status === "empty") {
      out.ascii("key: ");
      out.plainHex(slot.key);
      out.ascii("  value: <no entry>\n");
    } else {
      out.ascii("key:\n");
      out.plainHex(slot.key);
      out.text(`\nvalue:\n${slot.error}\n`);
    }
    written++;
  }
  out.ascii(`Found ${plural(found, "element")}`);
  out.ascii(omitted > 0 ? ` (${omitted} more not shown)\n` : "\n");
  return { written, omitted };
}

function writeText(
  out: OutputWriter,
  map: BpfMapInfo,
  dump: Exclude<TypeDump, { reader: "unreadable" } | { reader: "keyed" }>,
  limit: number,
): TypeDumpCount {
  switch (dump.reader) {
    case "ringbuf": {
      const ring = dump.ringbuf;
      out.text(
        `${ring.kind}: capacity ${ring.capacity}, consumer ${ring.consumerPos}, producer ${ring.producerPos}, ${ring.pendingBytes} bytes pending\n`,
      );
      for (const problem of ring.problems) out.text(`# ${problem}\n`);
      const shown = Math.min(ring.count, limit);
      for (let i = 0; i < shown; i++) {
        const record = ring.record(i);
        const flags = [
          record.busy ? "busy" : "",
          record.discarded ? "discarded" : "",
        ]
          .filter(Boolean).join(", ");
        out.text(
          `record at ${record.position}: ${plural(record.length, "byte")}${
            flags ? ` (${flags})` : ""
          }: `,
        );
        out.plainHex(record.data);
        out.ascii("\n");
      }
      out.ascii(`Found ${plural(ring.count, "pending record")}`);
      const omitted = ring.count - shown;
      out.ascii(omitted > 0 ? ` (${omitted} more not shown)\n` : "\n");
      return { written: shown, omitted };
    }
    case "queue": {
      const q = dump.queue;
      out.text(`# ${q.note}\n`);
      if (q.elements) {
        const shown = Math.min(q.elements.length, limit);
        for (let i = 0; i < shown; i++) {
          out.ascii(`${i === 0 ? "head" : `[${i}]`}: `);
          out.plainHex(q.elements[i]!);
          out.ascii("\n");
        }
        out.ascii(
          `Found ${plural(q.elements.length, "element")}${
            shown < q.elements.length
              ? ` (${q.elements.length - shown} more not shown)`
              : ""
          }\n`,
        );
        return { written: shown, omitted: q.elements.length - shown };
      }
      if (q.head) {
        out.ascii("head: ");
        out.plainHex(q.head);
        out.ascii("\n");
      } else {
        out.text(`the ${q.kind} is empty\n`);
      }
      return { written: q.head ? 1 : 0, omitted: 0 };
    }
    case "bloom":
      out.text(
        `# ${dump.bloom.note}\n${
          dump.bloom.hashes || 5
        } hash functions, ${dump.bloom.valueSize}-byte values${
          dump.bloom.bits !== undefined
            ? `, ${dump.bloom.bitsSet} of ${dump.bloom.bits} bits set (${
              (100 * dump.bloom.bitsSet! / dump.bloom.bits).toFixed(2)
            }% full)`
            : ""
        }; test one with bpfmap contains --id ${map.id} KEY\n`,
      );
      return { written: 0, omitted: 0 };
    case "slots":
      return writeSlotsText(out, map.type, dump.slots.slots, limit);
    case "maps_of_maps": {
      const count = writeSlotsText(out, map.type, dump.mapsOfMaps.slots, limit);
      // with --recurse: one line per inner map read in place (its contents are in --json)
      for (const slot of dump.mapsOfMaps.slots) {
        if (slot.inner) {
          out.text(
            `inner map ${slot.inner.map.id} "${slot.inner.map.name}": ${
              innerSummary(slot.inner)
            }\n`,
          );
        } else if (slot.innerSkipped) {
          out.text(`inner map ${slot.innerMapId}: ${slot.innerSkipped}\n`);
        }
      }
      return count;
    }
    case "struct_ops": {
      const ops = dump.structOps;
      out.text(
        `struct_ops ${ops.structName}, state ${ops.state}, refcnt ${ops.refcnt}\n`,
      );
      for (const member of ops.members) {
        if (member.kind === "prog") {
          out.text(
            `  ${member.name}: ${
              member.progId
                ? `prog ${member.progId}${
                  member.progName ? ` "${member.progName}"` : ""
                }`
                : "-"
            }\n`,
          );
        } else {
          out.text(`  ${member.name}: ${formatValue(member.value ?? null)}\n`);
        }
      }
      return { written: 1, omitted: 0 };
    }
    case "stack_trace": {
      const stacks = dump.stacks;
      const shown = stacks.stacks.slice(
        0,
        Math.min(stacks.stacks.length, limit),
      );
      for (const stack of shown) {
        out.text(`stack ${stack.id}:\n`);
        for (const frame of stack.frames) {
          out.text(
            `  0x${frame.ip.toString(16).padStart(16, "0")}${
              frame.symbol ? ` ${frame.symbol}` : ""
            }${frame.buildId ? ` ${frame.buildId}` : ""}\n`,
          );
        }
      }
      for (const failed of stacks.errors) {
        out.text(`stack ${failed.id}: ${failed.error}\n`);
      }
      out.ascii(`Found ${plural(stacks.stacks.length, "stack")}`);
      const omitted = stacks.stacks.length - shown.length;
      out.ascii(omitted > 0 ? ` (${omitted} more not shown)\n` : "\n");
      return { written: shown.length, omitted };
    }
  }
}
