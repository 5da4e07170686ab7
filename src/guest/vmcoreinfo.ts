/**
 * VMCOREINFO: the `KEY=VALUE` text the kernel keeps for crash tools. It gives
 * the kernel's KASLR slide, `phys_base`, the root page table and where
 * kallsyms lives, which is all bpfmap needs to find everything else.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { GuestKernelError } from "./errors.ts";
import type { PhysicalMemory } from "./phys.ts";

/** Parsed VMCOREINFO. */
export interface Vmcoreinfo {
  /** `OSRELEASE`, e.g. `6.12.107+deb13-cloud-amd64`. */
  osRelease: string;
  /** `PAGESIZE`. */
  pageSize: number;
  /** `SYMBOL(name)` values. */
  symbols: Map<string, bigint>;
  /** `NUMBER(name)` values (signed in the text, wrapped to u64 here). */
  numbers: Map<string, bigint>;
  /** `KERNELOFFSET` (the KASLR slide), 0n when absent. */
  kernelOffset: bigint;
  /** Every raw `KEY=VALUE` line. */
  raw: Map<string, string>;
  /** Guest physical address the text was found at (RAM scans only). */
  foundAt?: bigint;
}

function parseNumber(text: string): bigint {
  const trimmed = text.trim();
  const negative = trimmed.startsWith("-");
  const digits = negative ? trimmed.slice(1) : trimmed;
  const value = /^0x/i.test(digits) ? BigInt(digits) : BigInt(digits);
  return BigInt.asUintN(64, negative ? -value : value);
}

/**
 * Parses VMCOREINFO text. `SYMBOL(...)` and `KERNELOFFSET` are hex without
 * `0x`; `NUMBER(...)` is decimal (may be negative, e.g. `phys_base`) or `0x` hex.
 *
 * @example
 * ```ts
 * import { parseVmcoreinfo } from "./vmcoreinfo.ts";
 * const info = parseVmcoreinfo("OSRELEASE=6.1.0\nPAGESIZE=4096\nNUMBER(phys_base)=-4096\n");
 * console.log(info.numbers.get("phys_base")); // 18446744073709547520n
 * ```
 */
export function parseVmcoreinfo(text: string): Vmcoreinfo {
  const raw = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) raw.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const osRelease = raw.get("OSRELEASE");
  const pageSize = Number(raw.get("PAGESIZE"));
  if (!osRelease || !Number.isInteger(pageSize) || pageSize <= 0) {
    throw new GuestKernelError("VMCOREINFO lacks OSRELEASE or PAGESIZE");
  }
  const symbols = new Map<string, bigint>();
  const numbers = new Map<string, bigint>();
  for (const [key, value] of raw) {
    const match = /^(SYMBOL|NUMBER)\((.+)\)$/.exec(key);
    if (!match) continue;
    try {
      if (match[1] === "SYMBOL") {
        symbols.set(match[2]!, BigInt.asUintN(64, BigInt("0x" + value)));
      } else numbers.set(match[2]!, parseNumber(value));
    } catch {
      // a malformed value is just not usable; the key reads as absent
    }
  }
  let kernelOffset = 0n;
  const offsetText = raw.get("KERNELOFFSET");
  if (offsetText && /^[0-9a-f]+$/i.test(offsetText)) {
    kernelOffset = BigInt("0x" + offsetText);
  }
  return { osRelease, pageSize, symbols, numbers, kernelOffset, raw };
}

const MAX_TEXT = 16 * 1024;
const REQUIRED = [
  "SYMBOL(init_top_pgt)",
  "NUMBER(phys_base)",
  "SYMBOL(kallsyms_names)",
];

/**
 * Scans guest physical memory for VMCOREINFO text: `OSRELEASE=` followed
 * within a line by `PAGESIZE=`, and carrying the keys bpfmap needs
 * (`init_top_pgt`, `phys_base`, `kallsyms_names`). The first complete copy
 * wins; null when there is none.
 *
 * @example
 * ```ts
 * import { PhysicalMemory } from "./phys.ts";
 * import { findVmcoreinfo } from "./vmcoreinfo.ts";
 * const bytes = new Uint8Array(8192);
 * const text = "OSRELEASE=6.1.0\nBUILD-ID=x\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82000000\n" +
 *   "NUMBER(phys_base)=0\nSYMBOL(kallsyms_names)=ffffffff81000000\n";
 * bytes.set(new TextEncoder().encode(text), 4096);
 * const found = findVmcoreinfo(new PhysicalMemory(bytes, [{ gpa: 0n, size: 8192n, fileOffset: 0 }]));
 * console.log(found?.foundAt); // 4096n
 * ```
 */
export function findVmcoreinfo(memory: PhysicalMemory): Vmcoreinfo | null {
  for (const region of memory.regions) {
    const start = region.fileOffset;
    const length = Number(region.size);
    const buffer = Buffer.from(
      memory.bytes.buffer,
      memory.bytes.byteOffset + start,
      length,
    );
    let at = 0;
    for (;;) {
      at = buffer.indexOf("OSRELEASE=", at, "latin1");
      if (at < 0) break;
      const end = Math.min(length, at + MAX_TEXT);
      const window = buffer.subarray(at, end);
      const nul = window.indexOf(0);
      const text = window.subarray(0, nul < 0 ? window.length : nul).toString(
        "latin1",
      );
      if (
        /^OSRELEASE=[^\n]+\n(?:[^\n]*\n){0,3}PAGESIZE=\d+\n/.test(text) &&
        REQUIRED.every((k) => text.includes(k + "="))
      ) {
        try {
          const info = parseVmcoreinfo(text);
          info.foundAt = region.gpa + BigInt(at);
          return info;
        } catch {
          // keep looking
        }
      }
      at += 10;
    }
  }
  return null;
}
