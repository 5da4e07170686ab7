/**
 * Field paths through BTF, for writes: `"cfg.slice_ns"`, `"arr[3].x"` against
 * a map's value type (a DATASEC for global data, whose first component is a
 * variable; a struct or union, whose anonymous members are looked through as
 * C does; an array) resolve to the bytes and bits the field occupies, and a
 * textual value encodes into those bits for the field's type.
 *
 * Only little-endian layouts are handled: every architecture bpfmap reads
 * (x86-64, aarch64) is little-endian, and BPF's own byte order follows the host.
 *
 * @module
 */

import { FieldError } from "../errors.ts";
import type { Btf } from "./btf.ts";
import { BtfKind, btfKindName } from "./kind.ts";
import type { BtfMember, BtfType } from "./types.ts";

/** Where a field lives in a value, as {@linkcode resolveFieldPath} finds it. */
export interface FieldLocation {
  /** The path as given. */
  path: string;
  /** First byte the field touches, from the start of the value. */
  byteOffset: number;
  /** Bytes the field touches (a bitfield: the bytes its bits span). */
  byteSize: number;
  /** First bit of a bitfield inside the byte at `byteOffset` (0 otherwise). */
  bitOffset: number;
  /** Width of a bitfield in bits; 0 when the field is not a bitfield. */
  bitSize: number;
  /** The field's type id (typedefs and qualifiers kept, for its name). */
  typeId: number;
  /** The field's C type, e.g. `"u32"`, `"enum color"`, `"char[16]"`. */
  typeName: string;
}

// Paths come from command lines: the bound keeps a hostile one from nesting forever.
const MAX_COMPONENTS = 64;

type Token = { name: string } | { index: number };

function tokenize(path: string): Token[] | string {
  const tokens: Token[] = [];
  // At the start a name needs no dot; after that a member is ".name".
  const component = /\[(\d+)\]|(?:^|\.)([A-Za-z_][A-Za-z0-9_]*)/y;
  let at = 0;
  while (at < path.length) {
    if (tokens.length >= MAX_COMPONENTS) {
      return `has more than ${MAX_COMPONENTS} components`;
    }
    component.lastIndex = at;
    const match = component.exec(path);
    if (!match) {
      return `is not a path: unexpected "${
        path.slice(at, at + 8)
      }" at character ${at + 1} (paths look like "var.member[2].x")`;
    }
    tokens.push(
      match[1] !== undefined
        ? { index: Number(match[1]) }
        : { name: match[2]! },
    );
    at = component.lastIndex;
  }
  if (tokens.length === 0) return "is empty: name a field";
  return tokens;
}

/**
 * The C spelling of type `id`, for messages: typedef names as written,
 * `struct x`, `enum x`, `char[16]`, `int *`.
 */
export function cTypeName(btf: Btf, id: number, depth = 0): string {
  if (id === 0) return "void";
  if (depth > 16) return "...";
  const t = btf.type(id);
  switch (t.kind) {
    case BtfKind.INT:
    case BtfKind.FLOAT:
    case BtfKind.TYPEDEF:
      return t.name;
    case BtfKind.STRUCT:
      return t.name ? `struct ${t.name}` : "struct (anonymous)";
    case BtfKind.UNION:
      return t.name ? `union ${t.name}` : "union (anonymous)";
    case BtfKind.ENUM:
    case BtfKind.ENUM64:
      return t.name ? `enum ${t.name}` : "enum (anonymous)";
    case BtfKind.FWD:
      return `${t.union ? "union" : "struct"} ${t.name}`;
    case BtfKind.PTR:
      return `${cTypeName(btf, t.type, depth + 1)} *`;
    case BtfKind.ARRAY:
      return `${cTypeName(btf, t.type, depth + 1)}[${t.nelems}]`;
    case BtfKind.CONST:
      return `const ${cTypeName(btf, t.type, depth + 1)}`;
    case BtfKind.VOLATILE:
      return `volatile ${cTypeName(btf, t.type, depth + 1)}`;
    case BtfKind.RESTRICT:
    case BtfKind.TYPE_TAG:
      return cTypeName(btf, t.type, depth + 1);
    case BtfKind.DATASEC:
      return `section ${t.name}`;
    default:
      return btfKindName(t.kind).toLowerCase();
  }
}

