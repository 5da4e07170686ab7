/**
 * Output plans: for one type, derived once, code that writes the text of
 * {@linkcode renderValue}'s value straight from the value's bytes into an
 * output buffer, with no value tree in between.
 *
 * A map's layout is fixed, so a dump of a million elements would otherwise
 * build and walk the same shape of tree a million times. The plan is
 * generated JavaScript (`new Function`) with members, offsets, bitfield
 * masks and constant keys baked in. The generated source holds only numbers
 * and identifiers the generator chose: every string that comes from BTF
 * (member and enumerator names) is pre-encoded into byte arrays passed in as
 * data, so BTF content can never become code.
 *
 * {@linkcode renderValue} with {@linkcode toJson} / {@linkcode formatValue}
 * stays the reference: a plan writes the same bytes they produce (a
 * property test holds them equal on random bytes for every kind), and any
 * type a plan does not cover yields no plan, so callers use the renderer.
 *
 * @module
 */

import type { Btf } from "./btf.ts";
import { cmaskLayout, cpuListMax, cpumaskLayout } from "./cpumask.ts";
import { BtfKind } from "./kind.ts";
import { formatKey } from "./format_value.ts";
import {
  half,
  hexOf,
  isUnnamedMemberKey,
  renderValue,
  unnamedMemberKey,
} from "./render.ts";
import type { BtfEnum, BtfInt, BtfType } from "./types.ts";

/**
 * Writes one value read from `bytes` at `offset` into `out` at `at` and
 * returns the new end. The caller has made room for the plan's maximum.
 */
export type PlanWriter = (
  bytes: Uint8Array,
  offset: number,
  out: Uint8Array,
  at: number,
) => number;

/** A compiled plan for one type and value size. */
export interface ValuePlan {
  /** Bytes the value occupies (what the plan reads). */
  readonly size: number;
  /** Writes `toJson(renderValue(...))`. */
  readonly json: PlanWriter;
  /** Most bytes `json` writes. */
  readonly jsonMax: number;
  /** Writes `formatValue(renderValue(...))` with default options, when covered. */
  readonly text: PlanWriter | undefined;
  /** Most bytes `text` writes. */
  readonly textMax: number;
}

/** {@linkcode formatValue}'s default line width, which text plans follow. */
export const TEXT_WIDTH = 100;

const encoder = new TextEncoder();

/** A type the plan does not cover: the caller renders with the renderer. */
class Uncovered extends Error {}

// ---- runtime helpers the generated code calls (all write ASCII) ----

/** Two ASCII digits for 0..99. */
const PAIRS = new Uint8Array(200);
for (let i = 0; i < 100; i++) {
  PAIRS[2 * i] = 48 + Math.floor(i / 10);
  PAIRS[2 * i + 1] = 48 + i % 10;
}

/** Digits of 0 <= m < 2^31, two a step in int32 arithmetic. */
function digits31(b: Uint8Array, a: number, m: number): number {
  const len = m < 10
    ? 1
    : m < 100
    ? 2
    : m < 1000
    ? 3
    : m < 10000
    ? 4
    : m < 100000
    ? 5
    : m < 1000000
    ? 6
    : m < 10000000
    ? 7
    : m < 100000000
    ? 8
    : m < 1000000000
    ? 9
    : 10;
  let p = a + len;
  while (m >= 100) {
    const q = (m / 100) | 0;
    const r = (m - q * 100) << 1;
    b[--p] = PAIRS[r + 1]!;
    b[--p] = PAIRS[r]!;
    m = q;
  }
  if (m >= 10) {
    b[--p] = PAIRS[(m << 1) + 1]!;
    b[--p] = PAIRS[m << 1]!;
  } else {
    b[--p] = 48 + m;
  }
  return a + len;
}

/** Exactly eight digits of 0 <= m < 10^8, zero-padded. */
function digits8(b: Uint8Array, a: number, m: number): number {
  for (let i = 6; i >= 0; i -= 2) {
    const q = (m / 100) | 0;
    const r = (m - q * 100) << 1;
    b[a + i + 1] = PAIRS[r + 1]!;
    b[a + i] = PAIRS[r]!;
    m = q;
  }
  return a + 8;
}

/** Decimal digits of a non-negative integer below 2^53. */
function digits(b: Uint8Array, a: number, n: number): number {
  if (n < 2147483648) return digits31(b, a, n | 0);
  // Below 2^53 the part above 10^8 is below 2^31: two int32 halves.
  const high = Math.floor(n / 1e8);
  return digits8(b, digits31(b, a, high | 0), (n - high * 1e8) | 0);
}

