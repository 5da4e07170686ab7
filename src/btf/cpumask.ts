/**
 * CPU masks as the kernel prints them: `struct cpumask` (and so
 * `cpumask_t` and the `cpumask` member of `struct bpf_cpumask`) rendered as
 * the list of set CPUs in `%*pbl` form, `"0-2,5"`, instead of 128 `u64`
 * words of which a scheduler author reads none.
 *
 * The list is lossless: the type fixes the mask's width, so the set bits
 * are every bit there is and the bytes can be rebuilt from the string
 * ({@linkcode cpuListBytes}). Recognition is by BTF name and shape, never
 * by name alone: a struct named `cpumask` whose single member `bits` is an
 * array of unsigned 4- or 8-byte words spanning the whole struct
 * (`DECLARE_BITMAP(bits, NR_CPUS)`, include/linux/cpumask_types.h). Bit N
 * of such a bitmap is bit N%8 of byte N/8 on the little-endian machines
 * bpfmap reads (x86-64, arm64).
 *
 * @module
 */

import type { Btf } from "./btf.ts";
import { BtfKind } from "./kind.ts";

/** The recognised shape of a cpumask type. */
export interface CpumaskLayout {
  /** Bytes of bitmap (the struct's size): `8 * bytes` CPUs. */
  readonly bytes: number;
}

const layouts = new WeakMap<Btf, Map<number, CpumaskLayout | null>>();

/**
 * The cpumask layout of type `typeId` (after typedefs and qualifiers), or
 * undefined when it is not a `struct cpumask` as the kernel declares it.
 *
 * @param btf the BTF the type lives in
 * @param typeId any type id
 * @returns the layout, or undefined
 */
export function cpumaskLayout(
  btf: Btf,
  typeId: number,
): CpumaskLayout | undefined {
  const id = btf.resolve(typeId);
  let known = layouts.get(btf);
  if (!known) layouts.set(btf, known = new Map());
  const cached = known.get(id);
  if (cached !== undefined) return cached ?? undefined;
  const layout = recognise(btf, id);
  known.set(id, layout);
  return layout ?? undefined;
}

function recognise(btf: Btf, id: number): CpumaskLayout | null {
  const t = btf.type(id);
  if (t.kind !== BtfKind.STRUCT || t.name !== "cpumask") return null;
  if (t.members.length !== 1) return null;
  const bits = t.members[0]!;
  if (bits.name !== "bits" || bits.bitOffset !== 0 || bits.bitfieldSize) {
    return null;
  }
  const array = btf.type(btf.resolve(bits.type));
  if (array.kind !== BtfKind.ARRAY || array.nelems === 0) return null;
  const word = btf.type(btf.resolve(array.type));
  if (
    word.kind !== BtfKind.INT || word.signed || word.bool || word.char ||
    (word.size !== 8 && word.size !== 4) || word.bits !== word.size * 8 ||
    word.bitOffset !== 0
  ) return null;
  if (word.size * array.nelems !== t.size) return null;
  return { bytes: t.size };
}

/**
 * The set bits of `length` bytes at `at` as `%*pbl` writes them: ascending,
 * runs of two or more as `first-last`, separated by commas; `""` when none
 * is set.
 *
 * @param bytes the bitmap's buffer
 * @param at where the bitmap starts
 * @param length its size in bytes
 * @returns the CPU list
 *
 * @example
 * ```ts
 * import { cpuList } from "./cpumask.ts";
 * console.log(cpuList(new Uint8Array([0b00100111, 0]), 0, 2)); // 0-2,5
 * ```
 */
export function cpuList(bytes: Uint8Array, at: number, length: number): string {
  let out = "";
  let start = -1;
  const total = length * 8;
  for (let bit = 0; bit <= total; bit++) {
    // Whole zero bytes outside a run are skipped a byte at a time.
    if (
      start < 0 && (bit & 7) === 0 && bit < total &&
      bytes[at + (bit >> 3)] === 0
    ) {
      bit += 7;
      continue;
    }
    const set = bit < total && (bytes[at + (bit >> 3)]! >> (bit & 7) & 1) === 1;
    if (set && start < 0) start = bit;
    if (!set && start >= 0) {
      if (out) out += ",";
      out += start === bit - 1 ? `${start}` : `${start}-${bit - 1}`;
      start = -1;
    }
  }
  return out;
}

/**
 * The bitmap bytes a {@linkcode cpuList} string stands for (the inverse, to
 * show the list loses nothing), or undefined when the text is not a list of
 * CPUs below `8 * length`.
 *
 * @param list `"0-2,5"` or `""`
 * @param length the bitmap's size in bytes
 * @returns the bytes, or undefined
 */
export function cpuListBytes(
  list: string,
  length: number,
): Uint8Array | undefined {
  const out = new Uint8Array(length);
  if (list === "") return out;
  for (const part of list.split(",")) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) return undefined;
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first || last >= length * 8) return undefined;
    for (let bit = first; bit <= last; bit++) out[bit >> 3]! |= 1 << (bit & 7);
  }
  return out;
}

/**
 * Most characters {@linkcode cpuList} writes for `length` bytes. Per bit,
 * the densest pattern is runs of two and a gap (`0-1,3-4,...`: two numbers
 * every three bits), each number at most as long as the largest CPU's.
 *
 * @param length the bitmap's size in bytes
 * @returns the bound
 */
export function cpuListMax(length: number): number {
  const total = length * 8;
  const digits = String(Math.max(0, total - 1)).length;
  return 2 * Math.ceil((total + 1) / 3) * (digits + 1);
}