/** A member by name, looking through anonymous struct/union members; offsets summed. */
function findMember(
  btf: Btf,
  compositeId: number,
  name: string,
  depth: number,
): BtfMember | undefined {
  if (depth > MAX_COMPONENTS) return undefined;
  const t = btf.type(compositeId);
  if (t.kind !== BtfKind.STRUCT && t.kind !== BtfKind.UNION) return undefined;
  for (const member of t.members) {
    if (member.name === name) return member;
  }
  for (const member of t.members) {
    if (member.name !== "") continue;
    const inner = findMember(btf, btf.resolve(member.type), name, depth + 1);
    if (inner) {
      return { ...inner, bitOffset: member.bitOffset + inner.bitOffset };
    }
  }
  return undefined;
}

/** Names a struct offers, anonymous members' names included (for "did you mean"). */
function memberNames(btf: Btf, compositeId: number, depth = 0): string[] {
  const t = btf.type(compositeId);
  if (t.kind !== BtfKind.STRUCT && t.kind !== BtfKind.UNION) return [];
  return t.members.flatMap((m) =>
    m.name !== ""
      ? [m.name]
      : depth < MAX_COMPONENTS
      ? memberNames(btf, btf.resolve(m.type), depth + 1)
      : []
  );
}

function listed(names: string[]): string {
  const shown = names.slice(0, 12).join(", ");
  return names.length > 12 ? `${shown}, ... (${names.length} in all)` : shown;
}

/**
 * Where `path` lives in a value of type `valueTypeId`.
 *
 * @param btf the BTF the value type lives in
 * @param valueTypeId the map's value type (a DATASEC for global data)
 * @param path e.g. `"g_counter"`, `"cfg.mode"`, `"slots[3].pid"`, `"[2]"`
 * @returns the bytes, bits and type of the field
 * @throws {FieldError} naming the path and the type it could not go through
 *
 * @example The byte offset of a `.bss` variable
 * ```ts ignore
 * const field = resolveFieldPath(btf, map.btfValueTypeId, "g_counter");
 * console.log(field.byteOffset, field.typeName);
 * ```
 */
