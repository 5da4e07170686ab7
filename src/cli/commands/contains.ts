/**
 * `bpfmap contains`: a bloom filter membership test. Exit 0 "maybe present"
 * (bloom filters have false positives), 1 "absent" (certain), 2 for a usage
 * mistake or an error: as grep does, so a script never reads a failure as
 * "absent".
 *
 * @module
 */

import { GuestMemMapAccessor } from "../../accessor/guest.ts";
import { guestBloomContains } from "../../accessor/guest_types.ts";
import { bloomContains } from "../../accessor/maptypes/bloom.ts";
import type { BpfMapAccessor, BpfMapInfo } from "../../accessor/types.ts";
import { MapType, mapTypeName } from "../../sys/constants.ts";
import { parse, parseId, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { SOURCE_OPTIONS, SourceUsageError, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

/**
 * The candidate's bytes: with `hex`, the arguments are hex bytes (`01 02`,
 * `0x01 0x02` or `0102`); otherwise one integer (decimal or `0x` hex, a
 * leading `-` for two's complement) stored little-endian in `size` bytes.
 */
export function parseCandidate(
  args: string[],
  hex: boolean,
  size: number,
): Uint8Array {
  if (args.length === 0) {
    throw new UsageError("give the KEY to test", "contains");
  }
  if (hex) {
    const digits = args.flatMap((a) => a.trim().split(/[\s:]+/))
      .map((a) => a.replace(/^0x/i, "")).join("");
    if (!/^([0-9a-f]{2})+$/i.test(digits)) {
      throw new UsageError(
        `--hex "${args.join(" ")}" is not hex bytes (e.g. 0a 00 00 01)`,
        "contains",
      );
    }
    const bytes = new Uint8Array(digits.length / 2);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
    }
    if (bytes.length !== size) {
      throw new UsageError(
        `KEY is ${bytes.length} bytes but the filter's value size is ${size}`,
        "contains",
      );
    }
    return bytes;
  }
  if (args.length > 1) {
    throw new UsageError(
      `KEY is one integer; for bytes give --hex (got ${args.length} arguments)`,
      "contains",
    );
  }
  const text = args[0]!;
  if (!/^-?(\d+|0x[0-9a-f]+)$/i.test(text)) {
    throw new UsageError(
      `KEY "${text}" is not an integer (decimal or 0x hex); for bytes give --hex`,
      "contains",
    );
  }
  const negative = text.startsWith("-");
  const magnitude = BigInt(negative ? text.slice(1) : text);
  const bits = BigInt(size * 8);
  const value = negative ? (1n << bits) - magnitude : magnitude;
  if (
    size === 0 || value < 0n || value >= 1n << bits ||
    (negative && magnitude > 1n << (bits - 1n))
  ) {
    throw new UsageError(
      `KEY ${text} does not fit the filter's ${size}-byte value`,
      "contains",
    );
  }
  const bytes = new Uint8Array(size);
  let rest = value;
  for (let i = 0; i < size; i++) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

function membership(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  value: Uint8Array,
): boolean {
  return accessor instanceof GuestMemMapAccessor
    ? guestBloomContains(accessor, map, value)
    : bloomContains(map, value);
}

/** Runs `bpfmap contains ARGS`. */
export async function contains(
  context: Context,
  args: string[],
): Promise<number> {
  const { values, positionals } = parse("contains", args, {
    id: { type: "string" },
    hex: { type: "boolean" },
    json: { type: "boolean", short: "j" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return context.help("contains");
  if (values.id === undefined) {
    throw new UsageError("name the bloom filter with --id N", "contains");
  }
  const id = parseId(values.id as string, "contains");
  if (positionals.length === 0) {
    throw new UsageError("give the KEY to test", "contains");
  }
  try {
    return await withSource(context, values, ({ accessor }) => {
      const map = accessor.mapById(id);
      if (map === null) {
        context.line(`bpfmap: error: no map with id ${id}`);
        return 2;
      }
      if (map.type !== MapType.BLOOM_FILTER) {
        throw new UsageError(
          `map ${id} "${map.name}" is a ${
            mapTypeName(map.type)
          } map; contains tests bloom filters`,
          "contains",
        );
      }
      const value = parseCandidate(
        positionals,
        values.hex === true,
        map.valueSize,
      );
      const present = membership(accessor, map, value);
      writeText(
        context.io.stdout,
        values.json
          ? `{"id":${id},"present":${present ? '"maybe"' : "false"}}\n`
          : `${present ? "maybe present" : "absent"}\n`,
      );
      return present ? 0 : 1;
    });
  } catch (error) {
    if (error instanceof UsageError || error instanceof SourceUsageError) {
      throw error;
    }
    // 1 means "absent" here: a failure must not look like an answer
    context.line(
      `bpfmap: error: ${error instanceof Error ? error.message : error}`,
    );
    return 2;
  }
}
