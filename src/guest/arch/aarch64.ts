/**
 * aarch64 guests: the kernel image map (`va - kimage_voffset`), the linear
 * map (`va - PAGE_OFFSET + PHYS_OFFSET`), a walk of the TTBR1 tables rooted
 * at `swapper_pg_dir` for the 4K, 16K and 64K granules (block mappings
 * included), and QEMU's `virt` RAM layout (RAM at 1 GiB).
 *
 * Everything comes from what `arch_crash_save_vmcoreinfo` writes on arm64:
 * `NUMBER(VA_BITS)`, `NUMBER(kimage_voffset)`, `NUMBER(PHYS_OFFSET)`,
 * `NUMBER(TCR_EL1_T1SZ)` (how much VA the running tables cover, which can be
 * less than VA_BITS on a 52-bit build), `PAGESIZE`, plus the generic
 * `SYMBOL(swapper_pg_dir)` and `KERNELOFFSET`. KASLR moves the image
 * (`kimage_voffset`) and the linear map's physical base (`PHYS_OFFSET`, i.e.
 * `memstart_addr`); both are read, not assumed.
 *
 * @module
 */

import { GuestKernelError, GuestMemoryError } from "../errors.ts";
import type { PhysicalMemory, PhysRegion } from "../phys.ts";
import type { Vmcoreinfo } from "../vmcoreinfo.ts";
import type {
  ArchAddressing,
  GuestArch,
  RamFileLayout,
  WalkResult,
} from "./types.ts";

/** Guest physical address of RAM on QEMU's arm `virt` machine. */
export const QEMU_VIRT_RAM_BASE = 0x40000000n;

/** Translation granules arm64 Linux builds with. */
export type Arm64Granule = 4096 | 16384 | 65536;

/** How a descriptor carries output address bits above 47. */
export type Arm64PaFormat =
  /** 48-bit physical addresses: bits [47:granule]. */
  | "pa48"
  /** FEAT_LPA with the 64K granule: PA[51:48] in descriptor bits [15:12]. */
  | "lpa64k"
  /** FEAT_LPA2 with 4K/16K: bits [49:granule], PA[51:50] in bits [9:8]. */
  | "lpa2";

/** The facts a walk of arm64 kernel page tables needs. */
export interface Arm64WalkParams {
  /** The translation granule (`PAGESIZE`). */
  pageSize: Arm64Granule;
  /** VA bits the tables translate: `64 - TCR_EL1.T1SZ`. */
  vaBits: number;
  /** Output address encoding; default `pa48`. */
  paFormat?: Arm64PaFormat;
}

const VALID = 1n;
const TABLE_OR_PAGE = 2n;
const BITS_47_0 = (1n << 48n) - 1n;
const BITS_49_0 = (1n << 50n) - 1n;

function granuleShift(pageSize: Arm64Granule): number {
  return pageSize === 4096 ? 12 : pageSize === 16384 ? 14 : 16;
}

/** The number of lookup levels the kernel uses for this granule and VA size (`ARM64_HW_PGTABLE_LEVELS`). */
export function arm64Levels(pageSize: Arm64Granule, vaBits: number): number {
  const shift = granuleShift(pageSize);
  return Math.ceil((vaBits - shift) / (shift - 3));
}

function outputAddress(
  entry: bigint,
  shift: bigint,
  format: Arm64PaFormat,
): bigint {
  const low = ~((1n << shift) - 1n);
  switch (format) {
    case "pa48":
      return entry & BITS_47_0 & low;
    case "lpa64k":
      return (entry & BITS_47_0 & low) | (((entry >> 12n) & 0xfn) << 48n);
    case "lpa2":
      return (entry & BITS_49_0 & low) | (((entry >> 8n) & 3n) << 50n);
  }
}

