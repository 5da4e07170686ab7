/**
 * `bpfmap scx`: the sched_ext scheduler's state, one section at a time (the
 * active-scheduler decision first). The sections are the failure report's
 * (`SCHEDULER_SECTIONS` in src/dump/scheduler.ts): a new one shows up here
 * without touching this file.
 *
 * @module
 */

import { toJson } from "../../btf/json.ts";
import type { JsonInput } from "../../btf/json.ts";
import { gatherScheduler, schedulerLines } from "../../dump/scheduler.ts";
import { noPositionals, parse } from "../args.ts";
import type { Context } from "../context.ts";
import { SOURCE_OPTIONS, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

/** Runs `bpfmap scx ARGS`. */
export function scx(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("scx", args, {
    json: { type: "boolean", short: "j" },
    partial: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("scx"));
  noPositionals(positionals, "scx");
  return withSource(context, values, ({ accessor, description }) => {
    // Gathered whole before anything is written: never half a document.
    const report = gatherScheduler(accessor);
    writeText(
      context.io.stdout,
      values.json
        ? `${toJson(report as unknown as JsonInput)}\n`
        : `sched_ext on ${description}\n${
          schedulerLines(report).map((line) => `${line}\n`).join("")
        }`,
    );
    return context.finish(accessor, values.partial === true);
  });
}
