/**
 * The BTF reader: parses a blob once into an index of type offsets, decodes
 * types on demand, and answers name, size and member-offset queries.
 *
 * @module
 */

import { BtfError, BtfNotFoundError } from "./errors.ts";
import { BTF_KIND_MAX, BtfKind, btfKindName } from "./kind.ts";
import type {
  BtfDatasecVariable,
  BtfEnumValue,
  BtfMember,
  BtfMemberLocation,
  BtfParam,
  BtfType,
  BtfVarSecinfo,
} from "./types.ts";

const BTF_MAGIC = 0xeb9f;
const HEADER_MIN = 24;
const TYPE_HEADER = 12;
/** Bound on typedef/qualifier chains and nesting depth: real BTF stays far below. */
export const MAX_TYPE_DEPTH = 256;
const MAX_TYPE_SIZE = 0xffffffff;

/** Options for {@linkcode Btf.parse}. */
export interface BtfParseOptions {
  /**
   * The BTF this one is split on (vmlinux for a module): type ids and string
   * offsets then continue after the base's.
   */
  base?: Btf;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8", { fatal: false });
const NON_ASCII_REGEXP = /[\u0080-\uffff]/;

function isRefKind(kind: number): boolean {
  return kind === BtfKind.TYPEDEF || kind === BtfKind.VOLATILE ||
    kind === BtfKind.CONST || kind === BtfKind.RESTRICT ||
    kind === BtfKind.TYPE_TAG;
}

/**
 * A parsed BTF object (vmlinux, a module, or a BPF program's own BTF).
 *
 * Parsing validates the header, every type record's length, kind, name
 * offset and type references, and keeps only an offset per type; types are
 * decoded (and cached) when asked for.
 *
 * @example Find a kernel struct member's offset
 * ```ts
 * import { loadKernelBtf } from "./mod.ts";
 * const btf = loadKernelBtf();
 * console.log(btf.memberOffset("bpf_map", "name").offset);
 * ```
 */
export class Btf {
  #bytes: Uint8Array;
  #view: DataView;
  #base: Btf | undefined;
  #firstId: number;
  #offsets: Uint32Array;
  #strStart: number;
  #strLen: number;
  #strBase: number;
  #strings: string | undefined;
  #cache: (BtfType | undefined)[] = [];
  #nameIndex: Map<string, number | number[]> | undefined;

  private constructor(
    bytes: Uint8Array,
    base: Btf | undefined,
    offsets: Uint32Array,
    strStart: number,
    strLen: number,
  ) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#base = base;
    this.#firstId = base ? base.typeCount : 1;
    this.#offsets = offsets;
    this.#strStart = strStart;
    this.#strLen = strLen;
    this.#strBase = base ? base.stringsLength : 0;
  }