export function resolveFieldPath(
  btf: Btf,
  valueTypeId: number,
  path: string,
): FieldLocation {
  const tokens = tokenize(path);
  if (typeof tokens === "string") throw new FieldError(null, path, "", tokens);
  let typeId = valueTypeId;
  let bitOffset = 0;
  let bitfieldSize = 0;
  let walked = "";
  for (const token of tokens) {
    const resolved = btf.resolve(typeId);
    const t = btf.type(resolved);
    const here = walked === "" ? "the value" : `"${walked}"`;
    if ("index" in token) {
      if (t.kind !== BtfKind.ARRAY) {
        throw new FieldError(
          null,
          path,
          "",
          `cannot index ${here}: it is ${cTypeName(btf, typeId)}, not an array`,
        );
      }
      if (token.index >= t.nelems) {
        throw new FieldError(
          null,
          path,
          "",
          `index ${token.index} is past the end of ${here} (${
            cTypeName(btf, typeId)
          }: indexes 0..${t.nelems - 1})`,
        );
      }
      bitOffset += token.index * btf.sizeOf(t.type) * 8;
      bitfieldSize = 0;
      typeId = t.type;
      walked += `[${token.index}]`;
      continue;
    }
    const name = token.name;
    if (t.kind === BtfKind.DATASEC) {
      const variable = btf.datasecVariables(resolved).find((v) =>
        v.name === name
      );
      if (!variable) {
        throw new FieldError(
          null,
          path,
          "",
          `has no variable "${name}" in section ${t.name} (variables: ${
            listed(btf.datasecVariables(resolved).map((v) => v.name))
          })`,
        );
      }
      bitOffset += variable.offset * 8;
      bitfieldSize = 0;
      typeId = variable.type;
    } else if (t.kind === BtfKind.STRUCT || t.kind === BtfKind.UNION) {
      const member = findMember(btf, resolved, name, 0);
      if (!member) {
        throw new FieldError(
          null,
          path,
          "",
          `has no member "${name}" in ${here} (${cTypeName(btf, typeId)}: ${
            listed(memberNames(btf, resolved))
          })`,
        );
      }
      bitOffset += member.bitOffset;
      bitfieldSize = member.bitfieldSize;
      typeId = member.type;
    } else {
      throw new FieldError(
        null,
        path,
        "",
        `cannot take member "${name}" of ${here}: it is ${
          cTypeName(btf, typeId)
        }, not a struct, union or data section`,
      );
    }
    walked += walked === "" ? name : `.${name}`;
  }
  const final = btf.type(btf.resolve(typeId));
  // Old-style bitfields keep their bits in the INT record, not the member.
  if (
    bitfieldSize === 0 && final.kind === BtfKind.INT &&
    (final.bitOffset !== 0 || final.bits !== final.size * 8)
  ) {
    bitOffset += final.bitOffset;
    bitfieldSize = final.bits;
  }
  const typeName = cTypeName(btf, typeId);
  if (bitfieldSize > 0) {
    const inByte = bitOffset % 8;
    return {
      path,
      byteOffset: Math.floor(bitOffset / 8),
      byteSize: Math.ceil((inByte + bitfieldSize) / 8),
      bitOffset: inByte,
      bitSize: bitfieldSize,
      typeId,
      typeName: `${typeName} : ${bitfieldSize}`,
    };
  }
  return {
    path,
    byteOffset: bitOffset / 8,
    byteSize: btf.sizeOf(typeId),
    bitOffset: 0,
    bitSize: 0,
    typeId,
    typeName,
  };
}

/** The field's bits as an unsigned little-endian number. */
function getBits(field: FieldLocation, value: Uint8Array): bigint {
  let bits = 0n;
  for (let i = field.byteSize - 1; i >= 0; i--) {
    bits = (bits << 8n) | BigInt(value[field.byteOffset + i]!);
  }
  if (field.bitSize === 0) return bits;
  return (bits >> BigInt(field.bitOffset)) &
    ((1n << BigInt(field.bitSize)) - 1n);
}

/** Stores `bits` (already cut to the field's width) leaving neighbouring bits alone. */
function setBits(field: FieldLocation, value: Uint8Array, bits: bigint): void {
  let word = bits;
  if (field.bitSize > 0) {
    let old = 0n;
    for (let i = field.byteSize - 1; i >= 0; i--) {
      old = (old << 8n) | BigInt(value[field.byteOffset + i]!);
    }
    const mask = ((1n << BigInt(field.bitSize)) - 1n) <<
      BigInt(field.bitOffset);
    word = (old & ~mask) | ((bits << BigInt(field.bitOffset)) & mask);
  }
  for (let i = 0; i < field.byteSize; i++) {
    value[field.byteOffset + i] = Number(word & 0xffn);
    word >>= 8n;
  }
}

function widthOf(field: FieldLocation, size: number): number {
  return field.bitSize > 0 ? field.bitSize : size * 8;
}

const INTEGER = /^([+-]?)(0x[0-9a-f]+|0o[0-7]+|0b[01]+|\d+)$/i;

function parseInteger(text: string): bigint | null {
  const match = INTEGER.exec(text.trim());
  if (!match) return null;
  const magnitude = BigInt(match[2]!);
  return match[1] === "-" ? -magnitude : magnitude;
}

/** What kind of scalar a field holds, after typedefs and qualifiers. */
type Scalar =
  | { kind: "int"; signed: boolean; size: number }
  | { kind: "bool"; size: number }
  | { kind: "enum"; type: BtfType & { kind: 6 | 19 }; signed: boolean }
  | { kind: "float"; size: number }
  | { kind: "chars"; nelems: number };

