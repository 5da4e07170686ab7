/**
 * Finds a guest kernel in its physical memory alone: VMCOREINFO gives the
 * page tables and kallsyms; kallsyms gives every other symbol; the kernel's
 * own BTF (between `__start_BTF` and `__stop_BTF`) gives struct layouts.
 *
 * @module
 */

import { ARCHES, detectArch, type GuestArch } from "./arch/mod.ts";
import { GuestKernelError, GuestMemoryError, hex } from "./errors.ts";
import {
  decodeKallsymsChecked,
  type KallsymsMode,
  type SymbolTable,
} from "./kallsyms.ts";
import { KernelAddressSpace } from "./paging.ts";
import type { PhysicalMemory } from "./phys.ts";
import { relocateSymbols } from "./symbol_files.ts";
import {
  findVmcoreinfo,
  parseVmcoreinfo,
  type Vmcoreinfo,
} from "./vmcoreinfo.ts";

/** Options for {@linkcode GuestKernel.open}. */
export interface GuestKernelOptions {
  /** VMCOREINFO text (e.g. from an ELF core note); default: scan RAM for it. */
  vmcoreinfo?: string;
  /**
   * Symbols from a vmlinux ELF or System.map (see `symbol_files.ts`), at
   * link-time addresses: the KASLR slide from VMCOREINFO is added. Names
   * missing here still fall back to kallsyms.
   */
  symbols?: ReadonlyMap<string, bigint>;
  /** Set when `symbols` already carry the running kernel's addresses. */
  symbolsRelocated?: boolean;
  /** vmlinux BTF bytes; default: read them from guest memory. */
  btf?: Uint8Array;
}

const MAX_TABLE = 64 << 20;

/**
 * A guest kernel located in a memory image: address translation, symbols,
 * per-CPU offsets and its BTF bytes.
 *
 * @example
 * ```ts ignore
 * import { openRamFile } from "./source.ts";
 * import { GuestKernel } from "./kernel.ts";
 * using ram = openRamFile("/dev/shm/guest");
 * const kernel = GuestKernel.open(ram.memory);
 * console.log(kernel.release, hex(kernel.symbol("map_idr")));
 * ```
 */
export class GuestKernel {
  /** Parsed VMCOREINFO. */
  readonly vmcoreinfo: Vmcoreinfo;
  /** The architecture VMCOREINFO names. */
  readonly arch: GuestArch;
  /** Virtual address reads. */
  readonly space: KernelAddressSpace;
  readonly #extra: ReadonlyMap<string, bigint> | undefined;
  #kallsyms: SymbolTable | null = null;
  #kallsymsMode: KallsymsMode | null = null;
  #btf: Uint8Array | null;
  #perCpu: bigint[] | null = null;

  private constructor(
    vmcoreinfo: Vmcoreinfo,
    arch: GuestArch,
    space: KernelAddressSpace,
    options: GuestKernelOptions,
  ) {
    this.vmcoreinfo = vmcoreinfo;
    this.arch = arch;
    this.space = space;
    this.#extra = options.symbols && !options.symbolsRelocated
      ? relocateSymbols(options.symbols, vmcoreinfo.kernelOffset)
      : options.symbols;
    this.#btf = options.btf ?? null;
  }

  /**
   * Locates the kernel: VMCOREINFO (given or scanned), page tables, kallsyms
   * (checked against VMCOREINFO), then the direct-map base.
   *
   * @param memory the guest's physical memory
   */
  static open(
    memory: PhysicalMemory,
    options: GuestKernelOptions = {},
  ): GuestKernel {
    const info = options.vmcoreinfo !== undefined
      ? parseVmcoreinfo(options.vmcoreinfo)
      : findVmcoreinfo(memory, {
        recognized: (found) => ARCHES.some((arch) => arch.recognizes(found)),
      });
    if (!info) {
      throw new GuestKernelError(
        "No VMCOREINFO found in guest memory (looked at every page start for OSRELEASE= followed by PAGESIZE= and SYMBOL lines, as the kernel writes it)",
      );
    }
    const arch = detectArch(info);
    const addressing = arch.addressing(info);
    if (!memory.has(addressing.rootPa, addressing.pageSize)) {
      throw new GuestMemoryError(
        "read the root page table",
        addressing.rootPa,
        "physical address not in the image",
      );
    }
    const space = new KernelAddressSpace(memory, addressing, null);
    const kernel = new GuestKernel(info, arch, space, options);
    space.setPageOffset(kernel.#readPageOffset());
    return kernel;
  }

  /** `OSRELEASE`. */
  get release(): string {
    return this.vmcoreinfo.osRelease;
  }

  /** How kallsyms offsets were decoded, or null when kallsyms was not needed. */
  get kallsymsMode(): KallsymsMode | null {
    return this.#kallsymsMode;
  }

  #readPageOffset(): bigint {
    const addressing = this.space.addressing;
    const symbol = addressing.pageOffsetSymbol === null
      ? undefined
      : this.findSymbol(addressing.pageOffsetSymbol);
    if (symbol !== undefined) {
      const value = this.space.u64(symbol);
      // a kernel address has the top bit set; anything else is not yet written
      if (value !== null && (value >> 63n) === 1n) return value;
    }
    return addressing.defaultPageOffset;
  }

