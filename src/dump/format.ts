/**
 * Writers for a failure-dump report: exact JSON and grouped text, either of
 * a report in memory or streamed as it is read (through a
 * {@linkcode FailureDumpSink}), one entry at a time.
 *
 * @module
 */

import { type JsonInput, toJson } from "../btf/json.ts";
import { formatValue } from "../btf/format_value.ts";
import type { ArenaPointers } from "./arena.ts";
import type {
  DumpEntry,
  DumpSlotObject,
  FailureDumpHeader,
  FailureDumpReport,
  FailureDumpSink,
  MapDumpHead,
  MapDumpTail,
} from "./report.ts";
import { isUnavailable, schedulerLines } from "./scheduler.ts";

/** Where a streamed report's text goes (a buffered stdout writer fits). */
export interface TextOut {
  /** Appends text. */
  text(value: string): void;
}

/** Options for {@linkcode reportToJson}. */
export interface ReportToJsonOptions {
  /** Indent per level; omitted writes one line. */
  indent?: number | string;
}

/**
 * The report as JSON text, following the schema documented on
 * {@linkcode FailureDumpReport} (`schema: "bpfmap.failure-dump/3"`). 64-bit
 * and wider integers are written exactly as bare digits; the text is
 * always valid JSON.
 *
 * @param report a report from `dumpState`
 * @param options `indent` for pretty output
 * @returns the JSON text
 *
 * @example Save a report
 * ```ts ignore
 * import { dumpState, reportToJson } from "./mod.ts";
 * Deno.writeTextFileSync("maps.json", reportToJson(dumpState(accessor), { indent: 2 }));
 * ```
 */
export function reportToJson(
  report: FailureDumpReport,
  options: ReportToJsonOptions = {},
): string {
  const json = options.indent === undefined ? {} : { indent: options.indent };
  return toJson(report as unknown as JsonInput, json);
}

/** `{"a":1,"b":2}` without its braces, for splicing streamed members in. */
function members(value: object): string {
  return toJson(value as unknown as JsonInput).slice(1, -1);
}

/**
 * Streams a report as one line of JSON, the same document
 * {@linkcode reportToJson} writes for the collected report (map members
 * before `entries` come first): each entry is written as it arrives.
 */
export class JsonReportWriter implements FailureDumpSink {
  readonly #out: TextOut;
  readonly #errors: string[] = [];
  #maps = 0;
  #entries = 0;

  /**
   * A writer that appends to `out`.
   *
   * @param out where the JSON goes
   */
  constructor(out: TextOut) {
    this.#out = out;
  }

  /** Writes the header and opens `maps`. */
  start(header: FailureDumpHeader): void {
    this.#out.text(`{${members(header)},"maps":[`);
  }
  /** Keeps the errors for the end of the document. */
  errors(errors: readonly string[]): void {
    this.#errors.push(...errors);
  }
  /** Opens a map object and its `entries`. */
  mapStart(head: MapDumpHead): void {
    this.#out.text(`${this.#maps++ === 0 ? "" : ","}{${members(head)}`);
    this.#out.text(`,"entries":[`);
    this.#entries = 0;
  }
  /** Writes one entry. */
  entry(entry: DumpEntry): void {
    this.#out.text(
      `${this.#entries++ === 0 ? "" : ","}${
        toJson(entry as unknown as JsonInput)
      }`,
    );
  }
  /** Closes `entries` and the map object. */
  mapEnd(tail: MapDumpTail): void {
    this.#out.text(`],${members(tail)}}`);
  }
  /** Closes `maps` and writes `errors`. */
  end(): void {
    this.#out.text(`],"errors":${toJson(this.#errors)}}\n`);
  }
}

function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** `prog 12 "name"`, `inner map 7`, `ifindex 1`, ... */
function describeObject(object: DumpSlotObject): string {
  const parts: string[] = [];
  if (object.innerMapId !== undefined) {
    parts.push(`inner map ${object.innerMapId}`);
  }
  if (object.ifindex !== undefined) parts.push(`ifindex ${object.ifindex}`);
  if (object.qsize !== undefined) parts.push(`qsize ${object.qsize}`);
  if (object.cookie !== undefined) {
    parts.push(`socket cookie ${object.cookie}`);
  }
  if (object.progId !== undefined && object.progId !== 0) {
    parts.push(
      `prog ${object.progId}${
        object.progName !== undefined ? ` "${object.progName}"` : ""
      }`,
    );
  }
  return parts.join(", ");
}