function int(b: Uint8Array, a: number, n: number): number {
  if (n < 0) {
    b[a++] = 45;
    n = -n;
  }
  return digits(b, a, n);
}

function ascii(b: Uint8Array, a: number, text: string): number {
  for (let i = 0; i < text.length; i++) b[a++] = text.charCodeAt(i);
  return a;
}

function big(b: Uint8Array, a: number, value: bigint): number {
  return ascii(b, a, value.toString());
}

function bytesOut(b: Uint8Array, a: number, bytes: Uint8Array): number {
  if (bytes.length > 16) {
    b.set(bytes, a);
    return a + bytes.length;
  }
  for (let i = 0; i < bytes.length; i++) b[a++] = bytes[i]!;
  return a;
}

function u32(v: Uint8Array, o: number): number {
  return (v[o]! | v[o + 1]! << 8 | v[o + 2]! << 16 | v[o + 3]! << 24) >>> 0;
}

/**
 * Digits of hi * 2^32 + lo at or above 2^53, without bigint: a long
 * division by 10^8 over 16-bit limbs (every step exact in a double) leaves
 * a quotient below 2^38 and an 8-digit remainder.
 */
function digits64(b: Uint8Array, a: number, hi: number, lo: number): number {
  let r = hi >>> 16;
  let cur = r * 65536 + (hi & 0xffff);
  const q2 = Math.floor(cur / 1e8);
  r = cur - q2 * 1e8;
  cur = r * 65536 + (lo >>> 16);
  const q1 = Math.floor(cur / 1e8);
  r = cur - q1 * 1e8;
  cur = r * 65536 + (lo & 0xffff);
  const q0 = Math.floor(cur / 1e8);
  r = cur - q0 * 1e8;
  return digits8(b, digits(b, a, (q2 * 65536 + q1) * 65536 + q0), r);
}

function u64(b: Uint8Array, a: number, v: Uint8Array, o: number): number {
  const lo = u32(v, o);
  const hi = u32(v, o + 4);
  // Below 2^53 a double holds it exactly.
  if (hi < 0x200000) return digits(b, a, hi * 4294967296 + lo);
  return digits64(b, a, hi, lo);
}

function s64(b: Uint8Array, a: number, v: Uint8Array, o: number): number {
  const lo = u32(v, o);
  const hi = u32(v, o + 4) | 0;
  if (hi >= -0x200000 && hi < 0x200000) return int(b, a, hi * 4294967296 + lo);
  if (hi >= 0) return digits64(b, a, hi, lo);
  // Two's complement negation of the 64-bit value.
  b[a++] = 45;
  const negLo = (~lo + 1) >>> 0;
  return digits64(b, a, (~hi + (negLo === 0 ? 1 : 0)) >>> 0, negLo);
}

function uint(v: Uint8Array, o: number, size: number): bigint {
  let value = 0n;
  for (let i = size - 1; i >= 0; i--) value = value << 8n | BigInt(v[o + i]!);
  return value;
}

function i128(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  signed: boolean,
): number {
  const raw = uint(v, o, 16);
  return big(b, a, signed ? BigInt.asIntN(128, raw) : raw);
}

/** Bits `shift..shift+n` of the bytes at `o` (shift+n <= 32), as a number. */
function bits(
  v: Uint8Array,
  o: number,
  count: number,
  shift: number,
  n: number,
  signed: boolean,
): number {
  let x = 0;
  for (let i = count - 1; i >= 0; i--) x = x * 256 + v[o + i]!;
  const r = Math.floor(x / 2 ** shift) % 2 ** n;
  return signed && n > 0 && r >= 2 ** (n - 1) ? r - 2 ** n : r;
}

/** The same for wider fields, as a bigint. */
function bitsBig(
  v: Uint8Array,
  o: number,
  count: number,
  shift: number,
  n: number,
  signed: boolean,
): bigint {
  const raw = (uint(v, o, count) >> BigInt(shift)) & ((1n << BigInt(n)) - 1n);
  return signed ? BigInt.asIntN(n, raw) : raw;
}

const TRUE = encoder.encode("true");
const FALSE = encoder.encode("false");

function bool(b: Uint8Array, a: number, value: boolean): number {
  return bytesOut(b, a, value ? TRUE : FALSE);
}

/** JSON of a one-character string for every byte (a `char` scalar). */
const CHAR_JSON: Uint8Array[] = Array.from(
  { length: 256 },
  (_, byte) => encoder.encode(JSON.stringify(String.fromCharCode(byte))),
);

function char(b: Uint8Array, a: number, byte: number): number {
  return bytesOut(b, a, CHAR_JSON[byte]!);
}

const F32 = new Float32Array(1);
const F32_BYTES = new Uint8Array(F32.buffer);
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6];

