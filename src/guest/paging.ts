/**
 * x86-64 kernel virtual to guest physical translation: the kernel image map,
 * the direct map, and a software walk of the kernel's page tables (4- and
 * 5-level, 2 MiB and 1 GiB pages) for vmalloc and per-CPU areas.
 *
 * @module
 */

import { GuestMemoryError, hex } from "./errors.ts";
import type { PhysicalMemory } from "./phys.ts";

/** Base of the x86-64 kernel image mapping (`__START_KERNEL_map`). */
export const START_KERNEL_MAP = 0xffffffff80000000n;
/** Default `KERNEL_IMAGE_SIZE` with KASLR (1 GiB). */
export const DEFAULT_KERNEL_IMAGE_SIZE = 1n << 30n;

const PRESENT = 1n;
const PAGE_SIZE_BIT = 1n << 7n;
const ADDR_MASK = 0x000ffffffffff000n;

/** The outcome of a page-table walk. */
export type WalkResult =
  | { pa: bigint; pageSize: bigint }
  | { pa: null; level: number; span: bigint };

/**
 * Walks x86-64 page tables rooted at `rootPa` for `va`. On success returns
 * the physical address and the size of the page that maps it; otherwise the
 * level (5..1) whose entry is absent and how many bytes of virtual space that
 * entry covers (callers scanning a range can skip that far).
 *
 * @example
 * ```ts
 * import { PhysicalMemory } from "./phys.ts";
 * import { walkPageTables } from "./paging.ts";
 * const mem = new PhysicalMemory(new Uint8Array(4096), [{ gpa: 0n, size: 4096n, fileOffset: 0 }]);
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

/** How a kernel's virtual addresses map to guest physical memory. */
export interface AddressSpaceParams {
  /** `phys_base` from VMCOREINFO (u64-wrapped; may be "negative"). */
  physBase: bigint;
  /** Physical address of the root page table (`init_top_pgt`). */
  rootPa: bigint;
  /** 5 with `pgtable_l5_enabled`, else 4. */
  levels: 4 | 5;
  /** Start of the direct map (`page_offset_base`), or null until known. */
  pageOffset: bigint | null;
  /** Size of the image map window; default 1 GiB. */
  kernelImageSize?: bigint;
}

const TLB_LIMIT = 1 << 16;
/** Slots of the direct-mapped page cache used by `offsetAt` (64 Ki pages, 256 MiB). */
const PAGE_CACHE_BITS = 16;
const PAGE_CACHE_MASK = (1 << PAGE_CACHE_BITS) - 1;

/**
 * Splits a kernel virtual address into its high and low 32 bits (unsigned
 * numbers), the form `offsetAt` takes; hot loops keep addresses this way to
 * avoid bigint arithmetic.
 */
export function splitAddress(va: bigint): [hi: number, lo: number] {
  va = BigInt.asUintN(64, va);
  return [Number(va >> 32n), Number(va & 0xffffffffn)];
}

