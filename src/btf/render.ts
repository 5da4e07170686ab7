/**
 * Renders raw bytes as typed values by their BTF type, in the shape of
 * bpftool's `-j` "formatted" output, and formats them as text for people.
 *
 * Deliberate differences from bpftool (`src/btf_dumper.c`, v7.x):
 *
 * 1. 64-bit integers, pointers and 64-bit enums are `bigint`, written by
 *    {@linkcode toJson} as exact bare digits (bpftool also prints bare
 *    digits, but values above 2^53 lose precision in most JSON readers; the
 *    text is the same, the in-memory value is exact).
 * 2. `__int128` is a `bigint` (decimal digits in JSON, signed when the type
 *    is signed); bpftool prints a quoted hex string `"0x..."`.
 * 3. Bitfields are numbers (bigint when the underlying int is 8 or 16
 *    bytes), sign-extended when the type is signed, and enum bitfields are
 *    named; bpftool prints every bitfield as an unsigned quoted hex string
 *    (`int f:3` = -3 shown as `"0x5"`).
 * 4. `float`/`double`/`_Float16` are numbers (NaN and infinities become the
 *    strings `"NaN"`, `"Infinity"`, `"-Infinity"` in JSON; 12/16-byte long
 *    doubles a `"0x..."` hex string of their bytes); bpftool prints
 *    `(unsupported-kind)` and stops the whole dump with invalid JSON.
 * 5. Members of anonymous structs and unions are lifted into the enclosing
 *    object, as C reads them (`s.x`, not `s[""].x`); bpftool writes them
 *    under an empty key `""`, which repeats when there are several.
 * 6. An enum value with no enumerator is printed as the enum's own
 *    signedness says (unsigned unless `kind_flag`); bpftool always reads
 *    ENUM as signed and prints unknown ENUM64 values as signed 64-bit.
 * 7. TYPE_TAG is followed like a qualifier (bpftool: unsupported kind);
 *    FWD, FUNC, FUNC_PROTO and void render as `null` instead of failing.
 * 8. A member without a name that is not an anonymous struct/union (tuple
 *    keys from tracing tools, unnamed bitfields) is kept under the key
 *    `"#N"`, N its 0-based position among the object's fields (see
 *    {@linkcode unnamedMemberKey}); bpftool repeats the key `""`, so JSON
 *    readers keep only the last one. `formatValue` (format_value.ts) shows these
 *    members positionally, without a key.
 * 9. Arrays of zero-sized elements render as `[]`.
 * 10. A `struct cpumask` (so `cpumask_t`, and the mask inside
 *     `struct bpf_cpumask`) is the string of its set CPUs, `"0-2,5"`, as
 *     the kernel's `%*pbl` prints it (see cpumask.ts; the list is lossless:
 *     the type fixes the width); bpftool prints the 128 words of `bits`.
 *     A sched_ext `struct scx_cmask` is `{base, nr_cids, alloc_words, cids}`,
 *     `cids` the set cids of its active range read from the words after
 *     the header within the value (`unread_words` counts those past its
 *     end); compiled plans leave types holding one to the renderer.
 *
 * Everything else follows bpftool: ints by their encoding, `bool` as
 * true/false, a `char` as a one-character string, `char[N]` as a string
 * when NUL-terminated and printable (0x20..0x7e) before the NUL, else an
 * array of numbers; enums by name; unions as every member; a VAR as
 * `{name: value}`; a DATASEC as `{".bss": [{var: value}, ...]}`; per-CPU
 * values as `[{cpu: 0, value: ...}, ...]`.
 *
 * @module
 */

import type { Btf } from "./btf.ts";
import { MAX_TYPE_DEPTH } from "./btf.ts";
import { BtfError } from "./errors.ts";
import { cmaskLayout, cmaskValue, cpuList, cpumaskLayout } from "./cpumask.ts";
import { BtfKind } from "./kind.ts";
import type { BtfInt, BtfMember } from "./types.ts";

