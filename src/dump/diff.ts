/**
 * What changed between two failure-dump reports, e.g. the early and the late
 * capture of one failing test, or two runs of the same scheduler: maps that
 * appeared or went, and for maps in both, the info fields, global variables,
 * entries (matched by key) and the leaves of their values that differ.
 *
 * Reports are compared as parsed JSON (`parseJsonExact` keeps u64 exact), so
 * a report written by an older or newer bpfmap still compares field by field;
 * sections this module does not know are compared as plain values.
 *
 * @module
 */

import { type JsonInput, toJson } from "../btf/json.ts";
import { BpfmapError } from "../errors.ts";

/** Schema identifier of a diff document. */
export const REPORT_DIFF_SCHEMA = "bpfmap.report-diff/1";

/** One leaf that differs: `path` into the value, what it was and is. */
export interface ValueChange {
  /** JSON-pointer-like path below the compared value, `""` for the value itself. */
  path: string;
  /** The old value (absent: it did not exist). */
  before?: JsonInput;
  /** The new value (absent: it no longer exists). */
  after?: JsonInput;
}

/** An entry of a map, matched by its key across the two reports. */
export interface EntryChange {
  /** The key, as rendered in the reports. */
  key: JsonInput;
  /** `added`, `removed`, or `changed` (then `changes` lists the leaves). */
  status: "added" | "removed" | "changed";
  /** Differing leaves of the entry (value, per-CPU values, owner). */
  changes: ValueChange[];
}

/** How the two reports name a map that is in both. */
export interface MapRef {
  /** Map id in the first report. */
  idBefore: number;
  /** Map id in the second report. */
  idAfter: number;
  /** Kernel name (the full name when the report has one). */
  name: string;
}

/** Differences of one map present in both reports. */
export interface MapChange extends MapRef {
  /** Info fields that differ (`maxEntries`, `frozen`, `omittedEntries`, ...). */
  fields: ValueChange[];
  /** Global variables (global-data maps) that differ, path `/<name>/...`. */
  globals: ValueChange[];
  /** Entries that were added, removed or changed. */
  entries: EntryChange[];
  /** Entries not compared because one report left them out (its entry limit). */
  uncomparedEntries: number;
}

/** A map in only one report. */
export interface MapPresence {
  /** Map id. */
  id: number;
  /** Kernel (or full) name. */
  name: string;
  /** bpftool's type name. */
  typeName: string;
}

/** A program (schema 3's `programs`) added, removed or changed, matched by id. */
export interface ProgramChange {
  /** Program id. */
  id: number;
  /** Program name. */
  name: string;
  /** `added`, `removed`, or `changed` (then `changes` lists the fields, e.g. `/runCnt`). */
  status: "added" | "removed" | "changed";
  /** Fields that differ (run count and time, map ids...). */
  changes: ValueChange[];
}

/** Everything that differs between two reports. */
export interface ReportDiff {
  /** Always {@linkcode REPORT_DIFF_SCHEMA}. */
  schema: typeof REPORT_DIFF_SCHEMA;
  /** Report-level fields that differ (takenAt, kernelRelease, errors, `/scheduler/...`, and sections beside maps). */
  report: ValueChange[];
  /** Programs added, removed or changed, by id (empty unless both reports list programs). */
  programs: ProgramChange[];
  /** Maps only in the second report. */
  addedMaps: MapPresence[];
  /** Maps only in the first report. */
  removedMaps: MapPresence[];
  /** Maps in both that differ (maps that are equal are left out). */
  changedMaps: MapChange[];
  /** How many maps were in both and equal. */
  unchangedMaps: number;
}

/** The input is not a failure-dump report. */
export class ReportFormatError extends BpfmapError {}

type Json = JsonInput;
type JsonObject = { readonly [key: string]: Json };

