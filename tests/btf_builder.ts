/**
 * Test support: builds raw BTF blobs type by type, so parser and renderer
 * tests can cover kinds and corruptions no compiler emits.
 *
 * @module
 */

/** Builds a BTF blob; ids are assigned in call order from `firstId`. */
export class BtfBuilder {
  #strings: number[] = [0];
  #stringIndex = new Map<string, number>([["", 0]]);
  #types: number[] = [];
  #nextId: number;
  #strBase: number;

  /**
   * @param firstId 1, or the base's type count for split BTF
   * @param strBase 0, or the base's string-section length for split BTF
   */
  constructor(firstId = 1, strBase = 0) {
    this.#nextId = firstId;
    this.#strBase = strBase;
    if (strBase > 0) {
      this.#strings = [];
      this.#stringIndex = new Map();
    }
  }

  /** Offset of `text` in the string section (added once). */
  str(text: string): number {
    if (text === "" && this.#strBase > 0) return 0;
    const found = this.#stringIndex.get(text);
    if (found !== undefined) return found;
    const offset = this.#strBase + this.#strings.length;
    this.#strings.push(...new TextEncoder().encode(text), 0);
    this.#stringIndex.set(text, offset);
    return offset;
  }

  #add(
    name: string,
    kind: number,
    vlen: number,
    kflag: boolean,
    sizeOrType: number,
    extra: number[],
  ): number {
    this.#types.push(
      this.str(name),
      ((kflag ? 1 : 0) << 31 | kind << 24 | vlen) >>> 0,
      sizeOrType >>> 0,
      ...extra.map((v) => v >>> 0),
    );
    return this.#nextId++;
  }

  /** INT: encoding bit 0 signed, 1 char, 2 bool. */
  int(
    name: string,
    size: number,
    signed = false,
    bits = size * 8,
    encoding = 0,
    offset = 0,
  ): number {
    const enc = encoding | (signed ? 1 : 0);
    return this.#add(name, 1, 0, false, size, [
      (enc << 24) | (offset << 16) | bits,
    ]);
  }
  ptr(type: number): number {
    return this.#add("", 2, 0, false, type, []);
  }
  array(type: number, nelems: number, indexType = 0): number {
    return this.#add("", 3, 0, false, 0, [type, indexType, nelems]);
  }
  struct(
    name: string,
    size: number,
    members: {
      name: string;
      type: number;
      bitOffset: number;
      bitfieldSize?: number;
    }[],
    union = false,
  ): number {
    const kflag = members.some((m) => (m.bitfieldSize ?? 0) > 0);
    const extra = members.flatMap((m) => [
      this.str(m.name),
      m.type,
      kflag ? ((m.bitfieldSize ?? 0) << 24) | m.bitOffset : m.bitOffset,
    ]);
    return this.#add(name, union ? 5 : 4, members.length, kflag, size, extra);
  }
  enum(
    name: string,
    size: number,
    values: [string, number][],
    signed = false,
  ): number {
    const extra = values.flatMap(([n, v]) => [this.str(n), v]);
    return this.#add(name, 6, values.length, signed, size, extra);
  }
  enum64(name: string, values: [string, bigint][], signed = false): number {
    const extra = values.flatMap(([n, v]) => [
      this.str(n),
      Number(BigInt.asUintN(32, v)),
      Number(BigInt.asUintN(32, v >> 32n)),
    ]);
    return this.#add(name, 19, values.length, signed, 8, extra);
  }
  fwd(name: string, union = false): number {
    return this.#add(name, 7, 0, union, 0, []);
  }
  /** TYPEDEF 8, VOLATILE 9, CONST 10, RESTRICT 11, TYPE_TAG 18. */
  ref(kind: 8 | 9 | 10 | 11 | 18, type: number, name = ""): number {
    return this.#add(name, kind, 0, false, type, []);
  }
  funcProto(
    returnType: number,
    params: { name: string; type: number }[],
  ): number {
    return this.#add(
      "",
      13,
      params.length,
      false,
      returnType,
      params.flatMap((p) => [this.str(p.name), p.type]),
    );
  }
  func(name: string, proto: number, linkage = 1): number {
    return this.#add(name, 12, linkage, false, proto, []);
  }
  variable(name: string, type: number, linkage = 1): number {
    return this.#add(name, 14, 0, false, type, [linkage]);
  }
  datasec(
    name: string,
    size: number,
    vars: { type: number; offset: number; size: number }[],
  ): number {
    return this.#add(
      name,
      15,
      vars.length,
      false,
      size,
      vars.flatMap((v) => [v.type, v.offset, v.size]),
    );
  }
  float(name: string, size: number): number {
    return this.#add(name, 16, 0, false, size, []);
  }
  declTag(name: string, type: number, componentIdx = -1): number {
    return this.#add(name, 17, 0, false, type, [componentIdx]);
  }
  /** A raw record, for corruptions. */
  raw(words: number[]): number {
    this.#types.push(...words.map((w) => w >>> 0));
    return this.#nextId++;
  }

  /** The blob: 24-byte header, types, strings. */
  build(): Uint8Array {
    const typeLen = this.#types.length * 4;
    const strLen = this.#strings.length;
    const out = new Uint8Array(24 + typeLen + strLen);
    const view = new DataView(out.buffer);
    view.setUint16(0, 0xeb9f, true);
    out[2] = 1;
    view.setUint32(4, 24, true);
    view.setUint32(8, 0, true);
    view.setUint32(12, typeLen, true);
    view.setUint32(16, typeLen, true);
    view.setUint32(20, strLen, true);
    this.#types.forEach((w, i) => view.setUint32(24 + i * 4, w, true));
    out.set(this.#strings, 24 + typeLen);
    return out;
  }
}