/** A value's followed arena pointers, one `-> path` line each, under `prefix`. */
function arenaLines(arena: ArenaPointers, prefix: string): string[] {
  const lines = arena.pointees.map((p) => {
    const where = `${p.type ? `${p.type} ` : ""}at 0x${
      p.address.toString(16)
    } (arena ${p.arenaId} +0x${p.offset.toString(16)})`;
    const what = p.value !== undefined
      ? indentLines(formatValue(p.value), `${prefix}  `)
      : `(${p.note ?? "not read"})`;
    return `${prefix}-> ${p.path}: ${where}: ${what}`;
  });
  if (arena.note) lines.push(`${prefix}-> ... ${arena.note}`);
  return lines;
}

function indentLines(text: string, prefix: string): string {
  return text.split("\n").join(`\n${prefix}`);
}

/**
 * Streams a report as text for people: a header (when, where, kernel), then
 * one block per map with its info and its entries (`key: value`, per-CPU
 * values one line per CPU) or, for global data, one `name = value` line per
 * variable; omitted counts, notes and errors at the end of each block.
 * Per-type kinds add their summary under the info line (ring positions,
 * queue capacity, bloom hashes, struct_ops state) and show their entries in
 * their own form: `record at POS, N bytes (discarded): DATA`, `stack ID:`
 * with one `0xADDRESS sym+0xoff` line per frame, `head: VALUE`, and slot
 * values followed by what they stand for (`(prog 12 "name")`).
 */
export class TextReportWriter implements FailureDumpSink {
  readonly #out: TextOut;
  #head: MapDumpHead | undefined;
  #entries = 0;

  /**
   * A writer that appends to `out`.
   *
   * @param out where the text goes
   */
  constructor(out: TextOut) {
    this.#out = out;
  }

