/**
 * Rendered values as text for people: C-initializer-like `{name = value}`,
 * one line when short, indented when long. The rendering itself (bytes to a
 * value tree) is in `render.ts`; this file only lays the tree out.
 *
 * @module
 */

import { isUnnamedMemberKey, type RenderedValue } from "./render.ts";

/** Options for {@linkcode formatValue}. */
export interface FormatValueOptions {
  /** Lines up to this many characters stay on one line (default 100). */
  width?: number;
  /** Indent per nesting level (default two spaces). */
  indent?: string;
}

function formatScalar(value: RenderedValue): string | undefined {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
    case "bigint":
      return String(value);
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "string":
      return JSON.stringify(value);
    default:
      return undefined;
  }
}

/** How {@linkcode formatValue} writes a member name (quoted unless a C-like name). */
export function formatKey(key: string): string {
  return /^[A-Za-z_.][A-Za-z0-9_.]*$/.test(key) ? key : JSON.stringify(key);
}

function formatAt(
  value: RenderedValue,
  prefix: string,
  options: Required<FormatValueOptions>,
): string {
  const scalar = formatScalar(value);
  if (scalar !== undefined) return scalar;
  const inner = prefix + options.indent;
  let parts: string[];
  let open: string;
  let close: string;
  if (Array.isArray(value)) {
    parts = value.map((v) => formatAt(v, inner, options));
    [open, close] = ["[", "]"];
  } else {
    const record = value as { [name: string]: RenderedValue };
    parts = Object.keys(record).map((key) =>
      isUnnamedMemberKey(key)
        ? formatAt(record[key]!, inner, options)
        : `${formatKey(key)} = ${formatAt(record[key]!, inner, options)}`
    );
    [open, close] = ["{", "}"];
  }
  if (parts.length === 0) return open + close;
  const flat = `${open}${parts.join(", ")}${close}`;
  if (flat.length + prefix.length <= options.width && !flat.includes("\n")) {
    return flat;
  }
  return `${open}\n${inner}${parts.join(`,\n${inner}`)}\n${prefix}${close}`;
}

/**
 * Formats a rendered value as text for people: C-initializer-like
 * `{name = value, ...}`, arrays as `[a, b]`, strings quoted, 64-bit values
 * exact; short values on one line, longer ones indented.
 *
 * @param value a value from {@linkcode renderValue}
 * @param options line width and indent
 * @returns the text
 *
 * @example Format a struct
 * ```ts
 * import { formatValue } from "./format_value.ts";
 * console.log(formatValue({ pid: 1, comm: "init", bytes: 5n })); // {pid = 1, comm = "init", bytes = 5}
 * ```
 */
export function formatValue(
  value: RenderedValue,
  options: FormatValueOptions = {},
): string {
  return formatAt(value, "", {
    width: options.width ?? 100,
    indent: options.indent ?? "  ",
  });
}
