/**
 * `bpfmap find NAME`: the pin helper's answer, over any source.
 *
 * @module
 */

import { checkName, parse, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { mapInfoJson, mapTable } from "../format.ts";
import { findByName } from "../select.ts";
import { SOURCE_OPTIONS, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

/** Runs `bpfmap find ARGS`. */
export function find(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("find", args, {
    json: { type: "boolean", short: "j" },
    full: { type: "boolean" },
    partial: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("find"));
  if (positionals.length !== 1) {
    throw new UsageError("find takes exactly one NAME", "find");
  }
  const name = positionals[0]!;
  checkName(name, "NAME", "find");
  return withSource(context, values, ({ accessor }) => {
    const map = findByName(accessor, name, values.full === true);
    writeText(
      context.io.stdout,
      values.json ? `${mapInfoJson(map)}\n` : mapTable([map]),
    );
    return context.finish(accessor, values.partial === true);
  });
}