function scalarOf(btf: Btf, field: FieldLocation): Scalar | string {
  const t = btf.type(btf.resolve(field.typeId));
  switch (t.kind) {
    case BtfKind.INT:
      return t.bool
        ? { kind: "bool", size: t.size }
        : { kind: "int", signed: t.signed, size: t.size };
    case BtfKind.ENUM:
    case BtfKind.ENUM64:
      return { kind: "enum", type: t, signed: t.signed };
    case BtfKind.FLOAT:
      return t.size === 4 || t.size === 8
        ? { kind: "float", size: t.size }
        : `is a ${t.size}-byte float; bpfmap writes 4- and 8-byte floats only`;
    case BtfKind.ARRAY: {
      const element = btf.type(btf.resolve(t.type));
      if (
        element.kind === BtfKind.INT && element.size === 1 && !element.bool
      ) {
        return { kind: "chars", nelems: t.nelems };
      }
      return `is an array: name one element, e.g. "${field.path}[0]"`;
    }
    case BtfKind.STRUCT:
    case BtfKind.UNION:
      return `is a ${
        t.kind === BtfKind.STRUCT ? "struct" : "union"
      }: name one of its members, e.g. "${field.path}.${
        memberNames(btf, t.id)[0] ?? "member"
      }"`;
    case BtfKind.PTR:
      return "is a pointer: bpfmap writes integers, enums, bools, floats and char arrays, never kernel addresses";
    default:
      return `is a ${
        btfKindName(t.kind).toLowerCase()
      }: bpfmap writes integers, enums, bools, floats and char arrays`;
  }
}

function checkRange(
  field: FieldLocation,
  number: bigint,
  text: string,
  signed: boolean,
  width: number,
): void {
  const w = BigInt(width);
  const min = signed ? -(1n << (w - 1n)) : 0n;
  const max = signed ? (1n << (w - 1n)) - 1n : (1n << w) - 1n;
  if (number < min || number > max) {
    throw new FieldError(
      null,
      field.path,
      field.typeName,
      `cannot hold ${text}: the range is ${min}..${max}`,
    );
  }
}

const latin1 = new TextDecoder("latin1");

/**
 * Encodes `text` into the field's bytes of `value` (the whole element),
 * leaving every other byte and, for a bitfield, every neighbouring bit as it
 * was. Integers: decimal, `0x`, `0o`, `0b`, range-checked for the field's
 * width and signedness (u64 and 128-bit exact). Enums: an enumerator name or
 * a number that fits. Bools: `true`, `false`, `1`, `0`. Floats: a decimal
 * number. Char arrays: a string, at most one byte shorter than the array
 * (the rest is NUL).
 *
 * @throws {FieldError} when the text does not fit the field's type
 */