function isObject(value: Json): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function same(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (typeof a === "bigint" || typeof b === "bigint") {
    // A value that fits a double may be parsed as a number in one report and
    // a bigint in the other; they are still the same integer.
    return (typeof a === "bigint" || typeof a === "number") &&
      (typeof b === "bigint" || typeof b === "number") &&
      Number.isInteger(Number(a)) && BigInt(a) === BigInt(b);
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => same(v, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length &&
      keys.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
  }
  return false;
}

function escapePath(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** Appends the leaves in which `before` and `after` differ, below `path`. */
function collectChanges(
  before: Json,
  after: Json,
  path: string,
  out: ValueChange[],
): void {
  if (same(before, after)) return;
  if (Array.isArray(before) && Array.isArray(after)) {
    const length = Math.max(before.length, after.length);
    for (let i = 0; i < length; i++) {
      if (i >= before.length) {
        out.push({ path: `${path}/${i}`, after: after[i] });
      } else if (i >= after.length) {
        out.push({ path: `${path}/${i}`, before: before[i] });
      } else collectChanges(before[i], after[i], `${path}/${i}`, out);
    }
    return;
  }
  if (isObject(before) && isObject(after)) {
    for (const key of Object.keys(before)) {
      const sub = `${path}/${escapePath(key)}`;
      if (!Object.hasOwn(after, key)) {
        out.push({ path: sub, before: before[key] });
      } else collectChanges(before[key], after[key], sub, out);
    }
    for (const key of Object.keys(after)) {
      if (!Object.hasOwn(before, key)) {
        out.push({ path: `${path}/${escapePath(key)}`, after: after[key] });
      }
    }
    return;
  }
  out.push({ path, before, after });
}

function asReport(value: unknown, label: string): JsonObject {
  if (
    !isObject(value as Json) ||
    typeof (value as JsonObject).schema !== "string" ||
    !String((value as JsonObject).schema).startsWith("bpfmap.failure-dump/") ||
    !Array.isArray((value as JsonObject).maps)
  ) {
    throw new ReportFormatError(
      `${label} is not a bpfmap failure-dump report (no "schema": "bpfmap.failure-dump/N" with a "maps" array)`,
      { hint: "write one with `bpfmap dump --json` or reportToJson()" },
    );
  }
  return value as JsonObject;
}

function mapName(map: JsonObject): string {
  return String(map.fullName ?? map.name ?? "");
}

function presence(map: JsonObject): MapPresence {
  return {
    id: Number(map.id),
    name: mapName(map),
    typeName: String(map.typeName ?? map.type ?? ""),
  };
}

/**
 * Pairs the maps of two reports: the same id with the same name and type
 * first (the same map at two moments), then by name and type in id order
 * (the same program's map in two runs, where ids differ).
 */
function pairMaps(
  before: readonly JsonObject[],
  after: readonly JsonObject[],
): {
  pairs: [JsonObject, JsonObject][];
  removed: JsonObject[];
  added: JsonObject[];
} {
  const identity = (m: JsonObject): string => `${mapName(m)}\0${m.type}`;
  const pairs: [JsonObject, JsonObject][] = [];
  const leftAfter = new Set(after);
  const unpaired: JsonObject[] = [];
  const afterById = new Map(after.map((m) => [Number(m.id), m]));
  for (const map of before) {
    const twin = afterById.get(Number(map.id));
    if (twin && leftAfter.has(twin) && identity(twin) === identity(map)) {
      pairs.push([map, twin]);
      leftAfter.delete(twin);
    } else unpaired.push(map);
  }
  const removed: JsonObject[] = [];
  for (const map of unpaired) {
    const twin = [...leftAfter].find((m) => identity(m) === identity(map));
    if (twin) {
      pairs.push([map, twin]);
      leftAfter.delete(twin);
    } else removed.push(map);
  }
  return { pairs, removed, added: [...leftAfter] };
}

const MAP_SECTIONS = new Set(["entries", "globals", "id"]);

function entryKey(entry: JsonObject): string {
  // Local storage keys are fd numbers or kernel addresses that mean nothing
  // across captures; the owner names the element.
  return toJson(entry.owner !== undefined ? { owner: entry.owner } : entry.key);
}

function diffEntries(
  before: readonly JsonObject[],
  after: readonly JsonObject[],
  complete: boolean,
): { entries: EntryChange[]; uncompared: number } {
  const afterByKey = new Map(after.map((e) => [entryKey(e), e]));
  const entries: EntryChange[] = [];
  let uncompared = 0;
  for (const entry of before) {
    const id = entryKey(entry);
    const twin = afterByKey.get(id);
    if (twin === undefined) {
      if (complete) {
        entries.push({ key: entry.key, status: "removed", changes: [] });
      } else uncompared++;
      continue;
    }
    afterByKey.delete(id);
    const changes: ValueChange[] = [];
    const { key: _a, ...restBefore } = entry;
    const { key: _b, ...restAfter } = twin;
    collectChanges(restBefore, restAfter, "", changes);
    if (changes.length > 0) {
      entries.push({ key: entry.key, status: "changed", changes });
    }
  }
  for (const entry of afterByKey.values()) {
    if (complete) {
      entries.push({ key: entry.key, status: "added", changes: [] });
    } else uncompared++;
  }
  return { entries, uncompared };
}

function globalsObject(map: JsonObject): JsonObject {
  const result: Record<string, Json> = {};
  const globals = map.globals;
  if (Array.isArray(globals)) {
    for (const variable of globals) {
      if (isObject(variable)) result[String(variable.name)] = variable.value;
    }
  }
  return result;
}

function diffMap(before: JsonObject, after: JsonObject): MapChange {
  const fields: ValueChange[] = [];
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (MAP_SECTIONS.has(key)) continue;
    const sub: ValueChange[] = [];
    collectChanges(before[key], after[key], "", sub);
    for (const change of sub) {
      fields.push({ ...change, path: `/${key}${change.path}` });
    }
  }
  const globals: ValueChange[] = [];
  collectChanges(globalsObject(before), globalsObject(after), "", globals);
  const list = (m: JsonObject): JsonObject[] =>
    Array.isArray(m.entries) ? m.entries.filter(isObject) : [];
  // An entry missing from a report that left entries out may just be beyond
  // its limit: only when neither omitted any is "missing" a real removal.
  const complete = Number(before.omittedEntries ?? 0) === 0 &&
    Number(after.omittedEntries ?? 0) === 0;
  const { entries, uncompared } = diffEntries(
    list(before),
    list(after),
    complete,
  );
  return {
    idBefore: Number(before.id),
    idAfter: Number(after.id),
    name: mapName(before),
    fields,
    globals,
    entries,
    uncomparedEntries: uncompared,
  };
}

/**
 * Compares two failure-dump reports (parsed JSON, e.g. from `parseJsonExact`).
 *
 * @example Compare two captures
 * ```ts
 * import { diffReports, diffToText } from "./diff.ts";
 * const early = { schema: "bpfmap.failure-dump/1", maps: [{ id: 1, name: "m", type: 1, entries: [{ key: 1, value: 2 }] }] };
 * const late = { schema: "bpfmap.failure-dump/1", maps: [{ id: 1, name: "m", type: 1, entries: [{ key: 1, value: 3 }] }] };
 * console.log(diffToText(diffReports(early, late)));
 * ```
 *
 * @param before the earlier report
 * @param after the later report
 * @param labels names of the two inputs for error messages
 */
export function diffReports(
  before: unknown,
  after: unknown,
  labels: [string, string] = ["the first report", "the second report"],
): ReportDiff {
  const a = asReport(before, labels[0]);
  const b = asReport(after, labels[1]);
  const report: ValueChange[] = [];
  const programs = Array.isArray(a.programs) && Array.isArray(b.programs)
    ? diffPrograms(a.programs.filter(isObject), b.programs.filter(isObject))
    : null;
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (key === "maps" || (key === "programs" && programs !== null)) continue;
    const sub: ValueChange[] = [];
    collectChanges(a[key], b[key], "", sub);
    for (const change of sub) {
      report.push({ ...change, path: `/${key}${change.path}` });
    }
  }
  const mapsOf = (r: JsonObject): JsonObject[] =>
    (r.maps as Json[]).filter(isObject);
  const { pairs, removed, added } = pairMaps(mapsOf(a), mapsOf(b));
  const changedMaps: MapChange[] = [];
  let unchangedMaps = 0;
  for (const [x, y] of pairs) {
    const change = diffMap(x, y);
    if (
      change.fields.length + change.globals.length + change.entries.length +
            change.uncomparedEntries === 0 && change.idBefore === change.idAfter
    ) {
      unchangedMaps++;
    } else changedMaps.push(change);
  }
  return {
    schema: REPORT_DIFF_SCHEMA,
    report,
    programs: programs ?? [],
    addedMaps: added.map(presence),
    removedMaps: removed.map(presence),
    changedMaps,
    unchangedMaps,
  };
}