/**
 * Writes `x` as String(x) does when at most 6 decimals round-trip, without
 * allocating a string (a float per element otherwise grows the heap with
 * the map); returns -1 for other values.
 *
 * With |x| < 1e9 every candidate is below 2^50, so Math.round finds it
 * exactly, and the decimal spacing (>= 1e-6) exceeds x's ulp, so a
 * round-tripping candidate is unique: the smallest k that round-trips gives
 * the shortest digits, which is what String() prints in this range.
 */
function shortDecimal(b: Uint8Array, a: number, x: number): number {
  const ax = Math.abs(x);
  if (!(ax >= 1e-6 && ax < 1e9)) return -1;
  for (let k = 1; k <= 6; k++) {
    const scale = POW10[k]!;
    const y = Math.round(ax * scale);
    if (y / scale !== ax) continue;
    if (x < 0) b[a++] = 45;
    const whole = Math.floor(y / scale);
    a = digits(b, a, whole);
    b[a++] = 46;
    let fraction = y - whole * scale;
    for (let i = k - 1; i >= 0; i--) {
      b[a + i] = 48 + fraction % 10;
      fraction = Math.floor(fraction / 10);
    }
    return a + k;
  }
  return -1;
}

function float(b: Uint8Array, a: number, x: number, text: boolean): number {
  if (Number.isFinite(x)) {
    if (x === 0) {
      if (text && Object.is(x, -0)) return ascii(b, a, "-0");
      b[a] = 48;
      return a + 1;
    }
    if (Number.isSafeInteger(x)) return int(b, a, x);
    const end = shortDecimal(b, a, x);
    // JSON.stringify prints a finite number as String() does, but String()
    // also fills V8's number-string cache, which grows the process by
    // megabytes over a million distinct floats (JSON.stringify does not).
    return end >= 0 ? end : ascii(b, a, JSON.stringify(x));
  }
  // toJson writes NaN and infinities as strings, formatValue bare.
  return ascii(b, a, text ? String(x) : `"${x}"`);
}

function f16(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  text: boolean,
): number {
  return float(b, a, half(v[o]! | v[o + 1]! << 8), text);
}

function f32(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  text: boolean,
): number {
  for (let i = 0; i < 4; i++) F32_BYTES[i] = v[o + i]!;
  return float(b, a, F32[0]!, text);
}

function f64(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  text: boolean,
): number {
  for (let i = 0; i < 8; i++) F64_BYTES[i] = v[o + i]!;
  return float(b, a, F64[0]!, text);
}

function floatHex(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  size: number,
): number {
  return ascii(b, a, JSON.stringify(hexOf(v.subarray(o, o + size))));
}

/** An enum (size <= 4) by name, else its number. */
function enumNumber(
  b: Uint8Array,
  a: number,
  names: Map<number, Uint8Array>,
  raw: number,
  value: number,
): number {
  const name = names.get(raw);
  return name ? bytesOut(b, a, name) : int(b, a, value);
}

function enumBig(
  b: Uint8Array,
  a: number,
  names: Map<bigint, Uint8Array>,
  raw: bigint,
  value: bigint,
): number {
  const name = names.get(raw);
  return name ? bytesOut(b, a, name) : big(b, a, value);
}

/** Length of the printable text before a NUL in `n` bytes, or -1 (bpftool's char-array rule). */
function charText(v: Uint8Array, o: number, n: number): number {
  for (let i = 0; i < n; i++) {
    const byte = v[o + i]!;
    if (byte === 0) return i;
    if (byte <= 0x1f || byte >= 0x7f) return -1;
  }
  return -1;
}

function quoted(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  n: number,
): number {
  b[a++] = 34;
  for (let i = 0; i < n; i++) {
    const byte = v[o + i]!;
    if (byte === 34 || byte === 92) b[a++] = 92;
    b[a++] = byte;
  }
  b[a++] = 34;
  return a;
}

/** A cpumask's `n` bytes at `o` as the quoted CPU list `cpuList` makes. */
function cpus(
  b: Uint8Array,
  a: number,
  v: Uint8Array,
  o: number,
  n: number,
): number {
  b[a++] = 34;
  const first = a;
  const total = n * 8;
  let start = -1;
  for (let bit = 0; bit <= total; bit++) {
    if (
      start < 0 && (bit & 7) === 0 && bit < total && v[o + (bit >> 3)] === 0
    ) {
      bit += 7;
      continue;
    }
    const set = bit < total && (v[o + (bit >> 3)]! >> (bit & 7) & 1) === 1;
    if (set && start < 0) start = bit;
    if (!set && start >= 0) {
      if (a !== first) b[a++] = 44;
      a = digits(b, a, start);
      if (start !== bit - 1) {
        b[a++] = 45;
        a = digits(b, a, bit - 1);
      }
      start = -1;
    }
  }
  b[a++] = 34;
  return a;
}