/** Joins `hi:lo` (as from `splitAddress`) back into a bigint address. */
export function joinAddress(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * Kernel virtual address reads over a guest's physical memory. Direct-map
 * and image-map addresses use arithmetic (checked against the image); the
 * rest go through the page tables, with a small translation cache (the guest
 * is assumed frozen; call `clearCache()` if it ran).
 *
 * @example
 * ```ts ignore
 * const space = new KernelAddressSpace(memory, { physBase, rootPa, levels: 5, pageOffset: null });
 * const mapIdr = space.u64(symbolAddress, "map_idr.idr_rt.xa_head");
 * ```
 */
export class KernelAddressSpace {
  /** Guest physical memory. */
  readonly memory: PhysicalMemory;
  /** Translation parameters; `pageOffset` may be filled in later. */
  readonly params: AddressSpaceParams;
  readonly #tlb = new Map<bigint, bigint>();
  readonly #imageSize: bigint;
  readonly #imageView: DataView;
  // direct-mapped cache of 4 KiB page -> image offset, keyed by the page's
  // high 32 address bits and its 20-bit page index within them (numbers only)
  readonly #pageHi = new Int32Array(1 << PAGE_CACHE_BITS);
  readonly #pageLo = new Int32Array(1 << PAGE_CACHE_BITS).fill(-1);
  readonly #pageOffset = new Float64Array(1 << PAGE_CACHE_BITS);

  /**
   * @param memory the guest's physical memory
   * @param params where the page tables and maps are
   */
  constructor(memory: PhysicalMemory, params: AddressSpaceParams) {
    this.memory = memory;
    this.params = { ...params };
    this.#imageSize = params.kernelImageSize ?? DEFAULT_KERNEL_IMAGE_SIZE;
    this.#imageView = new DataView(
      memory.bytes.buffer,
      memory.bytes.byteOffset,
      memory.bytes.byteLength,
    );
  }

  /** Sets the direct-map base once it has been read from the guest. */
  setPageOffset(pageOffset: bigint): void {
    this.params.pageOffset = pageOffset;
    this.clearCache();
  }

  /** Forgets cached translations. */
  clearCache(): void {
    this.#tlb.clear();
    this.#pageLo.fill(-1);
  }

  /**
   * Image offset (into `memory.bytes`) of the kernel virtual address `hi:lo`
   * when `[va, va+len)` is mapped and lies inside one 4 KiB page, else -1
   * (unmapped, or crossing a page: use `read`/`mustRead` then). The address
   * is two unsigned 32-bit halves so callers can stay in number arithmetic;
   * pages are cached at 4 KiB granularity whatever the size of the page that
   * maps them, and the cache is dropped by `clearCache()`.
   */
  offsetAt(hi: number, lo: number, len: number): number {
    const inPage = lo & 0xfff;
    if (len < 0 || inPage + len > 4096) return -1;
    const page = lo >>> 12;
    const slot = (page ^ (hi << 4) ^ (hi >>> 12)) & PAGE_CACHE_MASK;
    if (this.#pageLo[slot] === page && this.#pageHi[slot] === (hi | 0)) {
      return this.#pageOffset[slot]! + inPage;
    }
    const base = this.#fillPage(hi, lo, slot);
    return base < 0 ? -1 : base + inPage;
  }

  #fillPage(hi: number, lo: number, slot: number): number {
    const start = joinAddress(hi, lo & ~0xfff);
    const pa = this.translate(start);
    // the page is cached only when its first and last bytes translate the
    // same way (one linear run) and it lies wholly inside one image region
    if (pa === null || this.translate(start | 0xfffn) !== pa + 0xfffn) {
      return -1;
    }
    const offset = this.memory.offsetOf(pa, 4096);
    if (offset < 0) return -1;
    this.#pageHi[slot] = hi | 0;
    this.#pageLo[slot] = lo >>> 12;
    this.#pageOffset[slot] = offset;
    return offset;
  }

  /** Guest physical address of `va`, or null when it is not mapped or not backed. */
  translate(va: bigint): bigint | null {
    va = BigInt.asUintN(64, va);
    const pageOffset = this.params.pageOffset;
    if (pageOffset !== null && va >= pageOffset) {
      const pa = va - pageOffset;
      if (pa < this.memory.end) return this.memory.has(pa) ? pa : null;
    }
    if (va >= START_KERNEL_MAP && va - START_KERNEL_MAP < this.#imageSize) {
      const pa = BigInt.asUintN(
        64,
        va - START_KERNEL_MAP + this.params.physBase,
      );
      if (this.memory.has(pa)) return pa;
    }
    const page = va >> 12n;
    const frame = this.#tlb.get(page);
    if (frame !== undefined) return frame | (va & 0xfffn);
    const walked = walkPageTables(
      this.memory,
      this.params.rootPa,
      va,
      this.params.levels,
    );
    if (walked.pa === null || !this.memory.has(walked.pa)) return null;
    if (this.#tlb.size >= TLB_LIMIT) this.#tlb.clear();
    this.#tlb.set(page, walked.pa & ~0xfffn);
    return walked.pa;
  }

  /** The page-table walk alone (no arithmetic shortcuts), for range scans. */
  walk(va: bigint): WalkResult {
    return walkPageTables(
      this.memory,
      this.params.rootPa,
      BigInt.asUintN(64, va),
      this.params.levels,
    );
  }

  /**
   * `len` bytes at `va`: a view when they sit in one page (or a contiguous
   * direct-map run), else a copy page by page. Null if any byte is unmapped.
   */
  read(va: bigint, len: number): Uint8Array | null {
    va = BigInt.asUintN(64, va);
    if (len <= 0) return new Uint8Array(0);
    if (len <= 4096) {
      const at = this.offsetAt(
        Number(va >> 32n),
        Number(va & 0xffffffffn),
        len,
      );
      if (at >= 0) return this.memory.bytes.subarray(at, at + len);
    }
    const first = this.translate(va);
    if (first === null) return null;
    const inPage = 4096 - Number(va & 0xfffn);
    if (len <= inPage) return this.memory.view(first, len);
    const pageOffset = this.params.pageOffset;
    if (
      pageOffset !== null && va >= pageOffset &&
      va - pageOffset + BigInt(len) <= this.memory.end
    ) {
      const direct = this.memory.view(first, len);
      if (direct) return direct;
    }
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const at = va + BigInt(done);
      const pa = done === 0 ? first : this.translate(at);
      if (pa === null) return null;
      const n = Math.min(len - done, 4096 - Number(at & 0xfffn));
      const chunk = this.memory.view(pa, n);
      if (!chunk) return null;
      out.set(chunk, done);
      done += n;
    }
    return out;
  }

  /** Like `read`, but throws a GuestMemoryError naming `what`. */
  mustRead(va: bigint, len: number, what: string): Uint8Array {
    const bytes = this.read(va, len);
    if (bytes === null) {
      throw new GuestMemoryError(
        `read ${len} bytes of ${what}`,
        va,
        "not mapped",
      );
    }
    return bytes;
  }

  /** Little-endian u64 at `va`, or null. */
  u64(va: bigint): bigint | null {
    va = BigInt.asUintN(64, va);
    const at = this.offsetAt(Number(va >> 32n), Number(va & 0xffffffffn), 8);
    if (at >= 0) return this.#imageView.getBigUint64(at, true);
    const pa = this.translate(va);
    if (pa === null) return null;
    if ((va & 0xfffn) <= 0xff8n) return this.memory.u64(pa);
    const bytes = this.read(va, 8);
    return bytes
      ? new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
      : null;
  }

  /** Little-endian u32 at `va`, or null. */
  u32(va: bigint): number | null {
    va = BigInt.asUintN(64, va);
    const at = this.offsetAt(Number(va >> 32n), Number(va & 0xffffffffn), 4);
    if (at >= 0) return this.#imageView.getUint32(at, true);
    const pa = this.translate(va);
    if (pa === null) return null;
    if ((va & 0xfffn) <= 0xffcn) return this.memory.u32(pa);
    const bytes = this.read(va, 4);
    return bytes
      ? new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true)
      : null;
  }

  /** u8 at `va`, or null. */
  u8(va: bigint): number | null {
    va = BigInt.asUintN(64, va);
    const at = this.offsetAt(Number(va >> 32n), Number(va & 0xffffffffn), 1);
    if (at >= 0) return this.memory.bytes[at]!;
    const pa = this.translate(va);
    return pa === null ? null : this.memory.u8(pa);
  }

  /** u64 at `va`; throws naming `what` when unmapped. */
  mustU64(va: bigint, what: string): bigint {
    const value = this.u64(va);
    if (value === null) {
      throw new GuestMemoryError(`read u64 ${what}`, va, "not mapped");
    }
    return value;
  }

  /** u32 at `va`; throws naming `what` when unmapped. */
  mustU32(va: bigint, what: string): number {
    const value = this.u32(va);
    if (value === null) {
      throw new GuestMemoryError(`read u32 ${what}`, va, "not mapped");
    }
    return value;
  }

  /** u8 at `va`; throws naming `what` when unmapped. */
  mustU8(va: bigint, what: string): number {
    const value = this.u8(va);
    if (value === null) {
      throw new GuestMemoryError(`read u8 ${what}`, va, "not mapped");
    }
    return value;
  }

  /** Describes `va` for error messages. */
  describe(va: bigint): string {
    return hex(va);
  }
}