/**
 * Walks arm64 TTBR1 page tables rooted at `rootPa` for the kernel address
 * `va`. Table descriptors (`0b11` above the last level) are followed, block
 * descriptors (`0b01`: 1G/2M with 4K, 32M with 16K, 512M with 64K) and page
 * descriptors (`0b11` at the last level) end the walk. On a miss the result
 * names the lookup level (the architecture's numbering: 3 is the last, 0 or
 * -1 the first) and the bytes of VA its missing entry covers, so range scans
 * can skip that far.
 *
 * @example
 * ```ts
 * import { BytesMemory } from "../phys.ts";
 * import { walkArm64 } from "./aarch64.ts";
 * const mem = new BytesMemory(new Uint8Array(4096), [{ gpa: 0n, size: 4096n, fileOffset: 0 }]);
 * console.log(walkArm64(mem, 0n, 0xffff800080000000n, { pageSize: 4096, vaBits: 48 }).pa); // null
 * ```
 */
export function walkArm64(
  memory: PhysicalMemory,
  rootPa: bigint,
  va: bigint,
  params: Arm64WalkParams,
): WalkResult {
  const shift = granuleShift(params.pageSize);
  const perLevel = shift - 3;
  const levels = arm64Levels(params.pageSize, params.vaBits);
  const format = params.paFormat ?? "pa48";
  const granule = BigInt(shift);
  const top = BigInt(params.vaBits);
  if (BigInt.asUintN(64, va) >> top !== (1n << (64n - top)) - 1n) {
    // not a TTBR1 (kernel half) address: swapper_pg_dir does not map it
    return { pa: null, level: 4 - levels, span: 1n << top };
  }
  let table = outputAddress(rootPa, granule, format);
  for (let i = 0; i < levels; i++) {
    const level = 4 - levels + i;
    const levelShift = BigInt(shift + perLevel * (levels - 1 - i));
    // the first level indexes only the VA bits left over above the others
    const indexBits = i === 0
      ? BigInt(params.vaBits) - levelShift
      : BigInt(perLevel);
    const index = (va >> levelShift) & ((1n << indexBits) - 1n);
    const entry = memory.u64(table + index * 8n);
    const span = 1n << levelShift;
    if (entry === null || (entry & VALID) === 0n) {
      return { pa: null, level, span };
    }
    const last = i === levels - 1;
    const isTable = (entry & TABLE_OR_PAGE) !== 0n;
    if (last || !isTable) {
      // 0b01 at the last level is reserved, and blocks exist at levels 1
      // and 2 only: anything else is absent rather than a guess
      if ((last && !isTable) || (!last && level < 1)) {
        return { pa: null, level, span };
      }
      const base = outputAddress(entry, levelShift, format);
      return { pa: base | (va & (span - 1n)), pageSize: span };
    }
    table = outputAddress(entry, granule, format);
  }
  return { pa: null, level: 3, span: BigInt(params.pageSize) };
}

/** The facts arm64 translation needs (all from VMCOREINFO). */
export interface Arm64Params extends Arm64WalkParams {
  /** `NUMBER(VA_BITS)`: the build's VA size, which fixes `PAGE_OFFSET`. */
  configVaBits: number;
  /** `NUMBER(PHYS_OFFSET)`: the physical address the linear map starts at. */
  physOffset: bigint;
  /** `NUMBER(kimage_voffset)`: image VA minus its PA. */
  kimageVoffset: bigint;
  /** Physical address of `swapper_pg_dir`. */
  rootPa: bigint;
  /** First image VA the image arithmetic may be used for. */
  imageStart: bigint;
  /** End (exclusive) of that window. */
  imageEnd: bigint;
}

/**
 * arm64 address translation for one kernel.
 *
 * @example
 * ```ts
 * import { Arm64Addressing } from "./aarch64.ts";
 * const arm = new Arm64Addressing({
 *   pageSize: 4096, vaBits: 48, configVaBits: 48, physOffset: 0x40000000n,
 *   kimageVoffset: 0xffff7fffc0000000n, rootPa: 0x41000000n,
 *   imageStart: 0xffff800080000000n, imageEnd: 0xffff800082000000n,
 * });
 * console.log(arm.linearToPhys(0xffff000000001000n, arm.defaultPageOffset)); // 1073745920n
 * ```
 */