  /** Up to `max` bytes of the (physically contiguous) kernel image from `va`, copied. */
  imageView(va: bigint, max: number, what: string): Uint8Array {
    const pa = this.space.translate(va);
    if (pa === null) {
      throw new GuestMemoryError(`read ${what}`, va, "not mapped");
    }
    const region = this.space.memory.regions.find((r) =>
      pa >= r.gpa && pa < r.gpa + r.size
    )!;
    const len = Math.min(max, Number(region.gpa + region.size - pa));
    const memory = this.space.memory;
    const bytes = memory.read(pa, len);
    if (bytes === null) {
      throw new GuestMemoryError(`read ${what}`, va, "not in the image");
    }
    // a view of a page cache would change under later reads
    return bytes.buffer === memory.bytes.buffer ? bytes.slice() : bytes;
  }

  /** The decoded kallsyms table (decoded on first use). */
  kallsyms(): SymbolTable {
    if (this.#kallsyms) return this.#kallsyms;
    const sym = (name: string): bigint => {
      const value = this.vmcoreinfo.symbols.get(name);
      if (value === undefined) {
        throw new GuestKernelError(`VMCOREINFO lacks SYMBOL(${name})`);
      }
      return value;
    };
    const namesVa = sym("kallsyms_names");
    const tokenTableVa = sym("kallsyms_token_table");
    const numSyms = this.space.mustU32(
      sym("kallsyms_num_syms"),
      "kallsyms_num_syms",
    );
    // 7.x dropped kallsyms_relative_base (offsets became pc-relative)
    const relativeBase = this.vmcoreinfo.symbols.has("kallsyms_relative_base")
      ? this.space.mustU64(
        sym("kallsyms_relative_base"),
        "kallsyms_relative_base",
      )
      : null;
    const offsetsVa = sym("kallsyms_offsets");
    const namesMax =
      tokenTableVa > namesVa && tokenTableVa - namesVa < BigInt(MAX_TABLE)
        ? Number(tokenTableVa - namesVa)
        : MAX_TABLE;
    const { table, mode } = decodeKallsymsChecked({
      numSyms,
      names: this.imageView(namesVa, namesMax, "kallsyms_names"),
      tokenTable: this.imageView(tokenTableVa, 1 << 16, "kallsyms_token_table"),
      tokenIndex: this.imageView(
        sym("kallsyms_token_index"),
        512,
        "kallsyms_token_index",
      ),
      offsets: this.imageView(offsetsVa, numSyms * 4, "kallsyms_offsets"),
      offsetsAddress: offsetsVa,
      relativeBase,
    }, this.vmcoreinfo.symbols);
    this.#kallsyms = table;
    this.#kallsymsMode = mode;
    return table;
  }

  /** The address of `name` (caller's symbols, then VMCOREINFO, then kallsyms), or undefined. */
  findSymbol(name: string): bigint | undefined {
    return this.#extra?.get(name) ?? this.vmcoreinfo.symbols.get(name) ??
      this.kallsyms().get(name);
  }

  /** The address of `name`; throws a GuestKernelError naming it when absent. */
  symbol(name: string): bigint {
    const address = this.findSymbol(name);
    if (address === undefined) {
      throw new GuestKernelError(
        `Symbol ${name} not found (kallsyms, VMCOREINFO, caller symbols)`,
      );
    }
    return address;
  }

  /** The guest's vmlinux BTF: caller-provided, or `__start_BTF..__stop_BTF` in guest memory. */
  btfBytes(): Uint8Array {
    if (this.#btf) return this.#btf;
    const start = this.symbol("__start_BTF");
    const stop = this.symbol("__stop_BTF");
    if (stop <= start || stop - start > BigInt(MAX_TABLE)) {
      throw new GuestKernelError(
        `__start_BTF ${hex(start)} .. __stop_BTF ${
          hex(stop)
        } is not a plausible BTF range`,
      );
    }
    const bytes = this.space.mustRead(
      start,
      Number(stop - start),
      "vmlinux BTF (__start_BTF)",
    );
    if (bytes[0] !== 0x9f || bytes[1] !== 0xeb) {
      throw new GuestKernelError(`No BTF magic at __start_BTF ${hex(start)}`);
    }
    this.#btf = bytes;
    return bytes;
  }

  /** `nr_cpu_ids` (1 if the symbol is absent: a !SMP kernel). */
  nrCpuIds(): number {
    const address = this.findSymbol("nr_cpu_ids");
    if (address === undefined) return 1;
    const value = this.space.mustU32(address, "nr_cpu_ids");
    if (value === 0 || value > 8192) {
      throw new GuestKernelError(`nr_cpu_ids reads ${value}: corrupt image?`);
    }
    return value;
  }

  /** `__per_cpu_offset[0 .. nr_cpu_ids)`. */
  perCpuOffsets(): bigint[] {
    if (this.#perCpu) return this.#perCpu;
    const n = this.nrCpuIds();
    const base = this.findSymbol("__per_cpu_offset");
    if (base === undefined) return (this.#perCpu = [0n]);
    const offsets: bigint[] = [];
    for (let cpu = 0; cpu < n; cpu++) {
      offsets.push(
        this.space.mustU64(base + BigInt(cpu * 8), `__per_cpu_offset[${cpu}]`),
      );
    }
    return (this.#perCpu = offsets);
  }
}
