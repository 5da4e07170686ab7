/**
 * x86-64 guests: the kernel image map (`__START_KERNEL_map` + `phys_base`),
 * the direct map, 4- and 5-level page tables (2 MiB and 1 GiB pages) rooted
 * at `init_top_pgt`, and QEMU's `pc`/`q35` RAM layout.
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

/** Base of the x86-64 kernel image mapping (`__START_KERNEL_map`). */
export const START_KERNEL_MAP = 0xffffffff80000000n;
/** Default `KERNEL_IMAGE_SIZE` with KASLR (1 GiB). */
export const DEFAULT_KERNEL_IMAGE_SIZE = 1n << 30n;
/** Direct-map base without KASLR, 4-level paging. */
export const DEFAULT_PAGE_OFFSET_L4 = 0xffff888000000000n;
/** Direct-map base without KASLR, 5-level paging. */
export const DEFAULT_PAGE_OFFSET_L5 = 0xff11000000000000n;

const PRESENT = 1n;
const PAGE_SIZE_BIT = 1n << 7n;
const ADDR_MASK = 0x000ffffffffff000n;
const GIB = 1n << 30n;

/**
 * Where QEMU's x86 machines put `size` bytes of RAM (QEMU's `pc_piix.c` and
 * `pc_q35.c`): `pc` (i440fx) keeps it all below 4 GiB up to 3.5 GiB, else
 * 3 GiB low and the rest at 4 GiB; `q35` all low up to 2.75 GiB, else 2 GiB
 * low. Offsets are into the RAM block (a `memory-backend-file`).
 *
 * @example
 * ```ts
 * import { qemuX86Layout } from "./x86_64.ts";
 * console.log(qemuX86Layout(5n << 30n).length); // 2
 * console.log(qemuX86Layout(3n << 30n, "q35")[1]!.size); // 1073741824n
 * ```
 */
export function qemuX86Layout(
  size: bigint,
  machine = "pc",
): PhysRegion[] {
  const q35 = /q35/.test(machine);
  const threshold = q35 ? 0xb0000000n : 0xe0000000n;
  const lowLimit = q35 ? 2n * GIB : 3n * GIB;
  const low = size >= threshold ? lowLimit : size;
  const regions: PhysRegion[] = [{ gpa: 0n, size: low, fileOffset: 0 }];
  if (size > low) {
    regions.push({ gpa: 4n * GIB, size: size - low, fileOffset: Number(low) });
  }
  return regions;
}

/**
 * Walks x86-64 page tables rooted at `rootPa` for `va`. On success returns
 * the physical address and the size of the page that maps it; otherwise the
 * level (5..1) whose entry is absent and how many bytes of virtual space that
 * entry covers (callers scanning a range can skip that far).
 *
 * @example
 * ```ts
 * import { BytesMemory } from "../phys.ts";
 * import { walkPageTables } from "./x86_64.ts";
 * const mem = new BytesMemory(new Uint8Array(4096), [{ gpa: 0n, size: 4096n, fileOffset: 0 }]);
 * console.log(walkPageTables(mem, 0n, 0xffffc90000000000n, 4).pa); // null
 * ```
 */
export function walkPageTables(
  memory: PhysicalMemory,
  rootPa: bigint,
  va: bigint,
  levels: 4 | 5,
): WalkResult {
  let table = rootPa & ADDR_MASK;
  for (let level: number = levels; level >= 1; level--) {
    const shift = 12n + 9n * BigInt(level - 1);
    const index = (va >> shift) & 511n;
    const entry = memory.u64(table + index * 8n);
    const span = 1n << shift;
    if (entry === null || (entry & PRESENT) === 0n) {
      return { pa: null, level, span };
    }
    if (
      level === 1 ||
      ((level === 2 || level === 3) && (entry & PAGE_SIZE_BIT) !== 0n)
    ) {
      const base = entry & ADDR_MASK & ~(span - 1n);
      return { pa: base | (va & (span - 1n)), pageSize: span };
    }
    table = entry & ADDR_MASK;
  }
  return { pa: null, level: 1, span: 4096n };
}

/** The facts x86-64 translation needs. */
export interface X86Params {
  /** `phys_base` (u64-wrapped; may be "negative"). */
  physBase: bigint;
  /** Physical address of the root page table (`init_top_pgt`). */
  rootPa: bigint;
  /** 5 with `pgtable_l5_enabled`, else 4. */
  levels: 4 | 5;
  /** Size of the image map window; default 1 GiB. */
  kernelImageSize?: bigint;
}