function spaces(b: Uint8Array, a: number, n: number): number {
  for (let i = 0; i < n; i++) b[a++] = 32;
  return a;
}

const HELPERS = {
  digits,
  int,
  big,
  bytesOut,
  u32,
  u64,
  s64,
  i128,
  bits,
  bitsBig,
  bool,
  char,
  f16,
  f32,
  f64,
  floatHex,
  enumNumber,
  enumBig,
  charText,
  quoted,
  cpus,
  spaces,
};

/**
 * Code reading bits `shift..shift+n` at `at` (shift+n <= 32): int32 shifts
 * and masks inline when they fit 31 bits, else the `bits` helper.
 */
function bitsCode(
  at: string,
  count: number,
  shift: number,
  n: number,
  signed: boolean,
): string {
  if (shift + n > 31 || n === 0) {
    return `bits(v,${at},${count},${shift},${n},${signed})`;
  }
  const bytes = Array.from(
    { length: count },
    (_, i) => i === 0 ? `v[${at}]` : `v[${at}+${i}]<<${8 * i}`,
  ).join("|");
  return signed
    ? `(((${bytes})>>>${shift})<<${32 - n}>>${32 - n})`
    : `(((${bytes})>>>${shift})&${2 ** n - 1})`;
}

// ---- the generator ----

type Mode = "json" | "flat" | "multi";

interface Field {
  /** Pre-encoded key: `"name":` for JSON, `name = ` (or nothing) for text. */
  json: Uint8Array;
  text: Uint8Array;
  type: number;
  /** Byte offset from the object's start. */
  at: number;
  shift: number;
  bitfieldSize: number;
}

/** Bytes a scalar can take at most (digits of 128-bit ints, floats, "\u001f"). */
const SCALAR_MAX = 48;

function isAscii(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte < 0x80);
}

class Generator {
  readonly #btf: Btf;
  readonly #functions: string[] = [];
  readonly #names = new Map<string, string>();
  readonly #data: unknown[] = [];
  readonly #fields = new Map<number, Field[]>();
  readonly #enumTables = new Map<number, string>();
  readonly #jsonMax = new Map<number, number>();
  readonly #textMax = new Map<string, number>();
  /** False once something is met whose text width formatValue counts differently (non-ASCII). */
  textCovered = true;

  constructor(btf: Btf) {
    this.#btf = btf;
  }