  #line(line: string): void {
    this.#out.text(`${line}\n`);
  }

  /** Writes the header. */
  start(header: FailureDumpHeader, mapCount: number): void {
    this.#line("bpfmap failure dump");
    this.#line(`taken:  ${header.takenAt}`);
    this.#line(`source: ${header.source}`);
    this.#line(`kernel: ${header.kernelRelease}`);
    this.#line(
      `maps:   ${mapCount} (at most ${header.entryLimit} entries each)`,
    );
    // The scheduler first: what a person debugging a stall reads first.
    if (header.scheduler) {
      this.#line("");
      this.#line("== sched_ext scheduler ==");
      for (const line of schedulerLines(header.scheduler)) this.#line(line);
    }
    if (header.programs) this.#programs(header.programs);
  }

  #programs(programs: FailureDumpHeader["programs"]): void {
    this.#line("");
    if (isUnavailable(programs)) {
      this.#line("== programs: unavailable ==");
      this.#line(`  ${programs.unavailable}`);
      return;
    }
    this.#line(`== programs: ${programs.length} ==`);
    for (const program of programs) {
      const stats = program.runCnt !== undefined
        ? `run_cnt ${program.runCnt}, run_time_ns ${program.runTimeNs ?? 0n}${
          program.recursionMisses
            ? `, recursion_misses ${program.recursionMisses}`
            : ""
        }`
        : `no run stats${program.statsNote ? ` (${program.statsNote})` : ""}`;
      this.#line(
        `  prog ${program.id} ${program.name} (${program.typeName}): ${stats}; maps ${
          program.mapIds.length ? program.mapIds.join(",") : "none"
        }`,
      );
    }
  }
  /** One `error:` line each, where they arise. */
  errors(errors: readonly string[]): void {
    for (const error of errors) this.#line(`error: ${error}`);
  }
  /** The map's heading and info line. */
  mapStart(map: MapDumpHead): void {
    this.#head = map;
    this.#entries = 0;
    const kind = map.kind === "global-data"
      ? `${map.typeName}, global data`
      : map.typeName;
    this.#line("");
    this.#line(
      `== map ${map.id} ${map.name} (${kind})${
        map.role ? ` [${map.role}]` : ""
      } ==`,
    );
    if (map.fullName) this.#line(`full name: ${map.fullName}`);
    this.#line(
      `key ${map.keySize} B, value ${map.valueSize} B, max_entries ${map.maxEntries}, flags 0x${
        map.flags.toString(16)
      }, btf ${map.btfId}${map.frozen ? ", frozen" : ""}`,
    );
    const ring = map.ringbuf;
    if (ring) {
      this.#line(
        `capacity ${ring.capacity} B, consumer at ${ring.consumerPos}, producer at ${ring.producerPos}: ${ring.pendingBytes} B pending in ${
          count(ring.records, "record")
        }`,
      );
    }
    if (map.queue) {
      this.#line(`a ${map.queue.kind} of at most ${map.queue.maxEntries}`);
    }
    if (map.bloom) {
      this.#line(
        `${
          count(map.bloom.hashes, "hash function")
        }, ${map.bloom.valueSize}-byte values`,
      );
    }
    if (map.stackTrace?.buildId) this.#line("frames: build id + offset");
    if (map.structOps) {
      this.#line(
        `struct ${map.structOps.structName}, ${map.structOps.state}, refcnt ${map.structOps.refcnt}`,
      );
    }
  }
  /** One entry: `key: value`, per-CPU values one line each. */
  entry(entry: DumpEntry): void {
    this.#entries++;
    const owner = entry.owner !== undefined ? `[${entry.owner}] ` : "";
    // A struct_ops member's name reads as a name, not as a quoted string.
    const key = this.#head?.kind === "struct-ops" &&
        typeof entry.key === "string"
      ? entry.key
      : indentLines(formatValue(entry.key), "  ");
    if (entry.frames) {
      this.#line(`  stack ${key}:`);
      for (const frame of entry.frames) {
        // A build-id frame of status 1 holds a file offset, not an address.
        this.#line(
          frame.buildIdStatus === 1
            ? `    offset ${frame.ip} in build id ${frame.buildId}`
            : `    ${frame.ip}${
              frame.symbol !== undefined ? ` ${frame.symbol}` : ""
            }`,
        );
      }
    } else if (entry.length !== undefined) {
      const flags = [
        entry.busy ? "busy" : "",
        entry.discarded ? "discarded" : "",
      ].filter(Boolean).join(", ");
      this.#line(
        `  record at ${key}, ${count(entry.length, "byte")}${
          flags ? ` (${flags})` : ""
        }: ${formatValue(entry.value ?? null)}`,
      );
    } else if (entry.values) {
      this.#line(`  ${owner}${key}:`);
      for (const { cpu, value } of entry.values) {
        this.#line(
          `    cpu ${cpu}: ${indentLines(formatValue(value), "    ")}`,
        );
      }
    } else if (entry.error !== undefined) {
      this.#line(`  ${owner}${key}: (unreadable: ${entry.error})`);
    } else if (this.#head?.kind === "queue") {
      this.#line(
        `  head: ${indentLines(formatValue(entry.value ?? null), "  ")}`,
      );
    } else if (entry.value === undefined && entry.object) {
      this.#line(`  ${key}: ${describeObject(entry.object) || "-"}`);
    } else {
      const value = formatValue(entry.value ?? null);
      const object = entry.object ? describeObject(entry.object) : "";
      this.#line(
        `  ${owner}${key}: ${indentLines(value, "  ")}${
          object ? `  (${object})` : ""
        }`,
      );
    }
    if (entry.arena) {
      arenaLines(entry.arena, "    ").forEach((l) => this.#line(l));
    }
  }
  /** Globals or arena summary, then omitted count, notes and errors. */
  mapEnd(map: MapDumpTail): void {
    for (const global of map.globals ?? []) {
      this.#line(
        `  ${global.name} = ${indentLines(formatValue(global.value), "  ")}`,
      );
      if (global.arena) {
        arenaLines(global.arena, "    ").forEach((l) => this.#line(l));
      }
    }
    if (map.arena) {
      this.#line(
        `  ${map.arena.presentPages} of ${map.arena.totalPages} pages present${
          map.arena.pageIndexes.length
            ? `: ${map.arena.pageIndexes.join(", ")}`
            : ""
        }`,
      );
    }
    const kind = this.#head?.kind;
    // Kinds that never list entries, and slot maps whose note says why
    // nothing is listed, have nothing to add.
    const listsNothing = kind === "unsupported" || kind === "bloom" ||
      kind === "unreadable" || (kind === "slots" && map.notes.length > 0);
    if (
      this.#entries === 0 && !map.globals && !map.arena && !listsNothing
    ) {
      this.#line("  (no entries)");
    }
    if (map.omittedEntries > 0) {
      this.#line(`  ... ${map.omittedEntries} more not shown`);
    }
    for (const note of map.notes) this.#line(`  note: ${note}`);
    for (const error of map.errors) this.#line(`  error: ${error}`);
  }
  /** Nothing follows the last map. */
  end(): void {}
}

/**
 * The report as text for people (see {@linkcode TextReportWriter}), ending
 * with a newline.
 *
 * @param report a report from `dumpState`
 * @returns the text
 *
 * @example Print a report
 * ```ts ignore
 * import { dumpState, reportToText } from "./mod.ts";
 * console.error(reportToText(dumpState(accessor)));
 * ```
 */
export function reportToText(report: FailureDumpReport): string {
  const parts: string[] = [];
  const writer = new TextReportWriter({ text: (part) => parts.push(part) });
  const { maps, errors, ...header } = report;
  writer.start(header, maps.length);
  writer.errors(errors);
  for (
    const { entries, omittedEntries, notes, errors, globals, arena, ...head }
      of maps
  ) {
    writer.mapStart(head);
    for (const entry of entries) writer.entry(entry);
    writer.mapEnd({
      omittedEntries,
      notes,
      errors,
      ...(globals ? { globals } : {}),
      ...(arena ? { arena } : {}),
    });
  }
  writer.end();
  return parts.join("");
}
