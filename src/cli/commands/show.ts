/**
 * `bpfmap show`: one map's details (or every map with a name).
 *
 * @module
 */

import { checkSelector, noPositionals, parse, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { mapInfoJson, mapTable } from "../format.ts";
import { selectMaps } from "../select.ts";
import { SOURCE_OPTIONS, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

/** Runs `bpfmap show ARGS`. */
export function show(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("show", args, {
    id: { type: "string" },
    name: { type: "string" },
    json: { type: "boolean", short: "j" },
    partial: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("show"));
  noPositionals(positionals, "show");
  if (!checkSelector(values, "show")) {
    throw new UsageError("name a map with --id N or --name NAME", "show");
  }
  return withSource(context, values, ({ accessor }) => {
    const maps = selectMaps(accessor, values, "show");
    if (values.json) {
      const objects = maps.map(mapInfoJson);
      writeText(
        context.io.stdout,
        objects.length === 1 ? `${objects[0]}\n` : `[${objects.join(",")}]\n`,
      );
    } else {
      writeText(context.io.stdout, mapTable(maps));
    }
    return context.finish(accessor, values.partial === true);
  });
}
