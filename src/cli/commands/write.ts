/**
 * `bpfmap write`: set fields of one map element by BTF path, live or in a
 * frozen guest's RAM, and print what changed.
 *
 * @module
 */

import { isFieldWriter } from "../../accessor/field_write.ts";
import { describeMap } from "../../errors.ts";
import { checkSelector, parse, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { selectMaps } from "../select.ts";
import { SOURCE_OPTIONS, SourceUsageError, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

const BYTE = /^(0x[0-9a-f]{1,2}|\d{1,3})$/i;
const INTEGER = /^(0x[0-9a-f]+|\d+)$/i;

/**
 * `--key`: an integer (an array index, or a hash key little-endian), or the
 * key's bytes separated by spaces as bpftool takes them (`"0x01 0 0 0"`).
 */
function parseKey(text: string): bigint | Uint8Array {
  const words = text.trim().split(/\s+/);
  if (words.length === 1 && INTEGER.test(words[0]!)) return BigInt(words[0]!);
  if (
    words.length > 1 && words.every((w) => BYTE.test(w) && Number(w) <= 255)
  ) {
    return Uint8Array.from(words, (w) => Number(w));
  }
  throw new UsageError(
    `--key "${text}" is not a key: give an integer or its bytes ("0x01 0x00 0x00 0x00")`,
    "write",
  );
}

function parseAssignment(text: string): [string, string] {
  const equals = text.indexOf("=");
  if (equals <= 0) {
    throw new UsageError(
      `"${text}" is not FIELD=VALUE (e.g. cfg.slice_ns=5000000)`,
      "write",
    );
  }
  return [text.slice(0, equals), text.slice(equals + 1)];
}

/** Runs `bpfmap write ARGS`. */
export function write(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("write", args, {
    id: { type: "string" },
    name: { type: "string" },
    key: { type: "string" },
    "allow-rodata": { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("write"));
  if (!checkSelector(values, "write")) {
    throw new UsageError("name a map with --id N or --name NAME", "write");
  }
  if (positionals.length === 0) {
    throw new UsageError(
      "give at least one FIELD=VALUE (e.g. g_counter=0)",
      "write",
    );
  }
  const assignments = positionals.map(parseAssignment);
  const key = values.key === undefined
    ? undefined
    : parseKey(values.key as string);
  if (values["guest-core"] !== undefined) {
    throw new SourceUsageError(
      "--guest-core is a copy of a guest's memory: writing it would change the file, never the guest; write through the RAM file (--guest-mem)",
    );
  }
  return withSource(context, values, ({ accessor, description }) => {
    if (!isFieldWriter(accessor)) {
      throw new SourceUsageError(`${description} cannot be written`);
    }
    const maps = selectMaps(accessor, values, "write");
    if (maps.length > 1) {
      throw new UsageError(
        `--name "${values.name}" names ${maps.length} maps (ids ${
          maps.map((m) => m.id).join(", ")
        }): pick one with --id`,
        "write",
      );
    }
    const map = maps[0]!;
    const result = accessor.writeFields(map, assignments, {
      ...(key !== undefined ? { key } : {}),
      ...(values["allow-rodata"] ? { allowReadonly: true } : {}),
    });
    for (const warning of result.warnings) context.warn(warning);
    const element = key === undefined
      ? "element 0"
      : `key ${values.key as string}`;
    let text = `${describeMap(map)}, ${element}:\n`;
    for (const change of result.changes) {
      text += `  ${change.path}: ${change.old} -> ${change.new}\n`;
    }
    writeText(context.io.stdout, text);
    return 0;
  }, { writable: true });
}
