/**
 * `bpfmap diff BEFORE.json AFTER.json`: what changed between two reports.
 *
 * @module
 */

import { parseJsonExact } from "../../btf/json.ts";
import { BpfmapError } from "../../errors.ts";
import { diffReports, diffToJson, diffToText } from "../../dump/diff.ts";
import { parse, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { writeText } from "../writer.ts";

async function readReport(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new BpfmapError(`Cannot read report ${path}: ${reason}`, {
      cause: error,
    });
  }
  try {
    return parseJsonExact(text);
  } catch (error) {
    throw new BpfmapError(
      `${path} is not JSON (${
        error instanceof Error ? error.message : String(error)
      })`,
      { cause: error, hint: "write reports with `bpfmap dump --json`" },
    );
  }
}

/** Runs `bpfmap diff ARGS`. */
export async function diff(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("diff", args, {
    json: { type: "boolean", short: "j" },
  });
  if (values.help) return context.help("diff");
  if (positionals.length !== 2) {
    throw new UsageError(
      `diff takes two report files, BEFORE and AFTER (got ${positionals.length})`,
      "diff",
    );
  }
  const [beforePath, afterPath] = positionals as [string, string];
  const result = diffReports(
    await readReport(beforePath),
    await readReport(afterPath),
    [beforePath, afterPath],
  );
  writeText(
    context.io.stdout,
    values.json ? `${diffToJson(result)}\n` : diffToText(result),
  );
  return 0;
}