/** A rendered value: JSON data plus `bigint` for exact 64/128-bit integers. */
export type RenderedValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | RenderedValue[]
  | { [name: string]: RenderedValue };

/** Options for {@linkcode renderValue}. */
export interface RenderOptions {
  /**
   * `"bpfmap"` (default) renders as documented above. `"bpftool"` mimics
   * bpftool 7.x for comparisons: bitfields and `__int128` as unsigned hex
   * strings, anonymous members under the key `""`, unknown enum values read
   * as signed, cpumasks as their words. Floats still render as numbers.
   */
  style?: "bpfmap" | "bpftool";
}

/** One CPU's value of a per-CPU map entry. */
export interface PercpuRenderedValue {
  /** CPU number. */
  cpu: number;
  /** That CPU's value. */
  value: RenderedValue;
}

/** A little-endian value's bytes as `0x...` hex, leading zeros dropped. */
export function hexOf(bytes: Uint8Array): string {
  return "0x" +
    Array.from(bytes).reverse().map((b) => b.toString(16).padStart(2, "0"))
      .join("").replace(/^0+(?=.)/, "");
}

/** An IEEE half-precision float from its 16 bits. */
export function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/**
 * The JSON key of an unnamed non-anonymous-struct member: `#` and its
 * position among the object's fields. `#` cannot begin a C identifier, so
 * the key never collides with a named member, and the position keeps the
 * key unique where bpftool repeats `""` (which JSON readers collapse).
 */
export function unnamedMemberKey(position: number): string {
  return `#${position}`;
}

const UNNAMED_KEY = /^#\d+$/;

/** Whether `key` is {@linkcode unnamedMemberKey}'s (text shows it positionally). */
export function isUnnamedMemberKey(key: string): boolean {
  return UNNAMED_KEY.test(key);
}

class Renderer {
  #btf: Btf;
  #bytes: Uint8Array;
  #view: DataView;
  #budget: number;
  #root: number;
  #compat: boolean;

  constructor(btf: Btf, bytes: Uint8Array, root: number, compat: boolean) {
    this.#compat = compat;
    this.#btf = btf;
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // Every real value consumes at least a bit of data; a type that expands
    // into far more values than its bytes can hold is corrupt or cyclic.
    this.#budget = 16 * bytes.byteLength + 4096;
    this.#root = root;
  }