/** Programs paired by id: the same program at two moments. */
function diffPrograms(
  before: readonly JsonObject[],
  after: readonly JsonObject[],
): ProgramChange[] {
  const afterById = new Map(after.map((p) => [Number(p.id), p]));
  const out: ProgramChange[] = [];
  const label = (p: JsonObject) => ({
    id: Number(p.id),
    name: String(p.name ?? ""),
  });
  for (const program of before) {
    const twin = afterById.get(Number(program.id));
    if (twin === undefined) {
      out.push({ ...label(program), status: "removed", changes: [] });
      continue;
    }
    afterById.delete(Number(program.id));
    const changes: ValueChange[] = [];
    collectChanges(program, twin, "", changes);
    if (changes.length > 0) {
      out.push({ ...label(program), status: "changed", changes });
    }
  }
  for (const program of afterById.values()) {
    out.push({ ...label(program), status: "added", changes: [] });
  }
  return out.sort((x, y) => x.id - y.id);
}

/** Whether the two reports differ in anything but when they were taken. */
export function reportsDiffer(diff: ReportDiff): boolean {
  return diff.addedMaps.length + diff.removedMaps.length +
          diff.changedMaps.length + diff.programs.length > 0 ||
    diff.report.some((c) => !c.path.startsWith("/takenAt"));
}