export function encodeFieldValue(
  btf: Btf,
  field: FieldLocation,
  text: string,
  value: Uint8Array,
): void {
  if (field.byteOffset + field.byteSize > value.length) {
    throw new FieldError(
      null,
      field.path,
      field.typeName,
      `ends at byte ${
        field.byteOffset + field.byteSize
      }, past the ${value.length}-byte value`,
    );
  }
  const scalar = scalarOf(btf, field);
  if (typeof scalar === "string") {
    throw new FieldError(null, field.path, field.typeName, scalar);
  }
  const fail = (problem: string): never => {
    throw new FieldError(null, field.path, field.typeName, problem);
  };
  switch (scalar.kind) {
    case "bool": {
      const word = text.trim().toLowerCase();
      const bit = word === "true" || word === "1"
        ? 1n
        : word === "false" || word === "0"
        ? 0n
        : fail(`cannot hold "${text}": give true, false, 1 or 0`);
      setBits(field, value, bit);
      return;
    }
    case "int": {
      const number = parseInteger(text) ??
        fail(`cannot hold "${text}": give an integer (decimal, 0x, 0o or 0b)`);
      const width = widthOf(field, scalar.size);
      checkRange(field, number, text.trim(), scalar.signed, width);
      setBits(field, value, BigInt.asUintN(width, number));
      return;
    }
    case "enum": {
      const width = widthOf(field, scalar.type.size);
      const named = scalar.type.values.find((v) => v.name === text.trim());
      const number = named?.value ?? parseInteger(text) ??
        fail(
          `has no enumerator "${text}" (${
            listed(scalar.type.values.map((v) => v.name))
          }; or give a number)`,
        );
      // BTF's signedness flag is absent on older compilers' enums, so any
      // number whose bits fit the width is taken, signed or not.
      const w = BigInt(width);
      if (number < -(1n << (w - 1n)) || number > (1n << w) - 1n) {
        fail(
          `cannot hold ${number}: ${width} bits hold ${-(1n << (w - 1n))}..${
            (1n << w) - 1n
          }`,
        );
      }
      setBits(field, value, BigInt.asUintN(width, number));
      return;
    }
    case "float": {
      const trimmed = text.trim();
      const number =
        /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$|^[+-]?(inf|infinity|nan)$/i
            .test(trimmed)
          ? Number(
            trimmed.replace(/inf(inity)?$/i, "Infinity").replace(
              /nan$/i,
              "NaN",
            ),
          )
          : fail(`cannot hold "${text}": give a decimal number`);
      const bytes = new Uint8Array(scalar.size);
      const view = new DataView(bytes.buffer);
      if (scalar.size === 4) view.setFloat32(0, number, true);
      else view.setFloat64(0, number, true);
      value.set(bytes, field.byteOffset);
      return;
    }
    case "chars": {
      const bytes = new TextEncoder().encode(text);
      if (bytes.length > scalar.nelems - 1) {
        fail(
          `cannot hold a ${bytes.length}-byte string: it holds at most ${
            scalar.nelems - 1
          } bytes and a NUL`,
        );
      }
      value.fill(0, field.byteOffset, field.byteOffset + scalar.nelems);
      value.set(bytes, field.byteOffset);
      return;
    }
  }
}

/**
 * The field's current value in `value` as text, in the form
 * {@linkcode encodeFieldValue} takes: integers in decimal, enums by name
 * (the number when it has none), `true`/`false`, strings JSON-quoted.
 */
export function formatFieldValue(
  btf: Btf,
  field: FieldLocation,
  value: Uint8Array,
): string {
  const scalar = scalarOf(btf, field);
  if (typeof scalar === "string") {
    let hex = "0x";
    for (
      let i = field.byteOffset;
      i < field.byteOffset + field.byteSize;
      i++
    ) {
      hex += value[i]!.toString(16).padStart(2, "0");
    }
    return hex;
  }
  switch (scalar.kind) {
    case "bool":
      return getBits(field, value) !== 0n ? "true" : "false";
    case "int": {
      const width = widthOf(field, scalar.size);
      const bits = getBits(field, value);
      return String(scalar.signed ? BigInt.asIntN(width, bits) : bits);
    }
    case "enum": {
      const width = widthOf(field, scalar.type.size);
      const bits = getBits(field, value);
      const name = scalar.type.values.find((v) =>
        BigInt.asUintN(width, v.value) === bits
      )?.name;
      return name ??
        String(scalar.signed ? BigInt.asIntN(width, bits) : bits);
    }
    case "float": {
      const view = new DataView(
        value.buffer,
        value.byteOffset + field.byteOffset,
        scalar.size,
      );
      return String(
        scalar.size === 4 ? view.getFloat32(0, true) : view.getFloat64(0, true),
      );
    }
    case "chars": {
      const bytes = value.subarray(
        field.byteOffset,
        field.byteOffset + scalar.nelems,
      );
      const end = bytes.indexOf(0);
      const text = end < 0 ? bytes : bytes.subarray(0, end);
      let decoded: string;
      try {
        decoded = new TextDecoder("utf-8", { fatal: true }).decode(text);
      } catch {
        decoded = latin1.decode(text);
      }
      return JSON.stringify(decoded);
    }
  }
}
