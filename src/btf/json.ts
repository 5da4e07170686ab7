/**
 * A JSON writer that keeps 64-bit (and wider) integers exact.
 *
 * @module
 */

/**
 * Anything {@linkcode toJson} can write: JSON values plus `bigint` (written
 * as bare integer digits) and `undefined` (written as `null` in arrays,
 * skipped as an object property).
 */
export type JsonInput =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | readonly JsonInput[]
  | { readonly [key: string]: JsonInput };

/** Options for {@linkcode toJson}. */
export interface ToJsonOptions {
  /** Indent per level (spaces or a string); omitted or 0 writes one line. */
  indent?: number | string;
}

function numberText(value: number): string {
  if (Number.isFinite(value)) return Object.is(value, -0) ? "0" : String(value);
  // JSON has no NaN or infinity: write them as strings rather than emit
  // invalid JSON or silently turn them into null.
  return JSON.stringify(String(value));
}

function write(
  value: JsonInput,
  indent: string,
  prefix: string,
  out: string[],
): void {
  if (value === null || value === undefined) {
    out.push("null");
    return;
  }
  switch (typeof value) {
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "number":
      out.push(numberText(value));
      return;
    case "bigint":
      out.push(value.toString());
      return;
    case "string":
      out.push(JSON.stringify(value));
      return;
  }
  const inner = prefix + indent;
  const open = indent ? "\n" + inner : "";
  const separator = indent ? ",\n" + inner : ",";
  const close = indent ? "\n" + prefix : "";
  if (Array.isArray(value)) {
    if (value.length === 0) {
      out.push("[]");
      return;
    }
    out.push("[", open);
    value.forEach((item: JsonInput, i: number) => {
      if (i > 0) out.push(separator);
      write(item, indent, inner, out);
    });
    out.push(close, "]");
    return;
  }
  const record = value as { readonly [key: string]: JsonInput };
  const keys = Object.keys(record).filter((key) => record[key] !== undefined);
  if (keys.length === 0) {
    out.push("{}");
    return;
  }
  out.push("{", open);
  keys.forEach((key, i) => {
    if (i > 0) out.push(separator);
    out.push(JSON.stringify(key), indent ? ": " : ":");
    write(record[key], indent, inner, out);
  });
  out.push(close, "}");
}

/**
 * Serializes `value` as JSON text that is always valid and loses no
 * precision: `bigint` becomes bare integer digits (valid JSON of any
 * magnitude; parse it with a reviver that reads the source text to keep it
 * exact), `NaN`/`Infinity` become the strings `"NaN"`/`"Infinity"`, -0 becomes 0.
 *
 * @param value the value to write
 * @param options `indent` for pretty output
 * @returns the JSON text
 *
 * @example Write a u64 exactly
 * ```ts
 * import { toJson } from "./json.ts";
 * console.log(toJson({ v: 18446744073709551615n })); // {"v":18446744073709551615}
 * ```
 */
export function toJson(value: JsonInput, options: ToJsonOptions = {}): string {
  const indent = typeof options.indent === "number"
    ? " ".repeat(Math.max(0, Math.min(10, options.indent)))
    : options.indent ?? "";
  const out: string[] = [];
  write(value, indent, "", out);
  return out.join("");
}

/**
 * Parses JSON text, turning every integer literal outside the safe range
 * (|n| > 2^53-1) into a `bigint` so that {@linkcode toJson} output
 * round-trips exactly.
 *
 * @param text JSON text
 * @returns the parsed value
 * @throws {SyntaxError} when the text is not JSON
 *
 * @example Read a u64 back
 * ```ts
 * import { parseJsonExact } from "./json.ts";
 * console.log(parseJsonExact("[18446744073709551615]")); // [ 18446744073709551615n ]
 * ```
 */
export function parseJsonExact(text: string): unknown {
  const reviver = (
    _key: string,
    value: unknown,
    context?: { source?: string },
  ): unknown => {
    if (
      typeof value === "number" && !Number.isSafeInteger(value) &&
      context?.source !== undefined && /^-?\d+$/.test(context.source)
    ) {
      return BigInt(context.source);
    }
    return value;
  };
  return JSON.parse(text, reviver as (key: string, value: unknown) => unknown);
}