  /**
   * Parses a raw BTF blob (what `/sys/kernel/btf/*` and BPF_OBJ_GET_INFO_BY_FD
   * return, or an ELF `.BTF` section).
   *
   * @param bytes the blob; kept by reference, do not modify it afterwards
   * @param options `base` for split BTF
   * @returns the parsed BTF
   * @throws {BtfError} when the blob is malformed, naming the byte offset
   *
   * @example Parse vmlinux
   * ```ts
   * import { Btf } from "./mod.ts";
   * const btf = Btf.parse(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
   * console.log(btf.typeCount);
   * ```
   */
  static parse(bytes: Uint8Array, options: BtfParseOptions = {}): Btf {
    const base = options.base;
    const length = bytes.byteLength;
    if (length < HEADER_MIN) {
      throw new BtfError(
        `blob is ${length} bytes, shorter than the ${HEADER_MIN}-byte header`,
        0,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, length);
    const magic = view.getUint16(0, true);
    if (magic !== BTF_MAGIC) {
      throw new BtfError(
        magic === 0x9feb
          ? "big-endian BTF is not supported"
          : `bad magic 0x${magic.toString(16)}, expected 0xeb9f`,
        0,
      );
    }
    if (bytes[2] !== 1) {
      throw new BtfError(`unsupported version ${bytes[2]}, expected 1`, 2);
    }
    const hdrLen = view.getUint32(4, true);
    if (hdrLen < HEADER_MIN || hdrLen > length) {
      throw new BtfError(
        `header length ${hdrLen} is outside 24..${length}`,
        4,
      );
    }
    const dataLen = length - hdrLen;
    const typeOff = view.getUint32(8, true);
    const typeLen = view.getUint32(12, true);
    const strOff = view.getUint32(16, true);
    const strLen = view.getUint32(20, true);
    if (typeOff % 4 !== 0) {
      throw new BtfError(`type section offset ${typeOff} is not 4-aligned`, 8);
    }
    if (typeOff + typeLen > dataLen) {
      throw new BtfError(
        `type section ${typeOff}+${typeLen} runs past the ${dataLen} data bytes`,
        12,
      );
    }
    if (strOff + strLen > dataLen) {
      throw new BtfError(
        `string section ${strOff}+${strLen} runs past the ${dataLen} data bytes`,
        20,
      );
    }
    const strStart = hdrLen + strOff;
    if (!base && (strLen === 0 || bytes[strStart] !== 0)) {
      throw new BtfError("string section does not start with a NUL", strStart);
    }
    if (strLen > 0 && bytes[strStart + strLen - 1] !== 0) {
      throw new BtfError(
        "string section does not end with a NUL",
        strStart + strLen - 1,
      );
    }
    const typeStart = hdrLen + typeOff;
    const typeEnd = typeStart + typeLen;
    const offsets = new Uint32Array(Math.floor(typeLen / TYPE_HEADER));
    let count = 0;
    let pos = typeStart;
    while (pos < typeEnd) {
      if (pos + TYPE_HEADER > typeEnd) {
        throw new BtfError(
          `type record ${count} is truncated by the end of the type section`,
          pos,
        );
      }
      const info = view.getUint32(pos + 4, true);
      const kind = (info >>> 24) & 0x1f;
      const vlen = info & 0xffff;
      let extra: number;
      switch (kind) {
        case BtfKind.INT:
        case BtfKind.VAR:
        case BtfKind.DECL_TAG:
          extra = 4;
          break;
        case BtfKind.ARRAY:
          extra = 12;
          break;
        case BtfKind.STRUCT:
        case BtfKind.UNION:
        case BtfKind.DATASEC:
        case BtfKind.ENUM64:
          extra = 12 * vlen;
          break;
        case BtfKind.ENUM:
        case BtfKind.FUNC_PROTO:
          extra = 8 * vlen;
          break;
        case BtfKind.PTR:
        case BtfKind.FWD:
        case BtfKind.TYPEDEF:
        case BtfKind.VOLATILE:
        case BtfKind.CONST:
        case BtfKind.RESTRICT:
        case BtfKind.FUNC:
        case BtfKind.FLOAT:
        case BtfKind.TYPE_TAG:
          extra = 0;
          break;
        default:
          throw new BtfError(
            `type record ${count} has unknown kind ${kind} (max ${BTF_KIND_MAX})`,
            pos + 4,
          );
      }
      if (pos + TYPE_HEADER + extra > typeEnd) {
        throw new BtfError(
          `type record ${count} (${
            btfKindName(kind)
          }, vlen ${vlen}) runs past the end of the type section`,
          pos,
        );
      }
      offsets[count++] = pos;
      pos += TYPE_HEADER + extra;
    }
    const btf = new Btf(
      bytes,
      base,
      offsets.subarray(0, count),
      strStart,
      strLen,
    );
    btf.#validate();
    return btf;
  }

  /** Number of type ids, counting `void` (id 0) and, for split BTF, the base's ids. */
  get typeCount(): number {
    return this.#firstId + this.#offsets.length;
  }

  /** The first type id this object defines (1, or the base's `typeCount` for split BTF). */
  get firstTypeId(): number {
    return this.#firstId;
  }

  /** Total string-section length, including the base's for split BTF. */
  get stringsLength(): number {
    return this.#strBase + this.#strLen;
  }

  /** The base BTF of a split BTF, or undefined. */
  get base(): Btf | undefined {
    return this.#base;
  }

  #validate(): void {
    const view = this.#view;
    const count = this.typeCount;
    const strTotal = this.stringsLength;
    const offsets = this.#offsets;
    const checkName = (nameOff: number, at: number): void => {
      if (nameOff >= strTotal) {
        throw new BtfError(
          `name offset ${nameOff} is past the ${strTotal}-byte string section`,
          at,
        );
      }
    };
    const checkRef = (ref: number, at: number): void => {
      if (ref >= count) {
        throw new BtfError(
          `reference to type ${ref}, but only ${count} types exist`,
          at,
        );
      }
    };
    for (let i = 0; i < offsets.length; i++) {
      const pos = offsets[i]!;
      checkName(view.getUint32(pos, true), pos);
      const info = view.getUint32(pos + 4, true);
      const kind = (info >>> 24) & 0x1f;
      const vlen = info & 0xffff;
      const sizeOrType = view.getUint32(pos + 8, true);
      const body = pos + TYPE_HEADER;
      switch (kind) {
        case BtfKind.INT: {
          const data = view.getUint32(body, true);
          const bits = data & 0xff;
          const offset = (data >>> 16) & 0xff;
          const size = sizeOrType;
          if (
            size !== 1 && size !== 2 && size !== 4 && size !== 8 && size !== 16
          ) {
            throw new BtfError(
              `INT size ${size} is not 1, 2, 4, 8 or 16`,
              pos + 8,
            );
          }
          if (bits === 0 || bits > 128 || offset + bits > size * 8) {
            throw new BtfError(
              `INT bits ${bits} at bit offset ${offset} do not fit ${size} bytes`,
              body,
            );
          }
          break;
        }
        case BtfKind.PTR:
        case BtfKind.TYPEDEF:
        case BtfKind.VOLATILE:
        case BtfKind.CONST:
        case BtfKind.RESTRICT:
        case BtfKind.FUNC:
        case BtfKind.VAR:
        case BtfKind.TYPE_TAG:
        case BtfKind.DECL_TAG:
          checkRef(sizeOrType, pos + 8);
          break;
        case BtfKind.ARRAY:
          checkRef(view.getUint32(body, true), body);
          checkRef(view.getUint32(body + 4, true), body + 4);
          break;
        case BtfKind.STRUCT:
        case BtfKind.UNION:
          for (let m = 0, at = body; m < vlen; m++, at += 12) {
            checkName(view.getUint32(at, true), at);
            checkRef(view.getUint32(at + 4, true), at + 4);
          }
          break;
        case BtfKind.ENUM:
        case BtfKind.ENUM64:
          if (
            sizeOrType !== 1 && sizeOrType !== 2 && sizeOrType !== 4 &&
            sizeOrType !== 8
          ) {
            throw new BtfError(
              `${btfKindName(kind)} size ${sizeOrType} is not 1, 2, 4 or 8`,
              pos + 8,
            );
          }
          for (
            let m = 0, at = body;
            m < vlen;
            m++, at += kind === BtfKind.ENUM ? 8 : 12
          ) {
            checkName(view.getUint32(at, true), at);
          }
          break;
        case BtfKind.FUNC_PROTO:
          checkRef(sizeOrType, pos + 8);
          for (let m = 0, at = body; m < vlen; m++, at += 8) {
            checkName(view.getUint32(at, true), at);
            checkRef(view.getUint32(at + 4, true), at + 4);
          }
          break;
        case BtfKind.DATASEC:
          for (let m = 0, at = body; m < vlen; m++, at += 12) {
            checkRef(view.getUint32(at, true), at);
          }
          break;
        case BtfKind.FLOAT:
          if (![2, 4, 8, 12, 16].includes(sizeOrType)) {
            throw new BtfError(
              `FLOAT size ${sizeOrType} is not 2, 4, 8, 12 or 16`,
              pos + 8,
            );
          }
          break;
        default:
          break;
      }
    }
  }

