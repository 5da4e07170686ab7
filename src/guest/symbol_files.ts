/**
 * Symbols and BTF from files a caller may have next to a guest image: a
 * System.map, or a vmlinux ELF (`.symtab`/`.strtab` and `.BTF`). Their
 * addresses are link-time ones; `GuestKernel` adds the KASLR slide.
 *
 * @module
 */

import { elfSection } from "../btf/mod.ts";
import { GuestKernelError } from "./errors.ts";

/**
 * Parses `System.map` text (`ffffffff81000000 T _stext` per line). Later
 * duplicates do not replace earlier ones.
 *
 * @example
 * ```ts
 * import { parseSystemMap } from "./symbol_files.ts";
 * const symbols = parseSystemMap("ffffffff82a4e5c0 b map_idr\n");
 * console.log(symbols.get("map_idr")); // 18446744071606806976n
 * ```
 */
export function parseSystemMap(text: string): Map<string, bigint> {
  const symbols = new Map<string, bigint>();
  for (const line of text.split("\n")) {
    const match = /^([0-9a-fA-F]{1,16})\s+\S\s+(\S+)/.exec(line);
    if (match && !symbols.has(match[2]!)) {
      symbols.set(match[2]!, BigInt("0x" + match[1]));
    }
  }
  return symbols;
}

/** What a vmlinux ELF offers. */
export interface VmlinuxInfo {
  /** Non-zero symbols of `.symtab`. */
  symbols: Map<string, bigint>;
  /** The `.BTF` section, if present. */
  btf: Uint8Array | undefined;
}

/**
 * Reads `.symtab` (with its `.strtab`) and `.BTF` of a vmlinux ELF.
 *
 * @example
 * ```ts
 * import { readVmlinux } from "./symbol_files.ts";
 * const { symbols, btf } = readVmlinux(Deno.readFileSync("vmlinux"));
 * ```
 */
export function readVmlinux(bytes: Uint8Array): VmlinuxInfo {
  const symtab = elfSection(bytes, ".symtab");
  const strtab = elfSection(bytes, ".strtab");
  const symbols = new Map<string, bigint>();
  if (symtab && strtab) {
    const view = new DataView(
      symtab.buffer,
      symtab.byteOffset,
      symtab.byteLength,
    );
    const decoder = new TextDecoder("latin1");
    for (let at = 0; at + 24 <= symtab.byteLength; at += 24) {
      const nameOffset = view.getUint32(at, true);
      const value = view.getBigUint64(at + 8, true);
      if (value === 0n || nameOffset === 0 || nameOffset >= strtab.byteLength) {
        continue;
      }
      const end = strtab.indexOf(0, nameOffset);
      const name = decoder.decode(
        strtab.subarray(nameOffset, end < 0 ? strtab.byteLength : end),
      );
      if (!symbols.has(name)) symbols.set(name, value);
    }
  }
  const btf = elfSection(bytes, ".BTF");
  if (symbols.size === 0 && !btf) {
    throw new GuestKernelError("vmlinux has neither .symtab nor .BTF");
  }
  return { symbols, btf };
}

/**
 * Adds the KASLR slide (`KERNELOFFSET`) to link-time addresses of the kernel
 * image (`>= 0xffffffff80000000`); other values (per-CPU offsets, absolute
 * symbols) are kept.
 *
 * @example
 * ```ts
 * import { relocateSymbols } from "./symbol_files.ts";
 * const moved = relocateSymbols(new Map([["map_idr", 0xffffffff82000000n]]), 0x1000000n);
 * console.log(moved.get("map_idr")); // 18446744071612776448n
 * ```
 */
export function relocateSymbols(
  symbols: ReadonlyMap<string, bigint>,
  kernelOffset: bigint,
): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const [name, value] of symbols) {
    out.set(
      name,
      value >= 0xffffffff80000000n
        ? BigInt.asUintN(64, value + kernelOffset)
        : value,
    );
  }
  return out;
}
