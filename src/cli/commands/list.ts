/**
 * `bpfmap list`: every map, as a table or bpftool's JSON array.
 *
 * @module
 */

import { noPositionals, parse } from "../args.ts";
import type { Context } from "../context.ts";
import { mapInfoJson, mapTable } from "../format.ts";
import { SOURCE_OPTIONS, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

/** Runs `bpfmap list ARGS`. */
export function list(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("list", args, {
    json: { type: "boolean", short: "j" },
    partial: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("list"));
  noPositionals(positionals, "list");
  return withSource(context, values, ({ accessor }) => {
    const maps = accessor.maps();
    writeText(
      context.io.stdout,
      values.json ? `[${maps.map(mapInfoJson).join(",")}]\n` : mapTable(maps),
    );
    return context.finish(accessor, values.partial === true);
  });
}