  #need(id: number, at: number, size: number): void {
    if (at < 0 || at + size > this.#bytes.byteLength) {
      throw new BtfError(
        `type ${id} reads bytes ${at}..${
          at + size
        } of a ${this.#bytes.byteLength}-byte value`,
        this.#btf.recordOffset(id),
      );
    }
  }

  #spend(id: number): void {
    if (--this.#budget < 0) {
      throw new BtfError(
        `type ${this.#root} expands to more values than its ${this.#bytes.byteLength} bytes hold (corrupt or cyclic type ${id})`,
        this.#btf.recordOffset(id),
      );
    }
  }

  /** Little-endian unsigned integer of `size` bytes at `at`. */
  #uint(at: number, size: number): bigint {
    let value = 0n;
    for (let i = size - 1; i >= 0; i--) {
      value = (value << 8n) | BigInt(this.#bytes[at + i]!);
    }
    return value;
  }

  #bits(
    at: number,
    bitShift: number,
    bits: number,
    signed: boolean,
  ): bigint {
    const bytes = Math.ceil((bitShift + bits) / 8);
    const raw = (this.#uint(at, bytes) >> BigInt(bitShift)) &
      ((1n << BigInt(bits)) - 1n);
    return signed ? BigInt.asIntN(bits, raw) : raw;
  }

  render(
    id: number,
    at: number,
    bitShift: number,
    depth: number,
  ): RenderedValue {
    if (depth > MAX_TYPE_DEPTH) {
      throw new BtfError(
        `type ${id} nests deeper than ${MAX_TYPE_DEPTH} (a cycle)`,
        this.#btf.recordOffset(id),
      );
    }
    this.#spend(id);
    const btf = this.#btf;
    const t = btf.type(btf.resolve(id));
    switch (t.kind) {
      case BtfKind.INT:
        return this.#int(t, at, bitShift, 0);
      case BtfKind.PTR:
        this.#need(t.id, at, 8);
        return this.#view.getBigUint64(at, true);
      case BtfKind.ARRAY:
        return this.#array(t.id, t.type, t.nelems, at, depth);
      case BtfKind.STRUCT:
      case BtfKind.UNION: {
        this.#need(t.id, at, t.size);
        const mask = this.#compat ? undefined : cpumaskLayout(btf, t.id);
        if (mask) return cpuList(this.#bytes, at, mask.bytes);
        if (!this.#compat && cmaskLayout(btf, t.id)) {
          // Its words follow the header, inside the enclosing value.
          const { ...cmask } = cmaskValue(
            this.#bytes,
            at,
            this.#bytes.byteLength,
          );
          return cmask;
        }
        const out: { [name: string]: RenderedValue } = {};
        this.#members(t.members, at, out, depth);
        return out;
      }
      case BtfKind.ENUM:
      case BtfKind.ENUM64: {
        this.#need(t.id, at, t.size);
        const raw = this.#uint(at, t.size);
        // bpftool reads every enum as signed.
        const signed = this.#compat || t.signed;
        return this.#enumValue(
          t.id,
          signed ? BigInt.asIntN(t.size * 8, raw) : raw,
          t.size,
        );
      }
      case BtfKind.FLOAT: {
        this.#need(t.id, at, t.size);
        if (t.size === 2) return half(this.#view.getUint16(at, true));
        if (t.size === 4) return this.#view.getFloat32(at, true);
        if (t.size === 8) return this.#view.getFloat64(at, true);
        return hexOf(this.#bytes.subarray(at, at + t.size));
      }
      case BtfKind.VAR:
        return { [t.name]: this.render(t.type, at, bitShift, depth + 1) };
      case BtfKind.DATASEC: {
        this.#need(t.id, at, 0);
        const vars: RenderedValue[] = [];
        for (const v of t.vars) {
          this.#need(v.type, at + v.offset, v.size);
          vars.push(this.render(v.type, at + v.offset, 0, depth + 1));
        }
        return { [t.name]: vars };
      }
      default:
        return null;
    }
  }

  #enumValue(id: number, value: bigint, size: number): RenderedValue {
    const name = this.#btf.enumValueName(id, value);
    if (name !== undefined) return name;
    return size === 8 ? value : Number(value);
  }

  #int(
    t: BtfInt,
    at: number,
    bitShift: number,
    fieldBits: number,
  ): RenderedValue {
    const bits = fieldBits || t.bits;
    const shift = bitShift + t.bitOffset;
    const byteAt = at + (shift >> 3);
    const inByte = shift & 7;
    this.#need(t.id, byteAt, Math.ceil((inByte + bits) / 8));
    const wide = t.size > 4;
    if (t.bool && !fieldBits && inByte === 0) return this.#bytes[byteAt] !== 0;
    if (fieldBits || inByte !== 0 || bits !== t.size * 8) {
      if (this.#compat) {
        return "0x" + this.#bits(byteAt, inByte, bits, false).toString(16);
      }
      const value = this.#bits(byteAt, inByte, bits, t.signed);
      if (t.bool) return value !== 0n;
      return wide ? value : Number(value);
    }
    const view = this.#view;
    switch (t.size) {
      case 1:
        if (t.char) return String.fromCharCode(view.getUint8(byteAt));
        return t.signed ? view.getInt8(byteAt) : view.getUint8(byteAt);
      case 2:
        return t.signed
          ? view.getInt16(byteAt, true)
          : view.getUint16(byteAt, true);
      case 4:
        return t.signed
          ? view.getInt32(byteAt, true)
          : view.getUint32(byteAt, true);
      case 8:
        return t.signed
          ? view.getBigInt64(byteAt, true)
          : view.getBigUint64(byteAt, true);
      default: {
        const raw = this.#uint(byteAt, 16);
        if (this.#compat) return "0x" + raw.toString(16);
        return t.signed ? BigInt.asIntN(128, raw) : raw;
      }
    }
  }

  #isCharArray(elemId: number, at: number, nelems: number): string | undefined {
    const btf = this.#btf;
    let elem = btf.type(elemId);
    // Like bpftool: qualifiers are skipped but a typedef to char is not a char.
    for (let steps = 0; steps < MAX_TYPE_DEPTH; steps++) {
      if (
        elem.kind !== BtfKind.VOLATILE && elem.kind !== BtfKind.CONST &&
        elem.kind !== BtfKind.RESTRICT && elem.kind !== BtfKind.TYPE_TAG
      ) break;
      elem = btf.type(elem.type);
    }
    if (elem.kind !== BtfKind.INT || elem.size !== 1) return undefined;
    if (!elem.char && elem.name !== "char") return undefined;
    const end = Math.min(at + nelems, this.#bytes.byteLength);
    let text = "";
    for (let i = at; i < end; i++) {
      const byte = this.#bytes[i]!;
      if (byte === 0) return text;
      if (byte <= 0x1f || byte >= 0x7f) return undefined;
      text += String.fromCharCode(byte);
    }
    return undefined;
  }

  #array(
    id: number,
    elemId: number,
    nelems: number,
    at: number,
    depth: number,
  ): RenderedValue {
    const btf = this.#btf;
    if (nelems === 0) return [];
    const text = this.#isCharArray(elemId, at, nelems);
    if (text !== undefined) return text;
    const elemSize = btf.sizeOf(elemId);
    if (elemSize === 0) return [];
    this.#need(id, at, elemSize * nelems);
    const out: RenderedValue[] = new Array(nelems);
    for (let i = 0; i < nelems; i++) {
      out[i] = this.render(elemId, at + i * elemSize, 0, depth + 1);
    }
    return out;
  }

  /**
   * Adds the members to `out`. `position` counts the fields written into
   * `out` so far, across lifted anonymous structs, so that an unnamed
   * member's positional key is unique within its object.
   */
  #members(
    members: BtfMember[],
    at: number,
    out: { [name: string]: RenderedValue },
    depth: number,
    position = { next: 0 },
  ): void {
    const btf = this.#btf;
    for (const m of members) {
      const memberAt = at + (m.bitOffset >> 3);
      const shift = m.bitOffset & 7;
      const resolved = btf.type(btf.resolve(m.type));
      let name = m.name;
      if (name === "" && !this.#compat) {
        if (
          (resolved.kind === BtfKind.STRUCT ||
            resolved.kind === BtfKind.UNION) && m.bitfieldSize === 0
        ) {
          if (depth > MAX_TYPE_DEPTH) {
            throw new BtfError(
              `anonymous members nest deeper than ${MAX_TYPE_DEPTH} (a cycle)`,
              btf.recordOffset(resolved.id),
            );
          }
          this.#spend(resolved.id);
          this.#need(resolved.id, memberAt, resolved.size);
          this.#members(resolved.members, memberAt, out, depth + 1, position);
          continue;
        }
        // Tracing tools emit unnamed scalar and array members (tuple keys);
        // dropping them would lose values and make distinct keys look equal.
        name = unnamedMemberKey(position.next);
      }
      position.next++;
      if (m.bitfieldSize > 0) {
        this.#spend(resolved.id);
        if (this.#compat) {
          this.#need(
            resolved.id,
            memberAt,
            Math.ceil((shift + m.bitfieldSize) / 8),
          );
          out[name] = "0x" +
            this.#bits(memberAt, shift, m.bitfieldSize, false).toString(16);
        } else if (resolved.kind === BtfKind.INT) {
          out[name] = this.#int(resolved, memberAt, shift, m.bitfieldSize);
        } else if (
          resolved.kind === BtfKind.ENUM || resolved.kind === BtfKind.ENUM64
        ) {
          this.#need(
            resolved.id,
            memberAt,
            Math.ceil((shift + m.bitfieldSize) / 8),
          );
          // Compilers before LLVM 15 leave kind_flag unset on signed enums;
          // a negative enumerator (top bit set) still says the field is signed.
          const top = 1n << BigInt(resolved.size * 8 - 1);
          const signed = resolved.signed ||
            (resolved.kind === BtfKind.ENUM &&
              resolved.values.some((v) => v.value >= top));
          const value = this.#bits(memberAt, shift, m.bitfieldSize, signed);
          out[name] = this.#enumValue(resolved.id, value, resolved.size);
        } else {
          out[name] = null;
        }
        continue;
      }
      out[name] = this.render(m.type, memberAt, shift, depth + 1);
    }
  }
}