  /** The string at `offset` of the (combined) string section. */
  #string(offset: number): string {
    if (offset < this.#strBase) return this.#base!.#string(offset);
    const local = offset - this.#strBase;
    if (local >= this.#strLen) {
      throw new BtfError(`name offset ${offset} is past the string section`);
    }
    this.#strings ??= latin1.decode(
      this.#bytes.subarray(this.#strStart, this.#strStart + this.#strLen),
    );
    const strings = this.#strings;
    let end = strings.indexOf("\0", local);
    if (end < 0) end = strings.length;
    const text = strings.slice(local, end);
    if (!NON_ASCII_REGEXP.test(text)) return text;
    return utf8.decode(
      this.#bytes.subarray(this.#strStart + local, this.#strStart + end),
    );
  }

  /**
   * The string at `offset` of the string section (base included).
   *
   * @param offset a name offset
   * @returns the NUL-terminated string there
   * @throws {BtfError} when the offset is past the section
   *
   * @example Read the empty string
   * ```ts
   * declare const btf: Btf;
   * console.log(btf.stringAt(0)); // ""
   * ```
   */
  stringAt(offset: number): string {
    return this.#string(offset);
  }

  #checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.typeCount) {
      throw new RangeError(
        `Cannot find BTF type ${id}: ids run from 0 to ${this.typeCount - 1}`,
      );
    }
  }

  /** Byte position of own type `id`'s record. */
  #pos(id: number): number {
    return this.#offsets[id - this.#firstId]!;
  }

  /**
   * The byte offset of type `id`'s record in this object's blob (-1 for
   * `void` and for ids of the base).
   *
   * @param id a type id
   * @returns the record's byte offset
   *
   * @example Locate a type record
   * ```ts
   * declare const btf: Btf;
   * console.log(btf.recordOffset(1)); // 24 in most blobs
   * ```
   */
  recordOffset(id: number): number {
    this.#checkId(id);
    return id < this.#firstId ? -1 : this.#pos(id);
  }

  /** Kind of type `id` without decoding it. */
  kindOf(id: number): BtfKind {
    this.#checkId(id);
    if (id === 0) return BtfKind.VOID;
    if (id < this.#firstId) return this.#base!.kindOf(id);
    return ((this.#view.getUint32(this.#pos(id) + 4, true) >>> 24) &
      0x1f) as BtfKind;
  }

  /** The `size`/`type` word of type `id` (raw). */
  #sizeOrType(id: number): number {
    if (id < this.#firstId) return this.#base!.#sizeOrType(id);
    return this.#view.getUint32(this.#pos(id) + 8, true);
  }

  /**
   * Decodes type `id` (cached).
   *
   * @param id a type id, 0 for `void`
   * @returns the decoded type
   * @throws {RangeError} when the id does not exist
   *
   * @example Decode a type
   * ```ts
   * declare const btf: Btf;
   * const t = btf.type(1);
   * console.log(t.kind, t.name);
   * ```
   */
  type(id: number): BtfType {
    this.#checkId(id);
    if (id === 0) return { id: 0, kind: BtfKind.VOID, name: "void" };
    if (id < this.#firstId) return this.#base!.type(id);
    const index = id - this.#firstId;
    const cached = this.#cache[index];
    if (cached) return cached;
    const decoded = this.#decode(id);
    this.#cache[index] = decoded;
    return decoded;
  }

  #decode(id: number): BtfType {
    const view = this.#view;
    const pos = this.#pos(id);
    const name = this.#string(view.getUint32(pos, true));
    const info = view.getUint32(pos + 4, true);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kindFlag = info >>> 31 === 1;
    const sizeOrType = view.getUint32(pos + 8, true);
    const body = pos + TYPE_HEADER;
    switch (kind) {
      case BtfKind.INT: {
        const data = view.getUint32(body, true);
        const encoding = (data >>> 24) & 0x0f;
        return {
          id,
          name,
          kind,
          size: sizeOrType,
          signed: (encoding & 1) !== 0,
          char: (encoding & 2) !== 0,
          bool: (encoding & 4) !== 0,
          bitOffset: (data >>> 16) & 0xff,
          bits: data & 0xff,
        };
      }
      case BtfKind.PTR:
        return { id, name, kind, type: sizeOrType };
      case BtfKind.ARRAY:
        return {
          id,
          name,
          kind,
          type: view.getUint32(body, true),
          indexType: view.getUint32(body + 4, true),
          nelems: view.getUint32(body + 8, true),
        };
      case BtfKind.STRUCT:
      case BtfKind.UNION: {
        const members: BtfMember[] = new Array(vlen);
        for (let m = 0, at = body; m < vlen; m++, at += 12) {
          const offset = view.getUint32(at + 8, true);
          members[m] = {
            name: this.#string(view.getUint32(at, true)),
            type: view.getUint32(at + 4, true),
            bitOffset: kindFlag ? offset & 0xffffff : offset,
            bitfieldSize: kindFlag ? offset >>> 24 : 0,
          };
        }
        return { id, name, kind, size: sizeOrType, members };
      }
      case BtfKind.ENUM: {
        const values: BtfEnumValue[] = new Array(vlen);
        for (let m = 0, at = body; m < vlen; m++, at += 8) {
          values[m] = {
            name: this.#string(view.getUint32(at, true)),
            value: kindFlag
              ? BigInt(view.getInt32(at + 4, true))
              : BigInt(view.getUint32(at + 4, true)),
          };
        }
        return { id, name, kind, size: sizeOrType, signed: kindFlag, values };
      }
      case BtfKind.ENUM64: {
        const values: BtfEnumValue[] = new Array(vlen);
        for (let m = 0, at = body; m < vlen; m++, at += 12) {
          const raw = (BigInt(view.getUint32(at + 8, true)) << 32n) |
            BigInt(view.getUint32(at + 4, true));
          values[m] = {
            name: this.#string(view.getUint32(at, true)),
            value: kindFlag ? BigInt.asIntN(64, raw) : raw,
          };
        }
        return { id, name, kind, size: sizeOrType, signed: kindFlag, values };
      }
      case BtfKind.FWD:
        return { id, name, kind, union: kindFlag };
      case BtfKind.TYPEDEF:
      case BtfKind.VOLATILE:
      case BtfKind.CONST:
      case BtfKind.RESTRICT:
      case BtfKind.TYPE_TAG:
        return { id, name, kind, type: sizeOrType };
      case BtfKind.FUNC:
        return { id, name, kind, type: sizeOrType, linkage: vlen };
      case BtfKind.FUNC_PROTO: {
        const params: BtfParam[] = new Array(vlen);
        for (let m = 0, at = body; m < vlen; m++, at += 8) {
          params[m] = {
            name: this.#string(view.getUint32(at, true)),
            type: view.getUint32(at + 4, true),
          };
        }
        return { id, name, kind, returnType: sizeOrType, params };
      }
      case BtfKind.VAR:
        return {
          id,
          name,
          kind,
          type: sizeOrType,
          linkage: view.getUint32(body, true),
        };
      case BtfKind.DATASEC: {
        const vars: BtfVarSecinfo[] = new Array(vlen);
        for (let m = 0, at = body; m < vlen; m++, at += 12) {
          vars[m] = {
            type: view.getUint32(at, true),
            offset: view.getUint32(at + 4, true),
            size: view.getUint32(at + 8, true),
          };
        }
        return { id, name, kind, size: sizeOrType, vars };
      }
      case BtfKind.FLOAT:
        return { id, name, kind, size: sizeOrType };
      case BtfKind.DECL_TAG:
        return {
          id,
          name,
          kind,
          type: sizeOrType,
          componentIdx: view.getInt32(body, true),
        };
      default:
        throw new BtfError(`type ${id} has unknown kind ${kind}`, pos + 4);
    }
  }

  #buildNameIndex(): Map<string, number | number[]> {
    const index = new Map<string, number | number[]>();
    const view = this.#view;
    for (let i = 0; i < this.#offsets.length; i++) {
      const nameOff = view.getUint32(this.#offsets[i]!, true);
      if (nameOff === 0) continue;
      const name = this.#string(nameOff);
      const id = this.#firstId + i;
      const found = index.get(name);
      if (found === undefined) index.set(name, id);
      else if (typeof found === "number") index.set(name, [found, id]);
      else found.push(id);
    }
    return index;
  }

  /**
   * Every type id named `name` (optionally of one kind), lowest id first,
   * base types included.
   *
   * @param name the type name
   * @param kind only this kind
   * @returns the matching ids
   *
   * @example Find every `sk_buff`
   * ```ts
   * declare const btf: Btf;
   * console.log(btf.findAllByName("sk_buff"));
   * ```
   */
  findAllByName(name: string, kind?: BtfKind): number[] {
    const result = this.#base ? this.#base.findAllByName(name, kind) : [];
    this.#nameIndex ??= this.#buildNameIndex();
    const found = this.#nameIndex.get(name);
    const ids = found === undefined
      ? []
      : typeof found === "number"
      ? [found]
      : found;
    for (const id of ids) {
      if (kind === undefined || this.kindOf(id) === kind) result.push(id);
    }
    return result;
  }

  /**
   * The first type named `name` (optionally of one kind), or undefined.
   *
   * @param name the type name
   * @param kind only this kind
   * @returns the decoded type
   *
   * @example Find `struct bpf_map`
   * ```ts
   * declare const btf: Btf;
   * import { BtfKind } from "./mod.ts";
   * console.log(btf.findByName("bpf_map", BtfKind.STRUCT)?.id);
   * ```
   */
  findByName(name: string, kind?: BtfKind): BtfType | undefined {
    const id = this.findAllByName(name, kind)[0];
    return id === undefined ? undefined : this.type(id);
  }

  /**
   * Follows typedefs, qualifiers and type tags to the underlying type id.
   *
   * @param id a type id
   * @returns the first id that is not TYPEDEF, VOLATILE, CONST, RESTRICT or TYPE_TAG
   * @throws {BtfError} when the chain loops or is absurdly long
   *
   * @example Resolve a typedef
   * ```ts
   * declare const btf: Btf;
   * const u32 = btf.findByName("u32")!;
   * console.log(btf.type(btf.resolve(u32.id)).name); // "unsigned int"
   * ```
   */
  resolve(id: number): number {
    this.#checkId(id);
    const start = id;
    for (let steps = 0; steps < MAX_TYPE_DEPTH; steps++) {
      if (!isRefKind(this.kindOf(id))) return id;
      id = this.#sizeOrType(id);
    }
    throw new BtfError(
      `type ${start} starts a typedef or qualifier chain longer than ${MAX_TYPE_DEPTH} (a cycle)`,
      this.recordOffset(start),
    );
  }

  /**
   * Size in bytes of type `id` (pointers are 8 bytes).
   *
   * @param id a type id
   * @returns the size
   * @throws {BtfError} for types without a size (void, FWD, FUNC, FUNC_PROTO,
   *   DECL_TAG), cycles, and sizes beyond 2^32-1
   *
   * @example Size of `struct bpf_map`
   * ```ts
   * declare const btf: Btf;
   * console.log(btf.sizeOf(btf.findByName("bpf_map")!.id));
   * ```
   */
  sizeOf(id: number): number {
    return this.#sizeOf(id, 0);
  }

  #sizeOf(id: number, depth: number): number {
    this.#checkId(id);
    const start = id;
    for (
      let steps = 0;
      steps < MAX_TYPE_DEPTH && depth < MAX_TYPE_DEPTH;
      steps++
    ) {
      const kind = this.kindOf(id);
      switch (kind) {
        case BtfKind.INT:
        case BtfKind.STRUCT:
        case BtfKind.UNION:
        case BtfKind.ENUM:
        case BtfKind.ENUM64:
        case BtfKind.DATASEC:
        case BtfKind.FLOAT:
          return this.#sizeOrType(id);
        case BtfKind.PTR:
          return 8;
        case BtfKind.TYPEDEF:
        case BtfKind.VOLATILE:
        case BtfKind.CONST:
        case BtfKind.RESTRICT:
        case BtfKind.TYPE_TAG:
        case BtfKind.VAR:
          id = this.#sizeOrType(id);
          continue;
        case BtfKind.ARRAY: {
          const array = this.type(id) as { type: number; nelems: number };
          if (array.nelems === 0) return 0;
          const total = array.nelems * this.#sizeOf(array.type, depth + 1);
          if (total > MAX_TYPE_SIZE) {
            throw new BtfError(
              `array type ${id} is ${total} bytes, more than 2^32-1`,
              this.recordOffset(id),
            );
          }
          return total;
        }
        default:
          throw new BtfError(
            `type ${id} (${btfKindName(kind)}) has no size`,
            this.recordOffset(id),
          );
      }
    }
    throw new BtfError(
      `type ${start} nests or chains deeper than ${MAX_TYPE_DEPTH} (a cycle)`,
      this.recordOffset(start),
    );
  }

  /**
   * Where member `path` (dot-separated, `[n]` for array elements) lives in
   * struct or union `structName`, looking through anonymous struct and union
   * members as C does.
   *
   * @param structName a struct or union name (or a type id)
   * @param path e.g. `"name"`, `"map_type"`, `"owner.type"`, `"a.b[2].c"`
   * @returns byte offset, bit offset, bitfield size and the member's type
   * @throws {BtfNotFoundError} when the struct or a path component is missing
   *
   * @example Offset of `bpf_map.name`
   * ```ts
   * import { loadKernelBtf } from "./mod.ts";
   * console.log(loadKernelBtf().memberOffset("bpf_map", "name").offset);
   * ```
   */
  memberOffset(structName: string | number, path: string): BtfMemberLocation {
    let typeId: number;
    if (typeof structName === "number") {
      typeId = structName;
    } else {
      const found = this.findAllByName(structName, BtfKind.STRUCT)[0] ??
        this.findAllByName(structName, BtfKind.UNION)[0] ??
        this.findAllByName(structName, BtfKind.TYPEDEF)[0];
      if (found === undefined) {
        throw new BtfNotFoundError(`Cannot find struct "${structName}" in BTF`);
      }
      typeId = found;
    }
    let bitOffset = 0;
    let bitfieldSize = 0;
    for (const component of path.split(".")) {
      const match = /^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$/.exec(component);
      if (!match) {
        throw new BtfNotFoundError(
          `Cannot read member path "${path}": "${component}" is not a member name`,
        );
      }
      const found = this.#findMember(this.resolve(typeId), match[1]!, 0);
      if (!found) {
        throw new BtfNotFoundError(
          `Cannot find member "${match[1]}" of "${path}" in type ${
            this.#describe(typeId)
          }`,
        );
      }
      bitOffset += found.bitOffset;
      bitfieldSize = found.bitfieldSize;
      typeId = found.type;
      for (const index of match[2]!.matchAll(/\[(\d+)\]/g)) {
        const arrayId = this.resolve(typeId);
        const array = this.type(arrayId);
        if (array.kind !== BtfKind.ARRAY) {
          throw new BtfNotFoundError(
            `Cannot index "${component}" of "${path}": it is not an array`,
          );
        }
        const n = Number(index[1]);
        if (n >= array.nelems) {
          throw new BtfNotFoundError(
            `Cannot index "${component}" of "${path}": it has ${array.nelems} elements`,
          );
        }
        bitOffset += n * this.sizeOf(array.type) * 8;
        typeId = array.type;
      }
    }
    return {
      offset: Math.floor(bitOffset / 8),
      bitOffset,
      bitfieldSize,
      type: typeId,
    };
  }

  #describe(id: number): string {
    const t = this.type(id);
    return t.name
      ? `${btfKindName(t.kind)} "${t.name}"`
      : `${id} (${btfKindName(t.kind)})`;
  }

  #findMember(
    compositeId: number,
    name: string,
    depth: number,
  ): BtfMember | undefined {
    if (depth > MAX_TYPE_DEPTH) {
      throw new BtfError(
        `anonymous members of type ${compositeId} nest deeper than ${MAX_TYPE_DEPTH} (a cycle)`,
        this.recordOffset(compositeId),
      );
    }
    const t = this.type(compositeId);
    if (t.kind !== BtfKind.STRUCT && t.kind !== BtfKind.UNION) return undefined;
    for (const member of t.members) {
      if (member.name === name) return member;
    }
    for (const member of t.members) {
      if (member.name !== "") continue;
      const inner = this.#findMember(
        this.resolve(member.type),
        name,
        depth + 1,
      );
      if (inner) {
        return {
          name: inner.name,
          type: inner.type,
          bitOffset: member.bitOffset + inner.bitOffset,
          bitfieldSize: inner.bitfieldSize,
        };
      }
    }
    return undefined;
  }

  /**
   * The variables of data section `section` (e.g. `.bss`, `.maps`), or of a
   * DATASEC type id, with their names.
   *
   * @param section a DATASEC name or type id
   * @returns variables in section order
   * @throws {BtfNotFoundError} when there is no such section
   *
   * @example List a program's `.data` variables
   * ```ts
   * declare const btf: Btf;
   * for (const v of btf.datasecVariables(".data")) console.log(v.name, v.offset);
   * ```
   */
  datasecVariables(section: string | number): BtfDatasecVariable[] {
    const id = typeof section === "number"
      ? section
      : this.findAllByName(section, BtfKind.DATASEC)[0];
    if (id === undefined) {
      throw new BtfNotFoundError(
        `Cannot find data section "${section}" in BTF`,
      );
    }
    const t = this.type(id);
    if (t.kind !== BtfKind.DATASEC) {
      throw new BtfNotFoundError(
        `Cannot list variables of type ${id}: it is not a DATASEC`,
      );
    }
    return t.vars.map((v) => {
      const target = this.type(v.type);
      return {
        name: target.name,
        varId: v.type,
        type: target.kind === BtfKind.VAR ? target.type : v.type,
        offset: v.offset,
        size: v.size,
      };
    });
  }

  /**
   * The enumerator name for `value` in ENUM/ENUM64 type `id` (typedefs
   * followed), or undefined when the value has no name.
   *
   * @param id an enum type id
   * @param value the value
   * @returns the enumerator name
   *
   * @example Name a map type
   * ```ts
   * declare const btf: Btf;
   * const e = btf.findByName("bpf_map_type")!;
   * console.log(btf.enumValueName(e.id, 1)); // "BPF_MAP_TYPE_HASH"
   * ```
   */
  enumValueName(id: number, value: bigint | number): string | undefined {
    const t = this.type(this.resolve(id));
    if (t.kind !== BtfKind.ENUM && t.kind !== BtfKind.ENUM64) return undefined;
    const wanted = BigInt(value);
    const size = BigInt(t.size * 8);
    for (const v of t.values) {
      if (v.value === wanted) return v.name;
      // Match across the signed/unsigned reading of the same bits.
      if (
        BigInt.asUintN(Number(size), v.value) ===
          BigInt.asUintN(Number(size), wanted)
      ) {
        return v.name;
      }
    }
    return undefined;
  }
}
