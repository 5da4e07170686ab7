/**
 * Writers for a failure-dump report: exact JSON and grouped text.
 *
 * @module
 */

import { type JsonInput, toJson } from "../btf/json.ts";
import { formatValue } from "../btf/render.ts";
import type { FailureDumpReport, MapDump } from "./report.ts";

/** Options for {@linkcode reportToJson}. */
export interface ReportToJsonOptions {
  /** Indent per level; omitted writes one line. */
  indent?: number | string;
}

/**
 * The report as JSON text, following the schema documented on
 * {@linkcode FailureDumpReport} (`schema: "bpfmap.failure-dump/1"`). 64-bit
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

function indentLines(text: string, prefix: string): string {
  return text.split("\n").join(`\n${prefix}`);
}

function mapHeading(map: MapDump): string {
  const kind = map.kind === "global-data"
    ? `${map.typeName}, global data`
    : map.typeName;
  return `== map ${map.id} ${map.name} (${kind}) ==`;
}

function mapText(map: MapDump, lines: string[]): void {
  lines.push(mapHeading(map));
  if (map.fullName) lines.push(`full name: ${map.fullName}`);
  lines.push(
    `key ${map.keySize} B, value ${map.valueSize} B, max_entries ${map.maxEntries}, flags 0x${
      map.flags.toString(16)
    }, btf ${map.btfId}${map.frozen ? ", frozen" : ""}`,
  );
  for (const global of map.globals ?? []) {
    lines.push(
      `  ${global.name} = ${indentLines(formatValue(global.value), "  ")}`,
    );
  }
  if (map.arena) {
    lines.push(
      `  ${map.arena.presentPages} of ${map.arena.totalPages} pages present${
        map.arena.pageIndexes.length
          ? `: ${map.arena.pageIndexes.join(", ")}`
          : ""
      }`,
    );
  }
  for (const entry of map.entries) {
    const owner = entry.owner !== undefined ? `[${entry.owner}] ` : "";
    const key = formatValue(entry.key);
    if (entry.values) {
      lines.push(`  ${owner}${indentLines(key, "  ")}:`);
      for (const { cpu, value } of entry.values) {
        lines.push(
          `    cpu ${cpu}: ${indentLines(formatValue(value), "    ")}`,
        );
      }
    } else {
      const value = formatValue(entry.value ?? null);
      lines.push(
        `  ${owner}${indentLines(key, "  ")}: ${indentLines(value, "  ")}`,
      );
    }
  }
  if (
    map.entries.length === 0 && !map.globals && !map.arena &&
    map.kind !== "unsupported"
  ) {
    lines.push("  (no entries)");
  }
  if (map.omittedEntries > 0) {
    lines.push(`  ... ${map.omittedEntries} more not shown`);
  }
  for (const note of map.notes) lines.push(`  note: ${note}`);
  for (const error of map.errors) lines.push(`  error: ${error}`);
}

/**
 * The report as text for people: a header (when, where, kernel), then one
 * block per map with its info and its entries (`key: value`, per-CPU values
 * one line per CPU) or, for global data, one `name = value` line per
 * variable; omitted counts, notes and errors at the end of each block.
 *
 * @param report a report from `dumpState`
 * @returns the text, ending with a newline
 *
 * @example Print a report
 * ```ts ignore
 * import { dumpState, reportToText } from "./mod.ts";
 * console.error(reportToText(dumpState(accessor)));
 * ```
 */
export function reportToText(report: FailureDumpReport): string {
  const lines = [
    "bpfmap failure dump",
    `taken:  ${report.takenAt}`,
    `source: ${report.source}`,
    `kernel: ${report.kernelRelease}`,
    `maps:   ${report.maps.length} (at most ${report.entryLimit} entries each)`,
  ];
  for (const error of report.errors) lines.push(`error: ${error}`);
  for (const map of report.maps) {
    lines.push("");
    mapText(map, lines);
  }
  return lines.join("\n") + "\n";
}