/**
 * sched_ext's cid-space mask, `struct scx_cmask` (kernel/sched/ext/types.h,
 * 7.3; the SCX bitmap type of tools/sched_ext's cid.bpf.h): a header
 * `{u32 base; u32 nr_cids; u32 alloc_words; u64 bits[];}` and its words
 * right after it (`bits[0]` covers cids `base & ~63` up). Recognised when
 * the struct has exactly that shape.
 */
export interface CmaskLayout {
  /** Header size in bytes (where `bits[0]` starts). */
  readonly headerBytes: number;
}

const cmaskLayouts = new WeakMap<Btf, Map<number, CmaskLayout | null>>();

/**
 * The `struct scx_cmask` layout of type `typeId`, or undefined.
 *
 * @param btf the BTF the type lives in
 * @param typeId any type id
 * @returns the layout, or undefined
 */
export function cmaskLayout(
  btf: Btf,
  typeId: number,
): CmaskLayout | undefined {
  const id = btf.resolve(typeId);
  let known = cmaskLayouts.get(btf);
  if (!known) cmaskLayouts.set(btf, known = new Map());
  const cached = known.get(id);
  if (cached !== undefined) return cached ?? undefined;
  const layout = recogniseCmask(btf, id);
  known.set(id, layout);
  return layout ?? undefined;
}

function isUnsigned(btf: Btf, id: number, size: number): boolean {
  const t = btf.type(btf.resolve(id));
  return t.kind === BtfKind.INT && !t.signed && !t.bool && !t.char &&
    t.size === size && t.bits === size * 8 && t.bitOffset === 0;
}

function recogniseCmask(btf: Btf, id: number): CmaskLayout | null {
  const t = btf.type(id);
  if (t.kind !== BtfKind.STRUCT || t.name !== "scx_cmask") return null;
  const shape: [string, number][] = [
    ["base", 0],
    ["nr_cids", 32],
    ["alloc_words", 64],
    ["bits", 128],
  ];
  if (
    t.members.length !== 4 || t.size !== 16 ||
    t.members.some((m, i) =>
      m.name !== shape[i]![0] || m.bitfieldSize !== 0 ||
      m.bitOffset !== shape[i]![1]
    )
  ) return null;
  if (!t.members.slice(0, 3).every((m) => isUnsigned(btf, m.type, 4))) {
    return null;
  }
  const bits = btf.type(btf.resolve(t.members[3]!.type));
  if (
    bits.kind !== BtfKind.ARRAY || bits.nelems !== 0 ||
    !isUnsigned(btf, bits.type, 8)
  ) return null;
  return { headerBytes: 16 };
}

/** A rendered `struct scx_cmask`: the header and the cids it holds. */
export interface CmaskValue {
  /** First cid of the active range. */
  base: number;
  /** Length of the active range. */
  "nr_cids": number;
  /** Words of storage after the header. */
  "alloc_words": number;
  /** Set cids of the active range in `%*pbl` form, `"0-2,5"`. */
  cids: string;
  /**
   * Words the active range needs that lie past the bytes available (the
   * mask was cut: its cids there are unknown); only when some are.
   */
  "unread_words"?: number;
}

/**
 * Reads the `struct scx_cmask` at `at` of `bytes`, its words from the bytes
 * that follow the header up to `end`: the active range's set cids, as the
 * kernel's cmask helpers see them. A hostile header (an active range past
 * `alloc_words`) is bounded by the bytes there are.
 *
 * @param bytes the buffer
 * @param at where the header starts
 * @param end where the readable bytes end (words past it are `unread_words`)
 * @returns the header and the cids
 */
export function cmaskValue(
  bytes: Uint8Array,
  at: number,
  end: number,
): CmaskValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const base = view.getUint32(at, true);
  const nrCids = view.getUint32(at + 4, true);
  const allocWords = view.getUint32(at + 8, true);
  const out: CmaskValue = {
    base,
    "nr_cids": nrCids,
    "alloc_words": allocWords,
    cids: "",
  };
  if (nrCids === 0) return out;
  const firstWord = Math.floor(base / 64);
  const last = base + nrCids - 1;
  const needed = Math.min(Math.floor(last / 64) - firstWord + 1, allocWords);
  const available = Math.max(0, Math.floor((end - at - 16) / 8));
  const words = Math.min(needed, available);
  let list = "";
  let start = -1;
  // One past the last readable cid closes a run that reaches it.
  const stop = Math.min(last + 1, (firstWord + words) * 64);
  for (let cid = base; cid <= stop; cid++) {
    let set = false;
    if (cid < stop) {
      const bit = cid - firstWord * 64;
      set = (bytes[at + 16 + (bit >> 3)]! >> (bit & 7) & 1) === 1;
    }
    if (set && start < 0) start = cid;
    if (!set && start >= 0) {
      if (list) list += ",";
      list += start === cid - 1 ? `${start}` : `${start}-${cid - 1}`;
      start = -1;
    }
    // Whole zero bytes outside a run are skipped a byte at a time.
    if (
      !set && start < 0 && cid + 1 < stop &&
      ((cid + 1 - firstWord * 64) & 7) === 0
    ) {
      while (
        cid + 8 < stop &&
        bytes[at + 16 + ((cid + 1 - firstWord * 64) >> 3)] === 0
      ) cid += 8;
    }
  }
  out.cids = list;
  if (needed > words) out["unread_words"] = needed - words;
  return out;
}