/**
 * x86-64 address translation for one kernel.
 *
 * @example
 * ```ts
 * import { X86Addressing } from "./x86_64.ts";
 * const x86 = new X86Addressing({ physBase: 0n, rootPa: 0x1000n, levels: 4 });
 * console.log(x86.imageToPhys(0xffffffff81000000n)); // 16777216n
 * ```
 */
export class X86Addressing implements ArchAddressing {
  /** 4 KiB. */
  readonly pageSize = 4096;
  /** `phys_base`. */
  readonly physBase: bigint;
  /** Root page table. */
  readonly rootPa: bigint;
  /** Paging levels. */
  readonly levels: 4 | 5;
  /** `page_offset_base` holds the direct-map base (KASLR randomises it). */
  readonly pageOffsetSymbol = "page_offset_base";
  readonly #imageSize: bigint;

  /** @param params what VMCOREINFO says */
  constructor(params: X86Params) {
    this.physBase = params.physBase;
    this.rootPa = params.rootPa;
    this.levels = params.levels;
    this.#imageSize = params.kernelImageSize ?? DEFAULT_KERNEL_IMAGE_SIZE;
  }

  /** The direct-map base of an un-randomised kernel with this many levels. */
  get defaultPageOffset(): bigint {
    return this.levels === 5 ? DEFAULT_PAGE_OFFSET_L5 : DEFAULT_PAGE_OFFSET_L4;
  }

  /** `va - __START_KERNEL_map + phys_base` inside the image window. */
  imageToPhys(va: bigint): bigint | null {
    if (va < START_KERNEL_MAP || va - START_KERNEL_MAP >= this.#imageSize) {
      return null;
    }
    return BigInt.asUintN(64, va - START_KERNEL_MAP + this.physBase);
  }

  /** `va - page_offset_base` (the direct map starts at physical 0). */
  linearToPhys(va: bigint, pageOffset: bigint): bigint | null {
    return va >= pageOffset ? va - pageOffset : null;
  }

  /** The 4- or 5-level walk from `init_top_pgt`. */
  walk(memory: PhysicalMemory, va: bigint): WalkResult {
    return walkPageTables(memory, this.rootPa, va, this.levels);
  }
}

/** x86-64 kernels: VMCOREINFO carries `SYMBOL(init_top_pgt)` (the x86-64 name of the root table). */
export const X86_64: GuestArch = {
  name: "x86_64",
  recognizes(info: Vmcoreinfo): boolean {
    return info.symbols.has("init_top_pgt");
  },
  ramFileLayouts(size: bigint): RamFileLayout[] {
    const pc = qemuX86Layout(size, "pc");
    const q35 = qemuX86Layout(size, "q35");
    return pc.length === q35.length && pc[0]!.size === q35[0]!.size
      ? [{ machine: "pc or q35", regions: pc }]
      : [{ machine: "pc", regions: pc }, { machine: "q35", regions: q35 }];
  },
  addressing(info: Vmcoreinfo): X86Addressing {
    if (info.pageSize !== 4096) {
      throw new GuestKernelError(
        `PAGESIZE=${info.pageSize}: x86-64 kernels use 4 KiB pages`,
      );
    }
    const physBase = info.numbers.get("phys_base");
    const top = info.symbols.get("init_top_pgt");
    if (physBase === undefined || top === undefined) {
      throw new GuestKernelError(
        "VMCOREINFO lacks NUMBER(phys_base) or SYMBOL(init_top_pgt), which x86-64 kernels write",
      );
    }
    const levels = (info.numbers.get("pgtable_l5_enabled") ?? 0n) !== 0n
      ? 5
      : 4;
    const image = new X86Addressing({
      physBase,
      rootPa: 0n,
      levels,
      kernelImageSize: info.numbers.get("KERNEL_IMAGE_SIZE") ??
        DEFAULT_KERNEL_IMAGE_SIZE,
    });
    const rootPa = image.imageToPhys(top);
    if (rootPa === null) {
      throw new GuestMemoryError(
        "use init_top_pgt",
        top,
        "outside the kernel image map",
      );
    }
    return new X86Addressing({
      physBase,
      rootPa,
      levels,
      kernelImageSize: info.numbers.get("KERNEL_IMAGE_SIZE") ??
        DEFAULT_KERNEL_IMAGE_SIZE,
    });
  },
};