export class Arm64Addressing implements ArchAddressing {
  /** The granule. */
  readonly pageSize: Arm64Granule;
  /** Root page table (`swapper_pg_dir`). */
  readonly rootPa: bigint;
  /** arm64's linear map base is a constant of VA_BITS, not a variable. */
  readonly pageOffsetSymbol = null;
  /** `PAGE_OFFSET`: `-(1 << VA_BITS)`. */
  readonly defaultPageOffset: bigint;
  /** `PAGE_END`: the linear map's exclusive end. */
  readonly pageEnd: bigint;
  readonly #params: Arm64Params;

  /** @param params what VMCOREINFO says */
  constructor(params: Arm64Params) {
    this.#params = params;
    this.pageSize = params.pageSize;
    this.rootPa = params.rootPa;
    this.defaultPageOffset = BigInt.asUintN(
      64,
      -(1n << BigInt(params.configVaBits)),
    );
    // VA_BITS_MIN: the smallest VA a 52-bit build may fall back to at boot
    const vaBitsMin = params.configVaBits > 48
      ? (params.pageSize === 16384 ? 47 : 48)
      : params.configVaBits;
    this.pageEnd = BigInt.asUintN(64, -(1n << BigInt(vaBitsMin - 1)));
  }

  /** `va - kimage_voffset` inside the window VMCOREINFO's symbols vouch for. */
  imageToPhys(va: bigint): bigint | null {
    const p = this.#params;
    if (va < p.imageStart || va >= p.imageEnd) return null;
    return BigInt.asUintN(64, va - p.kimageVoffset);
  }

