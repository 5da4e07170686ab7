/**
 * VMCOREINFO: the `KEY=VALUE` text the kernel keeps for crash tools. It gives
 * the kernel's KASLR slide, `phys_base`, the root page table and where
 * kallsyms lives, which is all bpfmap needs to find everything else.
 *
 * @module
 */

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
const PAGE = 4096;
/** Bytes read per step of the scan: big enough for few reads, small enough for little memory. */
const SCAN_CHUNK = 4 << 20;
const OSRELEASE = new TextEncoder().encode("OSRELEASE=");
const NOTE_NAME = new TextEncoder().encode("VMCOREINFO\0");
/** The note `update_vmcoreinfo_note` writes: 12-byte header, "VMCOREINFO\0" padded to 12. */
const NOTE_DESC = 24;

function startsWith(
  bytes: Uint8Array,
  at: number,
  prefix: Uint8Array,
): boolean {
  if (at + prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    if (bytes[at + i] !== prefix[i]) return false;
  }
  return true;
}

/** Where text may start in a page: the data page itself, or the desc of the ELF note copy. */
function candidateAt(bytes: Uint8Array, page: number): number {
  if (bytes[page] === 0x4f && startsWith(bytes, page, OSRELEASE)) return page;
  if (
    bytes[page] === NOTE_NAME.length && bytes[page + 1] === 0 &&
    startsWith(bytes, page + 12, NOTE_NAME) &&
    startsWith(bytes, page + NOTE_DESC, OSRELEASE)
  ) return page + NOTE_DESC;
  return -1;
}

const latin1 = new TextDecoder("latin1");

function textAt(memory: PhysicalMemory, pa: bigint): string | null {
  // the text may run past the scanned chunk or the region: read it alone
  for (let len = MAX_TEXT; len >= 256; len >>= 1) {
    const out = new Uint8Array(len);
    if (!memory.readInto(pa, out)) continue;
    const nul = out.indexOf(0);
    return latin1.decode(out.subarray(0, nul < 0 ? len : nul));
  }
  return null;
}

/** Options for {@linkcode findVmcoreinfo}. */
export interface FindVmcoreinfoOptions {
  /**
   * Says whether some architecture bpfmap reads wrote this VMCOREINFO; such
   * a copy ends the scan. Without it the first well-formed copy wins.
   */
  recognized?: (info: Vmcoreinfo) => boolean;
}

/**
 * Finds VMCOREINFO in guest physical memory without reading all of it into
 * memory: the kernel keeps the text at the start of a page it allocated
 * (`vmcoreinfo_data`, `get_zeroed_page`) and a copy in a page-aligned ELF
 * note (`vmcoreinfo_note`), so only page starts are candidates. Only runs
 * that hold data are read (a RAM file's holes, guest pages never touched,
 * are skipped with SEEK_DATA), a few MiB at a time into one reused buffer,
 * from the top down; the first copy some architecture recognises ends the
 * scan. Without a recognised copy the
 * first well-formed one (`OSRELEASE=`, `PAGESIZE=` within a few lines, some
 * `SYMBOL(`) is returned; null when there is none.
 *
 * @example
 * ```ts
 * import { BytesMemory } from "./phys.ts";
 * import { findVmcoreinfo } from "./vmcoreinfo.ts";
 * const bytes = new Uint8Array(8192);
 * const text = "OSRELEASE=6.1.0\nBUILD-ID=x\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82000000\n" +
 *   "NUMBER(phys_base)=0\nSYMBOL(kallsyms_names)=ffffffff81000000\n";
 * bytes.set(new TextEncoder().encode(text), 4096);
 * const found = findVmcoreinfo(new BytesMemory(bytes, [{ gpa: 0n, size: 8192n, fileOffset: 0 }]));
 * console.log(found?.foundAt); // 4096n
 * ```
 */
export function findVmcoreinfo(
  memory: PhysicalMemory,
  options: FindVmcoreinfoOptions = {},
): Vmcoreinfo | null {
  let fallback: Vmcoreinfo | null = null;
  let buffer: Uint8Array | null = null;
  const page = BigInt(PAGE);
  const regions = [...memory.regions].reverse();
  for (const region of regions) {
    // holes of a sparse RAM file hold zeros: only runs with data are read
    for (const run of memory.dataRuns(region).reverse()) {
      const first = (run.start + page - 1n) & ~(page - 1n);
      let top = run.end;
      while (top > first) {
        const bottom = top - first > BigInt(SCAN_CHUNK)
          ? (top - BigInt(SCAN_CHUNK)) & ~(page - 1n)
          : first;
        const len = Number(top - bottom);
        buffer ??= new Uint8Array(SCAN_CHUNK);
        const chunk = buffer.subarray(0, len);
        if (memory.readInto(bottom, chunk)) {
          for (let at = (len - 1) & ~(PAGE - 1); at >= 0; at -= PAGE) {
            const start = candidateAt(chunk, at);
            if (start < 0) continue;
            const pa = bottom + BigInt(start);
            const text = textAt(memory, pa);
            if (
              text === null ||
              !/^OSRELEASE=[^\n]+\n(?:[^\n]*\n){0,3}PAGESIZE=\d+\n/.test(
                text,
              ) ||
              !text.includes("SYMBOL(")
            ) continue;
            let info: Vmcoreinfo;
            try {
              info = parseVmcoreinfo(text);
            } catch {
              continue; // malformed: keep looking
            }
            info.foundAt = pa;
            if (!options.recognized || options.recognized(info)) return info;
            fallback ??= info;
          }
        }
        top = bottom;
      }
    }
  }
  return fallback;
}
