/**
 * What a guest architecture supplies to the guest walkers: how to recognise
 * its kernel from VMCOREINFO, where a RAM file puts guest physical memory,
 * and how kernel virtual addresses translate (image map, linear map, page
 * tables). Everything else (kallsyms, BTF, map_idr, per-CPU offsets through
 * `__per_cpu_offset`, arena address math) is the same on every architecture
 * bpfmap reads.
 *
 * @module
 */

import type { PhysicalMemory, PhysRegion } from "../phys.ts";
import type { Vmcoreinfo } from "../vmcoreinfo.ts";

/** The outcome of a page-table walk. */
export type WalkResult =
  | { pa: bigint; pageSize: bigint }
  | { pa: null; level: number; span: bigint };

/** Kernel virtual to guest physical translation for one located kernel. */
export interface ArchAddressing {
  /** Base page size in bytes. */
  readonly pageSize: number;
  /** Physical address of `va` through the kernel image map, or null when `va` is outside it. */
  imageToPhys(va: bigint): bigint | null;
  /** Physical address of `va` through the linear map based at `pageOffset`, or null when outside it. */
  linearToPhys(va: bigint, pageOffset: bigint): bigint | null;
  /** A software walk of the kernel page tables for `va`. */
  walk(memory: PhysicalMemory, va: bigint): WalkResult;
  /** The linear-map base to assume when the kernel's own variable cannot be read. */
  readonly defaultPageOffset: bigint;
  /** The kernel variable holding the linear-map base (KASLR moves it), or null. */
  readonly pageOffsetSymbol: string | null;
  /** Physical address of the root page table (checked to be in the image). */
  readonly rootPa: bigint;
}

/** One way a VMM lays guest RAM out in a RAM file. */
export interface RamFileLayout {
  /** The machine type(s) that lay it out so, e.g. `q35`. */
  machine: string;
  /** Guest physical runs, with their file offsets. */
  regions: PhysRegion[];
}

/** One architecture. Adding one is one file plus a line in `arch/mod.ts`. */
export interface GuestArch {
  /** e.g. `x86_64`. */
  readonly name: string;
  /** Whether VMCOREINFO was written by a kernel of this architecture. */
  recognizes(info: Vmcoreinfo): boolean;
  /**
   * Where guest physical memory may lie in a raw RAM file of `size` bytes:
   * one layout per machine type of the VMM that places it differently, the
   * most common first. The kernel's own record of its RAM decides between
   * them (see `src/guest/system_ram.ts`).
   */
  ramFileLayouts(size: bigint): RamFileLayout[];
  /** Builds address translation from VMCOREINFO; a GuestKernelError names a missing key. */
  addressing(info: Vmcoreinfo): ArchAddressing;
}
