/**
 * The failure dump written as it is read: JSON or text, one entry in memory
 * at a time.
 *
 * @module
 */

import type { BpfMapAccessor } from "../accessor/types.ts";
import {
  type DumpStateOptions,
  type FailureDumpSummary,
  streamFailureDump,
} from "./dump_state.ts";
import { JsonReportWriter, type TextOut, TextReportWriter } from "./format.ts";

/** Options for {@linkcode writeFailureDump}. */
export interface WriteFailureDumpOptions extends DumpStateOptions {
  /** `json` (schema `bpfmap.failure-dump/3`) or `text`. */
  format: "json" | "text";
}

/**
 * Reads every map through `accessor` and writes the failure dump to `out`
 * as it goes (see `streamFailureDump`), so its size is bounded by the
 * output, not by memory.
 *
 * @returns whether the maps could be listed, and what was left out
 */
export function writeFailureDump(
  out: TextOut,
  accessor: BpfMapAccessor,
  options: WriteFailureDumpOptions,
): FailureDumpSummary {
  const sink = options.format === "json"
    ? new JsonReportWriter(out)
    : new TextReportWriter(out);
  return streamFailureDump(accessor, sink, options);
}