  /** `__lm_to_phys`: `va - PAGE_OFFSET + PHYS_OFFSET` within `[PAGE_OFFSET, PAGE_END)`. */
  linearToPhys(va: bigint, pageOffset: bigint): bigint | null {
    if (va < pageOffset || va >= this.pageEnd) return null;
    return BigInt.asUintN(64, va - pageOffset + this.#params.physOffset);
  }

  /** The TTBR1 walk from `swapper_pg_dir`. */
  walk(memory: PhysicalMemory, va: bigint): WalkResult {
    return walkArm64(memory, this.rootPa, va, this.#params);
  }
}

/**
 * QEMU `virt` layout for a RAM file of `size` bytes: one region at 1 GiB.
 *
 * @example
 * ```ts
 * import { qemuVirtLayout } from "./aarch64.ts";
 * console.log(qemuVirtLayout(1n << 30n)[0]!.gpa); // 1073741824n
 * ```
 */
export function qemuVirtLayout(size: bigint): PhysRegion[] {
  return [{ gpa: QEMU_VIRT_RAM_BASE, size, fileOffset: 0 }];
}

/** arm64 images stay far below this; it bounds which SYMBOL()s count as image addresses. */
const MAX_IMAGE = 1n << 30n;

/**
 * The VA window where `va - kimage_voffset` is known to hold: from the
 * lowest to the page after the highest VMCOREINFO symbol near
 * `swapper_pg_dir`. Every SYMBOL() is a variable of the image, and the image
 * is one physically contiguous run, so the window is inside it; what lies
 * beyond (the rest of .bss, then vmalloc space) goes through the walk.
 */
function imageWindow(
  info: Vmcoreinfo,
  root: bigint,
  pageSize: bigint,
): [bigint, bigint] {
  let low = root;
  let high = root;
  for (const va of info.symbols.values()) {
    if (va + MAX_IMAGE < root || va > root + MAX_IMAGE) continue;
    if (va < low) low = va;
    if (va > high) high = va;
  }
  return [low & ~(pageSize - 1n), (high | (pageSize - 1n)) + 1n];
}

function number(info: Vmcoreinfo, key: string): bigint | undefined {
  return info.numbers.get(key);
}

/** The arm64 {@linkcode GuestArch}, whose translation is an {@linkcode Arm64Addressing}. */
export interface Arm64Arch extends GuestArch {
  /** Builds arm64 translation from VMCOREINFO. */
  addressing(info: Vmcoreinfo): Arm64Addressing;
}

/** arm64 kernels: VMCOREINFO carries `NUMBER(kimage_voffset)`, which no other architecture writes. */
export const AARCH64: Arm64Arch = {
  name: "aarch64",
  recognizes(info: Vmcoreinfo): boolean {
    return info.numbers.has("kimage_voffset");
  },
  ramFileLayouts(size: bigint): RamFileLayout[] {
    return [{ machine: "virt", regions: qemuVirtLayout(size) }];
  },
  addressing(info: Vmcoreinfo): Arm64Addressing {
    const pageSize = info.pageSize;
    if (pageSize !== 4096 && pageSize !== 16384 && pageSize !== 65536) {
      throw new GuestKernelError(
        `PAGESIZE=${pageSize} in arm64 VMCOREINFO: bpfmap walks the 4K, 16K and 64K granules only`,
      );
    }
    const vaBits = number(info, "VA_BITS");
    const kimageVoffset = number(info, "kimage_voffset");
    const physOffset = number(info, "PHYS_OFFSET");
    const root = info.symbols.get("swapper_pg_dir");
    const missing = [
      vaBits === undefined && "NUMBER(VA_BITS)",
      kimageVoffset === undefined && "NUMBER(kimage_voffset)",
      physOffset === undefined && "NUMBER(PHYS_OFFSET)",
      root === undefined && "SYMBOL(swapper_pg_dir)",
    ].filter((k): k is string => k !== false);
    if (missing.length) {
      throw new GuestKernelError(
        `arm64 VMCOREINFO lacks ${missing.join(", ")}`,
      );
    }
    const t1sz = number(info, "TCR_EL1_T1SZ");
    // T1SZ is what the MMU runs with; without it the build's VA_BITS is all there is
    const tableVaBits = t1sz !== undefined && t1sz > 0n && t1sz < 64n
      ? 64 - Number(t1sz)
      : Number(vaBits);
    if (
      tableVaBits < 36 || tableVaBits > 52 || vaBits! < 36n || vaBits! > 52n
    ) {
      throw new GuestKernelError(
        `arm64 VMCOREINFO says VA_BITS=${vaBits} TCR_EL1_T1SZ=${t1sz}: not a kernel VA size`,
      );
    }
    // 52-bit VAs with 4K/16K need FEAT_LPA2 (TCR_EL1.DS), which moves PA
    // bits into [9:8]; 64K descriptors keep PA[51:48] in bits [15:12], which
    // are zero on a 48-bit build, so decoding them is always right
    const paFormat: Arm64PaFormat = pageSize === 65536
      ? "lpa64k"
      : tableVaBits === 52
      ? "lpa2"
      : "pa48";
    const [imageStart, imageEnd] = imageWindow(info, root!, BigInt(pageSize));
    const rootPa = BigInt.asUintN(64, root! - kimageVoffset!);
    if (rootPa & BigInt(pageSize - 1)) {
      throw new GuestMemoryError(
        "use swapper_pg_dir",
        root!,
        `kimage_voffset puts it at unaligned physical ${rootPa.toString(16)}`,
      );
    }
    return new Arm64Addressing({
      pageSize,
      vaBits: tableVaBits,
      configVaBits: Number(vaBits),
      paFormat,
      physOffset: physOffset!,
      kimageVoffset: kimageVoffset!,
      rootPa,
      imageStart,
      imageEnd,
    });
  },
};