/**
 * Renders `bytes` as type `typeId` of `btf`: the single rendering function
 * every backend and output format uses. See the module documentation for
 * the shape and every deliberate difference from bpftool.
 *
 * @param btf the BTF the type lives in
 * @param typeId the key, value, VAR or DATASEC type
 * @param bytes the raw bytes (at least the type's size)
 * @param options `style: "bpftool"` to mimic bpftool's quirks
 * @returns the typed value (JSON-able through {@linkcode toJson})
 * @throws {RangeError} when `bytes` is shorter than the type
 * @throws {BtfError} when the type information is corrupt or cyclic
 *
 * @example Render a u64 counter
 * ```ts ignore
 * import { renderValue, toJson } from "./mod.ts";
 * const value = renderValue(btf, map.btfValueTypeId, bytes);
 * console.log(toJson(value));
 * ```
 */
export function renderValue(
  btf: Btf,
  typeId: number,
  bytes: Uint8Array,
  options: RenderOptions = {},
): RenderedValue {
  const resolved = btf.type(btf.resolve(typeId));
  if (resolved.kind !== BtfKind.DATASEC) {
    const size =
      resolved.kind === BtfKind.VOID || resolved.kind === BtfKind.FWD ||
        resolved.kind === BtfKind.FUNC ||
        resolved.kind === BtfKind.FUNC_PROTO ||
        resolved.kind === BtfKind.DECL_TAG
        ? 0
        : btf.sizeOf(typeId);
    if (bytes.byteLength < size) {
      throw new RangeError(
        `Cannot render type ${typeId}: it needs ${size} bytes, got ${bytes.byteLength}`,
      );
    }
  }
  return new Renderer(btf, bytes, typeId, options.style === "bpftool")
    .render(typeId, 0, 0, 0);
}

/**
 * Renders a per-CPU map value: one `{cpu, value}` per CPU whose bytes are
 * present (null entries, CPUs the kernel does not have, are left out).
 *
 * @param btf the BTF the type lives in
 * @param typeId the value type
 * @param values each CPU's value bytes, index = CPU number
 * @param options as for {@linkcode renderValue}
 * @returns bpftool's `values` array shape
 *
 * @example Render a per-CPU counter
 * ```ts ignore
 * import { renderPercpuValues } from "./mod.ts";
 * console.log(renderPercpuValues(btf, map.btfValueTypeId, values));
 * ```
 */
export function renderPercpuValues(
  btf: Btf,
  typeId: number,
  values: readonly (Uint8Array | null)[],
  options: RenderOptions = {},
): PercpuRenderedValue[] {
  const out: PercpuRenderedValue[] = [];
  values.forEach((bytes, cpu) => {
    if (bytes) {
      out.push({ cpu, value: renderValue(btf, typeId, bytes, options) });
    }
  });
  return out;
}
