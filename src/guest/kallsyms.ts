/**
 * kallsyms decoded straight from guest memory: the kernel's own compressed
 * symbol table, located through VMCOREINFO, so no vmlinux is needed.
 *
 * @module
 */

import { GuestKernelError, hex } from "./errors.ts";

/**
 * How `kallsyms_offsets[i]` turns into an address. The kernel has changed
 * this twice since 6.1 (`kallsyms_sym_address()` in `kernel/kallsyms.c`):
 */
export type KallsymsMode =
  /**
   * x86-64 up to 6.14 (`CONFIG_KALLSYMS_ABSOLUTE_PERCPU`): offset >= 0 is an
   * absolute value (per-CPU symbols), else `relative_base - 1 - offset`.
   */
  | "absolute-percpu"
  /** `relative_base + (u32)offset`: other architectures, and x86-64 once per-CPU symbols became relative. */
  | "relative"
  /**
   * No `kallsyms_relative_base` (7.x): each entry is a signed distance from
   * the entry's own address (`offset_to_ptr(&kallsyms_offsets[i])`), which is
   * what `scripts/kallsyms --pc-relative` emits as `_text - . + offset`.
   */
  | "pc-relative";

/** Every mode, in the order {@linkcode decodeKallsymsChecked} tries them. */
export const KALLSYMS_MODES: readonly KallsymsMode[] = [
  "absolute-percpu",
  "relative",
  "pc-relative",
];

/** The raw kallsyms tables, each a view of guest memory. */
export interface KallsymsTables {
  /** `kallsyms_num_syms`. */
  numSyms: number;
  /** `kallsyms_names` and whatever follows it (decoding stops after `numSyms`). */
  names: Uint8Array;
  /** `kallsyms_token_table` and what follows it. */
  tokenTable: Uint8Array;
  /** `kallsyms_token_index`: 256 u16. */
  tokenIndex: Uint8Array;
  /** `kallsyms_offsets`: `numSyms` s32. */
  offsets: Uint8Array;
  /** The kernel virtual address of `kallsyms_offsets` (the pc-relative base). */
  offsetsAddress: bigint;
  /** The value of `kallsyms_relative_base`; null when the kernel has none (7.x). */
  relativeBase: bigint | null;
}

/** One decoded symbol. */
export interface KernelSymbol {
  /** Name without the type letter. */
  name: string;
  /** `nm`-style type letter (`T`, `d`, `B`, ...). */
  type: string;
  /** Kernel virtual address (or per-CPU offset for absolute per-CPU symbols). */
  address: bigint;
}

const MAX_SYMS = 4_000_000;

function decodeTokens(tables: KallsymsTables): string[] {
  const index = new DataView(
    tables.tokenIndex.buffer,
    tables.tokenIndex.byteOffset,
    tables.tokenIndex.byteLength,
  );
  if (tables.tokenIndex.byteLength < 512) {
    throw new GuestKernelError("kallsyms_token_index is truncated");
  }
  const decoder = new TextDecoder("latin1");
  const tokens: string[] = [];
  for (let i = 0; i < 256; i++) {
    const start = index.getUint16(i * 2, true);
    const end = tables.tokenTable.indexOf(0, start);
    if (start >= tables.tokenTable.byteLength || end < 0) {
      throw new GuestKernelError(
        `kallsyms token ${i} at offset ${start} runs past the token table`,
      );
    }
    tokens.push(decoder.decode(tables.tokenTable.subarray(start, end)));
  }
  return tokens;
}

function addressOf(
  offset: number,
  index: number,
  tables: KallsymsTables,
  mode: KallsymsMode,
): bigint {
  if (mode === "pc-relative") {
    return BigInt.asUintN(
      64,
      tables.offsetsAddress + BigInt(index * 4 + offset),
    );
  }
  const base = tables.relativeBase!;
  if (mode === "relative") {
    return BigInt.asUintN(64, base + BigInt(offset >>> 0));
  }
  if (offset >= 0) return BigInt(offset);
  return BigInt.asUintN(64, base - 1n - BigInt(offset));
}

/**
 * Decodes every symbol. Names are stored as a length (one byte, or two when
 * the first has bit 7 set: 6.1+) followed by token numbers; the first
 * character of the expansion is the type letter. Throws when `mode` needs
 * `kallsyms_relative_base` and the tables have none.
 *
 * @example
 * ```ts ignore
 * for (const sym of decodeKallsyms(tables, "absolute-percpu")) console.log(sym.name);
 * ```
 */