/** The diff as one JSON document (u64 exact). */
export function diffToJson(diff: ReportDiff): string {
  return toJson(diff as unknown as JsonInput, { indent: 2 });
}

function show(value: Json | undefined): string {
  return value === undefined ? "(absent)" : toJson(value);
}

function changeLine(change: ValueChange, indent: string): string {
  return `${indent}${change.path || "(value)"}: ${show(change.before)} -> ${
    show(change.after)
  }\n`;
}

/**
 * The diff for people: report fields, then maps gone, maps new, and per
 * changed map its fields, globals and entries, one leaf per line.
 */
export function diffToText(diff: ReportDiff): string {
  const out: string[] = [];
  for (const change of diff.report) out.push(changeLine(change, ""));
  for (const program of diff.programs) {
    const sign = program.status === "added"
      ? "+"
      : program.status === "removed"
      ? "-"
      : "~";
    out.push(
      `${sign} prog ${program.id} "${program.name}"${
        program.status === "changed"
          ? ":"
          : `: only in the ${
            program.status === "added" ? "second" : "first"
          } report`
      }\n`,
    );
    for (const change of program.changes) {
      out.push(changeLine(change, "    "));
    }
  }
  for (const map of diff.removedMaps) {
    out.push(
      `- map ${map.id} "${map.name}" (${map.typeName}): only in the first report\n`,
    );
  }
  for (const map of diff.addedMaps) {
    out.push(
      `+ map ${map.id} "${map.name}" (${map.typeName}): only in the second report\n`,
    );
  }
  for (const map of diff.changedMaps) {
    const ids = map.idBefore === map.idAfter
      ? `${map.idBefore}`
      : `${map.idBefore} -> ${map.idAfter}`;
    out.push(`~ map ${ids} "${map.name}":\n`);
    for (const change of map.fields) out.push(changeLine(change, "    "));
    for (const change of map.globals) {
      out.push(changeLine(change, "    global "));
    }
    for (const entry of map.entries) {
      const sign = entry.status === "added"
        ? "+"
        : entry.status === "removed"
        ? "-"
        : "~";
      out.push(`    ${sign} key ${toJson(entry.key)}\n`);
      for (const change of entry.changes) {
        out.push(changeLine(change, "        "));
      }
    }
    if (map.uncomparedEntries > 0) {
      out.push(
        `    (${map.uncomparedEntries} entries in only one report not compared: a report left entries out)\n`,
      );
    }
  }
  out.push(
    `${diff.changedMaps.length} maps changed, ${diff.addedMaps.length} added, ${diff.removedMaps.length} removed, ${diff.unchangedMaps} unchanged${
      diff.programs.length ? `; ${diff.programs.length} programs differ` : ""
    }\n`,
  );
  return out.join("");
}