  #datum(value: unknown): string {
    this.#data.push(value);
    return `D[${this.#data.length - 1}]`;
  }

  /** Constant bytes: literal stores when short, a copy when long. */
  #emitBytes(bytes: Uint8Array): string {
    if (bytes.length === 0) return "";
    if (bytes.length > 24) return `a=bytesOut(b,a,${this.#datum(bytes)});`;
    const stores = Array.from(bytes, (byte, i) => `b[a+${i}]=${byte};`);
    return `${stores.join("")}a+=${bytes.length};`;
  }

  /** The members of a struct/union as rendered: anonymous ones lifted, unnamed ones `#N`. */
  fields(id: number): Field[] {
    const known = this.#fields.get(id);
    if (known) return known;
    const out: Field[] = [];
    const seen = new Set<string>();
    const walk = (typeId: number, base: number, depth: number): void => {
      if (depth > 64) throw new Uncovered();
      const t = this.#type(typeId);
      if (t.kind !== BtfKind.STRUCT && t.kind !== BtfKind.UNION) {
        throw new Uncovered();
      }
      for (const m of t.members) {
        const at = base + (m.bitOffset >> 3);
        const shift = m.bitOffset & 7;
        const resolved = this.#type(m.type);
        let name = m.name;
        if (name === "") {
          if (
            (resolved.kind === BtfKind.STRUCT ||
              resolved.kind === BtfKind.UNION) && m.bitfieldSize === 0
          ) {
            walk(resolved.id, at, depth + 1);
            continue;
          }
          name = unnamedMemberKey(out.length);
        }
        // A repeated name overwrites in the renderer's object: not planned.
        if (seen.has(name)) throw new Uncovered();
        // The renderer passes a non-bitfield's bit shift on; only ints use it.
        if (shift !== 0 && m.bitfieldSize === 0) throw new Uncovered();
        seen.add(name);
        const textKey = isUnnamedMemberKey(name) ? "" : `${formatKey(name)} = `;
        const field: Field = {
          json: encoder.encode(`${JSON.stringify(name)}:`),
          text: encoder.encode(textKey),
          type: m.type,
          at,
          shift,
          bitfieldSize: m.bitfieldSize,
        };
        if (!isAscii(field.text)) this.textCovered = false;
        out.push(field);
      }
    };
    walk(id, 0, 0);
    this.#fields.set(id, out);
    return out;
  }

  #type(id: number): BtfType {
    return this.#btf.type(this.#btf.resolve(id));
  }

  /** Code writing type `id` read at offset expression `off`. */
  value(id: number, off: string, mode: Mode): string {
    const t = this.#type(id);
    const text = mode !== "json";
    switch (t.kind) {
      case BtfKind.INT:
        return this.#int(t, off, 0, 0);
      case BtfKind.PTR:
        return `a=u64(b,a,v,${off});`;
      case BtfKind.ENUM:
      case BtfKind.ENUM64:
        return this.#enum(t, off);
      case BtfKind.FLOAT:
        switch (t.size) {
          case 2:
            return `a=f16(b,a,v,${off},${text});`;
          case 4:
            return `a=f32(b,a,v,${off},${text});`;
          case 8:
            return `a=f64(b,a,v,${off},${text});`;
          default:
            return `a=floatHex(b,a,v,${off},${t.size});`;
        }
      case BtfKind.STRUCT:
      case BtfKind.UNION:
      case BtfKind.ARRAY: {
        const mask = cpumaskLayout(this.#btf, t.id);
        if (mask) return `a=cpus(b,a,v,${off},${mask.bytes});`;
        // Its length is in its header and its words past its end: the
        // renderer, which sees the whole value, writes it.
        if (cmaskLayout(this.#btf, t.id)) throw new Uncovered();
        const fn = this.#function(t.id, mode);
        return mode === "multi"
          ? `a=${fn}(v,${off},b,a,L+1);`
          : `a=${fn}(v,${off},b,a);`;
      }
      case BtfKind.VAR:
      case BtfKind.DATASEC:
        throw new Uncovered();
      default:
        return this.#emitBytes(encoder.encode("null"));
    }
  }

  #int(t: BtfInt, off: string, fieldBits: number, bitShift: number): string {
    const bitCount = fieldBits || t.bits;
    const shift = bitShift + t.bitOffset;
    const at = `${off}+${shift >> 3}`;
    const inByte = shift & 7;
    if (t.bool && !fieldBits && inByte === 0) {
      return `a=bool(b,a,v[${at}]!==0);`;
    }
    if (fieldBits || inByte !== 0 || bitCount !== t.size * 8) {
      const count = Math.ceil((inByte + bitCount) / 8);
      if (inByte + bitCount <= 32) {
        const read = bitsCode(at, count, inByte, bitCount, t.signed);
        return t.bool ? `a=bool(b,a,${read}!==0);` : `a=int(b,a,${read});`;
      }
      const read =
        `bitsBig(v,${at},${count},${inByte},${bitCount},${t.signed})`;
      return t.bool ? `a=bool(b,a,${read}!==0n);` : `a=big(b,a,${read});`;
    }
    switch (t.size) {
      case 1:
        if (t.char) {
          // One char can be non-ASCII: formatValue's width counts differ.
          this.textCovered = false;
          return `a=char(b,a,v[${at}]);`;
        }
        return t.signed
          ? `a=int(b,a,v[${at}]<<24>>24);`
          : `a=digits(b,a,v[${at}]);`;
      case 2: {
        const read = `(v[${at}]|v[${at}+1]<<8)`;
        return t.signed
          ? `a=int(b,a,${read}<<16>>16);`
          : `a=digits(b,a,${read});`;
      }
      case 4:
        return t.signed
          ? `a=int(b,a,u32(v,${at})|0);`
          : `a=digits(b,a,u32(v,${at}));`;
      case 8:
        return t.signed ? `a=s64(b,a,v,${at});` : `a=u64(b,a,v,${at});`;
      case 16:
        return `a=i128(b,a,v,${at},${t.signed});`;
      default:
        throw new Uncovered();
    }
  }

  /** Name per raw (unsigned) value; the first enumerator wins, like `enumValueName`. */
  #enumTable(t: BtfEnum): string {
    const known = this.#enumTables.get(t.id);
    if (known) return known;
    const wide = t.size === 8;
    const table = new Map<number | bigint, Uint8Array>();
    for (const e of t.values) {
      const raw = BigInt.asUintN(t.size * 8, e.value);
      const key = wide ? raw : Number(raw);
      if (table.has(key)) continue;
      const bytes = encoder.encode(JSON.stringify(e.name));
      if (!isAscii(bytes)) this.textCovered = false;
      table.set(key, bytes);
    }
    const name = this.#datum(table);
    this.#enumTables.set(t.id, name);
    return name;
  }

  #enum(t: BtfEnum, off: string): string {
    const table = this.#enumTable(t);
    switch (t.size) {
      case 1:
      case 2:
      case 4: {
        const raw = t.size === 1
          ? `v[${off}]`
          : t.size === 2
          ? `(v[${off}]|v[${off}+1]<<8)`
          : `u32(v,${off})`;
        const bitsWide = 32 - t.size * 8;
        const value = t.signed
          ? bitsWide ? `(r<<${bitsWide}>>${bitsWide})` : "(r|0)"
          : "r";
        return `{const r=${raw};a=enumNumber(b,a,${table},r,${value});}`;
      }
      case 8: {
        const value = t.signed ? "BigInt.asIntN(64,r)" : "r";
        return `{const r=BigInt.asUintN(64,BigInt(u32(v,${off}))|BigInt(u32(v,${off}+4))<<32n);a=enumBig(b,a,${table},r,${value});}`;
      }
      default:
        throw new Uncovered();
    }
  }

  #enumBitfield(t: BtfEnum, at: string, shift: number, n: number): string {
    const table = this.#enumTable(t);
    const top = 1n << BigInt(t.size * 8 - 1);
    // As the renderer: LLVM before 15 leaves kind_flag unset on signed enums.
    const signed = t.signed ||
      (t.kind === BtfKind.ENUM && t.values.some((v) => v.value >= top));
    const count = Math.ceil((shift + n) / 8);
    if (t.size > 4 || shift + n > 32) {
      if (![1, 2, 4, 8].includes(t.size)) throw new Uncovered();
      const key = t.size === 8
        ? "BigInt.asUintN(64,x)"
        : `Number(BigInt.asUintN(${t.size * 8},x))`;
      const lookup = t.size === 8
        ? `a=enumBig(b,a,${table},${key},x);`
        : `{const k=${key};a=enumNumber(b,a,${table},k,Number(x));}`;
      return `{const x=bitsBig(v,${at},${count},${shift},${n},${signed});${lookup}}`;
    }
    const modulus = 2 ** (t.size * 8);
    return `{const x=${
      bitsCode(at, count, shift, n, signed)
    };a=enumNumber(b,a,${table},x<0?x+${modulus}:x,x);}`;
  }

  #field(f: Field, base: string, mode: Mode): string {
    const off = `${base}+${f.at}`;
    if (f.bitfieldSize === 0) return this.value(f.type, off, mode);
    const t = this.#type(f.type);
    if (t.kind === BtfKind.INT) {
      return this.#int(t, off, f.bitfieldSize, f.shift);
    }
    if (t.kind === BtfKind.ENUM || t.kind === BtfKind.ENUM64) {
      return this.#enumBitfield(t, off, f.shift, f.bitfieldSize);
    }
    return this.#emitBytes(encoder.encode("null"));
  }

  /** The char-array test the renderer makes: qualifiers skipped, typedefs not. */
  #isCharElement(elemId: number): boolean {
    let elem = this.#btf.type(elemId);
    for (let steps = 0; steps < 256; steps++) {
      if (
        elem.kind !== BtfKind.VOLATILE && elem.kind !== BtfKind.CONST &&
        elem.kind !== BtfKind.RESTRICT && elem.kind !== BtfKind.TYPE_TAG
      ) break;
      elem = this.#btf.type(elem.type);
    }
    return elem.kind === BtfKind.INT && elem.size === 1 &&
      (elem.char || elem.name === "char");
  }

  /** Name of the function writing composite `id` in `mode`, generated once. */
  #function(id: number, mode: Mode): string {
    const key = `${mode}${id}`;
    const known = this.#names.get(key);
    if (known) return known;
    // `$` keeps generated names apart from the helpers' (f64 is both).
    const name = `$${mode[0]}${id}`;
    this.#names.set(key, name);
    const t = this.#type(id);
    const body = t.kind === BtfKind.ARRAY
      ? this.#arrayBody(t.id, t.type, t.nelems, mode)
      : this.#objectBody(id, mode);
    const params = mode === "multi" ? "v,o,b,a,L" : "v,o,b,a";
    this.#functions.push(`function ${name}(${params}){${body}return a;}`);
    return name;
  }

  /**
   * formatValue keeps a composite on one line when its flat text fits the
   * width, else puts each part on its own line. Values of one type mostly
   * land on the same side, so each type remembers its last outcome
   * (`$g<id>`) and writes that form first; the check after the other form
   * corrects a wrong guess, so the output never depends on it.
   */
  #multiOpen(id: number): string {
    this.#functions.push(`let $g${id}=false;`);
    return `const s=a;if(!$g${id}){a=${
      this.#function(id, "flat")
    }(v,o,b,a);if(a-s+2*L<=${TEXT_WIDTH})return a;a=s;$g${id}=true;}`;
  }

  /**
   * After the multi-line form of `parts` parts: its flat length is the
   * written length less the line breaks and indents, (parts+1)*(2L+2). A
   * part that itself broke over lines makes that too long, as it must (a
   * part wider than its line means a parent wider than its own).
   */
  #multiClose(id: number, parts: number): string {
    return `if(a-s-${
      parts + 1
    }*(2*L+2)+2*L<=${TEXT_WIDTH}){$g${id}=false;return ${
      this.#function(id, "flat")
    }(v,o,b,s);}`;
  }

  #objectBody(id: number, mode: Mode): string {
    const fields = this.fields(id);
    if (fields.length === 0) return this.#emitBytes(encoder.encode("{}"));
    const code: string[] = [];
    if (mode === "multi") {
      code.push(this.#multiOpen(id), "b[a++]=123;");
      fields.forEach((f, i) => {
        code.push(
          `${i ? "b[a++]=44;" : ""}b[a++]=10;a=spaces(b,a,2*L+2);`,
          this.#emitBytes(f.text),
          this.#field(f, "o", mode),
        );
      });
      code.push(
        "b[a++]=10;a=spaces(b,a,2*L);b[a++]=125;",
        this.#multiClose(id, fields.length),
      );
      return code.join("");
    }
    code.push("b[a++]=123;");
    fields.forEach((f, i) => {
      if (i) {
        code.push(mode === "json" ? "b[a++]=44;" : "b[a]=44;b[a+1]=32;a+=2;");
      }
      code.push(
        this.#emitBytes(mode === "json" ? f.json : f.text),
        this.#field(f, "o", mode),
      );
    });
    code.push("b[a++]=125;");
    return code.join("");
  }

  #arrayBody(id: number, elemId: number, nelems: number, mode: Mode): string {
    if (nelems === 0) return this.#emitBytes(encoder.encode("[]"));
    const code: string[] = [];
    if (this.#isCharElement(elemId)) {
      code.push(
        `{const n=charText(v,o,${nelems});if(n>=0)return quoted(b,a,v,o,n);}`,
      );
    }
    const elemSize = this.#btf.sizeOf(elemId);
    if (elemSize === 0) {
      return code.join("") + this.#emitBytes(encoder.encode("[]"));
    }
    if (mode === "multi") {
      code.push(
        this.#multiOpen(id),
        `b[a++]=91;for(let i=0;i<${nelems};i++){if(i)b[a++]=44;b[a++]=10;a=spaces(b,a,2*L+2);const p=o+i*${elemSize};`,
        this.value(elemId, "p", mode),
        "}b[a++]=10;a=spaces(b,a,2*L);b[a++]=93;",
        this.#multiClose(id, nelems),
      );
      return code.join("");
    }
    const separator = mode === "json"
      ? "b[a++]=44;"
      : "b[a]=44;b[a+1]=32;a+=2;";
    code.push(
      `b[a++]=91;for(let i=0;i<${nelems};i++){if(i){${separator}}const p=o+i*${elemSize};`,
      this.value(elemId, "p", mode),
      "}b[a++]=93;",
    );
    return code.join("");
  }

  /** Most bytes the JSON of type `id` takes. */
  jsonMax(id: number, depth = 0): number {
    if (depth > 256) throw new Uncovered();
    const t = this.#type(id);
    const known = this.#jsonMax.get(t.id);
    if (known !== undefined) return known;
    let max = SCALAR_MAX;
    const mask = cpumaskLayout(this.#btf, t.id);
    if (mask) {
      max = cpuListMax(mask.bytes) + 2;
    } else if (t.kind === BtfKind.ENUM || t.kind === BtfKind.ENUM64) {
      max = Math.max(SCALAR_MAX, ...t.values.map((e) => 3 * e.name.length + 2));
    } else if (t.kind === BtfKind.STRUCT || t.kind === BtfKind.UNION) {
      max = 2;
      for (const f of this.fields(t.id)) {
        max += f.json.length + 1 + this.#fieldMax(f, depth);
      }
    } else if (t.kind === BtfKind.ARRAY) {
      const each = t.nelems && this.#btf.sizeOf(t.type)
        ? this.jsonMax(t.type, depth + 1) + 2
        : 0;
      max = 2 + Math.max(2 * t.nelems + 2, t.nelems * each);
    }
    this.#jsonMax.set(t.id, max);
    return max;
  }

  #fieldMax(f: Field, depth: number): number {
    if (f.bitfieldSize) {
      const t = this.#type(f.type);
      return t.kind === BtfKind.ENUM || t.kind === BtfKind.ENUM64
        ? this.jsonMax(t.id, depth + 1)
        : SCALAR_MAX;
    }
    return this.jsonMax(f.type, depth + 1);
  }

  /** Most bytes the text of type `id` takes at nesting level `level`. */
  textMax(id: number, level: number, depth = 0): number {
    if (depth > 256) throw new Uncovered();
    const t = this.#type(id);
    const key = `${t.id}:${level}`;
    const known = this.#textMax.get(key);
    if (known !== undefined) return known;
    let max: number;
    const indent = 2 * (level + 1);
    if (cpumaskLayout(this.#btf, t.id)) {
      max = this.jsonMax(id, depth + 1);
    } else if (t.kind === BtfKind.STRUCT || t.kind === BtfKind.UNION) {
      max = 4 + 2 * level;
      for (const f of this.fields(t.id)) {
        const child = f.bitfieldSize
          ? this.#fieldMax(f, depth)
          : this.textMax(f.type, level + 1, depth + 1);
        max += 2 + indent + f.text.length + child;
      }
    } else if (t.kind === BtfKind.ARRAY) {
      const each = t.nelems && this.#btf.sizeOf(t.type)
        ? this.textMax(t.type, level + 1, depth + 1) + 2 + indent
        : 0;
      max = 4 + 2 * level + Math.max(2 * t.nelems + 2, t.nelems * each);
    } else {
      max = this.jsonMax(id, depth + 1);
    }
    this.#textMax.set(key, max);
    return max;
  }

  /** Compiles the functions generated so far plus `entry` into a writer. */
  compile(entry: string): PlanWriter {
    const source = `"use strict";const{${Object.keys(HELPERS).join(",")}}=H;${
      this.#functions.join("\n")
    }\nreturn ${entry};`;
    // The source holds generator-chosen identifiers and numbers only; BTF
    // strings travel in D as bytes (see the module documentation).
    return new Function("H", "D", source)(HELPERS, this.#data) as PlanWriter;
  }
}

/**
 * Compiles the plan for values of type `typeId` occupying `size` bytes, or
 * returns undefined when the renderer must be used: a type the plan does
 * not cover (DATASEC/VAR, repeated member names, unusual int or enum
 * sizes), or one the renderer rejects (corrupt, cyclic, larger than
 * `size`).
 *
 * @param btf the BTF the type lives in
 * @param typeId the key or value type
 * @param size the bytes each value has (a map's key or value size)
 * @returns the plan, or undefined
 *
 * @example Write a map value's JSON straight into a buffer
 * ```ts ignore
 * const plan = compileValuePlan(btf, map.btfValueTypeId, map.valueSize)!;
 * const out = new Uint8Array(plan.jsonMax);
 * const end = plan.json(valueBytes, 0, out, 0);
 * ```
 */
export function compileValuePlan(
  btf: Btf,
  typeId: number,
  size: number,
): ValuePlan | undefined {
  try {
    // The renderer's bounds, depth and budget checks depend on the layout
    // only; a trial on non-printable bytes (char arrays as arrays, the
    // widest case) shows whether it accepts this type for this size.
    renderValue(btf, typeId, new Uint8Array(size).fill(1));
    const gen = new Generator(btf);
    const resolved = btf.type(btf.resolve(typeId));
    // A cpumask is a struct written as one string, like a scalar.
    const composite = (resolved.kind === BtfKind.STRUCT ||
      resolved.kind === BtfKind.UNION || resolved.kind === BtfKind.ARRAY) &&
      !cpumaskLayout(btf, typeId);
    const entry = (mode: "json" | "multi"): string => {
      if (!composite) {
        const scalarMode = mode === "json" ? "json" : "flat";
        return `function(v,o,b,a){${
          gen.value(typeId, "o", scalarMode)
        }return a;}`;
      }
      gen.value(typeId, "o", mode);
      return mode === "json"
        ? `$j${resolved.id}`
        : `function(v,o,b,a){return $m${resolved.id}(v,o,b,a,0);}`;
    };
    const jsonEntry = entry("json");
    const json = gen.compile(jsonEntry);
    const jsonMax = gen.jsonMax(typeId);
    let text: PlanWriter | undefined;
    let textMax = 0;
    const textEntry = entry("multi");
    if (gen.textCovered) {
      text = gen.compile(textEntry);
      textMax = gen.textMax(typeId, 0);
    }
    return { size, json, jsonMax, text, textMax };
  } catch {
    // Uncovered, or rejected by the renderer's trial (which will say why
    // when it renders the value itself).
    return undefined;
  }
}