export function decodeKallsyms(
  tables: KallsymsTables,
  mode: KallsymsMode,
): KernelSymbol[] {
  if (tables.numSyms <= 0 || tables.numSyms > MAX_SYMS) {
    throw new GuestKernelError(
      `kallsyms_num_syms is ${tables.numSyms}, not a plausible symbol count`,
    );
  }
  if (tables.offsets.byteLength < tables.numSyms * 4) {
    throw new GuestKernelError(
      "kallsyms_offsets is shorter than kallsyms_num_syms entries",
    );
  }
  if (mode !== "pc-relative" && tables.relativeBase === null) {
    throw new GuestKernelError(
      `kallsyms mode ${mode} needs kallsyms_relative_base, which this kernel lacks`,
    );
  }
  const tokens = decodeTokens(tables);
  const offsets = new DataView(
    tables.offsets.buffer,
    tables.offsets.byteOffset,
    tables.offsets.byteLength,
  );
  const names = tables.names;
  const symbols: KernelSymbol[] = new Array(tables.numSyms);
  let at = 0;
  for (let i = 0; i < tables.numSyms; i++) {
    if (at >= names.byteLength) {
      throw new GuestKernelError(`kallsyms_names ends before symbol ${i}`);
    }
    let len = names[at]!;
    at += 1;
    if (len & 0x80) {
      if (at >= names.byteLength) {
        throw new GuestKernelError(`kallsyms_names ends inside symbol ${i}`);
      }
      len = (len & 0x7f) | (names[at]! << 7);
      at += 1;
    }
    if (len === 0 || at + len > names.byteLength) {
      throw new GuestKernelError(
        `kallsyms name ${i} (length ${len}) runs past the names table`,
      );
    }
    let text = "";
    for (let j = 0; j < len; j++) text += tokens[names[at + j]!];
    at += len;
    symbols[i] = {
      type: text.slice(0, 1),
      name: text.slice(1),
      address: addressOf(offsets.getInt32(i * 4, true), i, tables, mode),
    };
  }
  return symbols;
}

/**
 * Name to address lookups over decoded kallsyms. Where a name repeats, a
 * global symbol (upper-case type) wins over a local one, else the first.
 *
 * @example
 * ```ts
 * import { SymbolTable } from "./kallsyms.ts";
 * const table = new SymbolTable([{ name: "map_idr", type: "d", address: 0xffffffff82000000n }]);
 * console.log(table.get("map_idr")); // 18446744071595337728n
 * ```
 */
export class SymbolTable {
  readonly #byName = new Map<string, KernelSymbol>();
  // every symbol, duplicates included: address-to-name needs them all
  readonly #all: KernelSymbol[] = [];
  /** How many symbols were decoded. */
  readonly count: number;

  /** @param symbols decoded symbols */
  constructor(symbols: Iterable<KernelSymbol>) {
    let count = 0;
    for (const symbol of symbols) {
      count++;
      this.#all.push(symbol);
      const seen = this.#byName.get(symbol.name);
      if (
        !seen ||
        (seen.type === seen.type.toLowerCase() &&
          symbol.type !== symbol.type.toLowerCase())
      ) {
        this.#byName.set(symbol.name, symbol);
      }
    }
    this.count = count;
  }

  /** Every decoded symbol, duplicate names included, in table order. */
  all(): readonly KernelSymbol[] {
    return this.#all;
  }

  /** The address of `name`, or undefined. */
  get(name: string): bigint | undefined {
    return this.#byName.get(name)?.address;
  }

  /** The symbol record of `name`, or undefined. */
  lookup(name: string): KernelSymbol | undefined {
    return this.#byName.get(name);
  }

  /** The address of `name`; throws a GuestKernelError when absent. */
  must(name: string): bigint {
    const address = this.get(name);
    if (address === undefined) {
      throw new GuestKernelError(
        `Symbol ${name} not found in the guest's kallsyms`,
      );
    }
    return address;
  }
}

/**
 * Decodes with each mode and keeps the one whose addresses agree with
 * `known` (VMCOREINFO `SYMBOL(...)` values): at least 3 and at least 3/4 of
 * the names both know. (A few VMCOREINFO "symbols" such as `mem_section` are
 * pointer values, not addresses, so a full match is not expected.) Modes
 * that need `kallsyms_relative_base` are skipped when the kernel has none.
 * Throws when no mode agrees.
 *
 * @example
 * ```ts ignore
 * const { table, mode } = decodeKallsymsChecked(tables, vmcoreinfo.symbols);
 * ```
 */
export function decodeKallsymsChecked(
  tables: KallsymsTables,
  known: ReadonlyMap<string, bigint>,
): { table: SymbolTable; mode: KallsymsMode } {
  const scores: string[] = [];
  for (const mode of KALLSYMS_MODES) {
    if (mode !== "pc-relative" && tables.relativeBase === null) {
      scores.push(`${mode}: no kallsyms_relative_base`);
      continue;
    }
    const table = new SymbolTable(decodeKallsyms(tables, mode));
    let checked = 0;
    let agreed = 0;
    for (const [name, address] of known) {
      const found = table.get(name);
      if (found === undefined) continue;
      checked++;
      if (found === address) agreed++;
    }
    if (agreed >= 3 && agreed * 4 >= checked * 3) return { table, mode };
    scores.push(`${mode}: ${agreed}/${checked}`);
  }
  const sample = [...known].slice(0, 3).map(([n, a]) => `${n}=${hex(a)}`).join(
    ", ",
  );
  throw new GuestKernelError(
    `kallsyms decoded from guest memory does not agree with VMCOREINFO (${
      scores.join("; ")
    }; e.g. ${sample})`,
  );
}
