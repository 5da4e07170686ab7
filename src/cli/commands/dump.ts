/**
 * `bpfmap dump`: one map's (or every same-named map's) entries, streamed as
 * bpftool's JSON or text; without a selector, the failure dump of every map.
 *
 * @module
 */

import type { BpfMapAccessor, BpfMapInfo } from "../../accessor/types.ts";
import { describeMap, MapGoneError } from "../../errors.ts";
import { writeFailureDump } from "../../dump/stream.ts";
import {
  checkSelector,
  noPositionals,
  parse,
  parseCount,
  UsageError,
  type Values,
} from "../args.ts";
import type { Context } from "../context.ts";
import { type DumpCount, errorLine, writeMapDump } from "../dump.ts";
import { mapInfoJson } from "../format.ts";
import { btfRenderer } from "../render.ts";
import { selectMaps } from "../select.ts";
import { type Source, SOURCE_OPTIONS, withSource } from "../source.ts";
import { OutputWriter } from "../writer.ts";

/** The largest `--batch-size`: past ~1024 the kernel's copy dominates anyway. */
export const MAX_BATCH_SIZE = 1 << 20;
/** Bytes of keys and values one batch may hold, whatever `--batch-size` says. */
export const MAX_BATCH_BYTES = 4 << 20;

/** Runs `bpfmap dump ARGS`. */
export function dump(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("dump", args, {
    id: { type: "string" },
    name: { type: "string" },
    json: { type: "boolean", short: "j" },
    "max-entries": { type: "string" },
    "batch-size": { type: "string" },
    hex: { type: "boolean" },
    recurse: { type: "boolean" },
    "follow-arena": { type: "boolean" },
    partial: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("dump"));
  noPositionals(positionals, "dump");
  const maxEntries = parseCount(
    values["max-entries"] as string | undefined,
    "--max-entries",
    "dump",
  );
  const batchSize = parseCount(
    values["batch-size"] as string | undefined,
    "--batch-size",
    "dump",
    MAX_BATCH_SIZE,
  );
  if (!checkSelector(values, "dump")) {
    for (const option of ["batch-size", "hex", "recurse"]) {
      if (values[option] !== undefined) {
        throw new UsageError(
          `--${option} applies to one map's dump: give --id N or --name NAME with it`,
          "dump",
        );
      }
    }
    return withSource(
      context,
      values,
      (source) => dumpEverything(context, source, values, maxEntries),
    );
  }
  if (values["follow-arena"] !== undefined) {
    throw new UsageError(
      "--follow-arena applies to the failure dump: leave out --id and --name (--json for the full pointees)",
      "dump",
    );
  }
  return withSource(
    context,
    values,
    (source) => dumpSelected(context, source, values, maxEntries, batchSize),
  );
}

function dumpSelected(
  context: Context,
  { accessor, cpus }: Source,
  values: Values,
  maxEntries: number | undefined,
  batchSize: number | undefined,
): number {
  const maps = selectMaps(accessor, values, "dump");
  const json = values.json === true;
  const several = maps.length > 1;
  const wrap = json && several;
  const failures: string[] = [];
  const skipped: string[] = [];
  using out = new OutputWriter(context.io.stdout);
  if (wrap) out.ascii("[");
  let first = true;
  for (const map of maps) {
    // Maps found by name may be freed before their turn: skip them, as
    // `list` skips maps freed mid-walk.
    if (several && isGone(accessor, map)) {
      context.note(`${describeMap(map)} was freed before its dump; skipped`);
      continue;
    }
    if (wrap) {
      out.text(
        `${first ? "" : ","}${mapInfoJson(map).slice(0, -1)},"elements":`,
      );
    } else if (!json && several) {
      out.text(`${first ? "" : "\n"}# map ${map.id} "${map.name}"\n`);
    }
    first = false;
    const count = writeMapDump(out, accessor, map, {
      json,
      cpus,
      renderer: values.hex ? undefined : btfRenderer(
        accessor,
        map,
        (message) => context.warn(message),
      ),
      maxBatchBytes: MAX_BATCH_BYTES,
      recurse: values.recurse === true,
      ...(maxEntries !== undefined ? { maxEntries } : {}),
      ...(batchSize !== undefined ? { batchSize } : {}),
    });
    if (wrap) out.ascii("}");
    account(context, map, count, { json, several, maxEntries }, {
      failures,
      skipped,
    });
  }
  if (wrap) out.ascii("]\n");
  if (failures.length > 0 && !several && !out.flushedAny) {
    // Nothing reached stdout yet: leave it empty rather than print a
    // document that holds only the error.
    out.discard();
  } else {
    out.end();
  }
  for (const failure of failures) context.line(`bpfmap: error: ${failure}`);
  const status = context.finish(accessor, values.partial === true, skipped);
  return failures.length > 0 ? 1 : status;
}

/** Whether `map` no longer exists. Unreadable is not gone: its dump will say why. */
function isGone(accessor: BpfMapAccessor, map: BpfMapInfo): boolean {
  try {
    return accessor.mapById(map.id) === null;
  } catch {
    return false;
  }
}

/** Sorts what one map's dump left out into failures, skips and notes. */
function account(
  context: Context,
  map: BpfMapInfo,
  count: DumpCount,
  { json, several, maxEntries }: {
    json: boolean;
    several: boolean;
    maxEntries: number | undefined;
  },
  { failures, skipped }: { failures: string[]; skipped: string[] },
): void {
  if (count.stoppedBy instanceof MapGoneError && several) {
    // One of several name matches went away: as `list` does, not a failure.
    context.note(`${describeMap(map)} was freed during its dump`);
  } else if (count.stoppedBy !== undefined) {
    failures.push(errorLine(count.stoppedBy));
  }
  if (count.entryErrors > 0) {
    skipped.push(
      `${describeMap(map)}: ${count.entryErrors} value${
        count.entryErrors === 1 ? "" : "s"
      } could not be read (listed with their error)`,
    );
  }
  if (json && count.omitted > 0) {
    context.note(
      `${describeMap(map)}: ${count.omitted} more entr${
        count.omitted === 1 ? "y" : "ies"
      } not shown (--max-entries ${maxEntries})`,
    );
  }
}

/**
 * `dump` with no selector: the failure dump of every map, streamed, with a
 * progress line on a terminal.
 */
function dumpEverything(
  context: Context,
  source: Source,
  values: Values,
  maxEntries: number | undefined,
): number {
  using out = new OutputWriter(context.io.stdout);
  const summary = writeFailureDump(out, source.accessor, {
    format: values.json === true ? "json" : "text",
    entryLimit: maxEntries ?? 64,
    numCpus: source.cpus,
    source: source.description,
    followArena: values["follow-arena"] === true,
    onMap: (index, total, map) =>
      context.progress(
        `dumping map ${index + 1}/${total}: ${map.id} "${map.name}"`,
      ),
  });
  context.progress("");
  out.end();
  if (summary.listError !== undefined) {
    context.line(`bpfmap: error: ${summary.listError}`);
    return 1;
  }
  // The accessor's problems are already in the summary (and the report).
  return context.finish(undefined, values.partial === true, summary.skipped);
}
