/**
 * Kernel virtual to guest physical translation over any
 * {@linkcode PhysicalMemory}: the architecture (see `arch/`) supplies the
 * image map, the linear map and the page-table walk; this file adds the
 * caches that make the walkers fast.
 *
 * @module
 */

import type { ArchAddressing, WalkResult } from "./arch/mod.ts";
import { GuestMemoryError, hex } from "./errors.ts";
import type { PhysicalMemory } from "./phys.ts";

export type { WalkResult } from "./arch/mod.ts";
export {
  DEFAULT_KERNEL_IMAGE_SIZE,
  START_KERNEL_MAP,
  walkPageTables,
  X86Addressing,
} from "./arch/x86_64.ts";

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
 * Kernel virtual address reads over a guest's physical memory. Linear-map
 * and image-map addresses use arithmetic (checked against the image); the
 * rest go through the page tables, with a small translation cache (the guest
 * is assumed frozen; call `clearCache()` if it ran).
 *
 * @example
 * ```ts ignore
 * const space = new KernelAddressSpace(memory, new X86Addressing({ physBase, rootPa, levels: 5 }), null);
 * const head = space.u64(symbolAddress);
 * ```
 */
export class KernelAddressSpace {
  /** Guest physical memory. */
  readonly memory: PhysicalMemory;
  /** The architecture's translation. */
  readonly addressing: ArchAddressing;
  #pageOffset: bigint | null;
  readonly #tlb = new Map<bigint, bigint>();
  // direct-mapped cache of 4 KiB page -> offset in memory.bytes, keyed by the
  // page's high 32 address bits and its 20-bit page index within them
  readonly #pageHi = new Int32Array(1 << PAGE_CACHE_BITS);
  readonly #pageLo = new Int32Array(1 << PAGE_CACHE_BITS).fill(-1);
  readonly #pageOffsets = new Float64Array(1 << PAGE_CACHE_BITS);

  /**
   * @param memory the guest's physical memory
   * @param addressing how this kernel's addresses translate
   * @param pageOffset the linear-map base, or null until known
   */
  constructor(
    memory: PhysicalMemory,
    addressing: ArchAddressing,
    pageOffset: bigint | null = null,
  ) {
    this.memory = memory;
    this.addressing = addressing;
    this.#pageOffset = pageOffset;
    // a page cache that starts over invalidates the offsets cached here
    memory.onReset(() => this.#pageLo.fill(-1));
  }

  /** The linear-map base, or null until known. */
  get pageOffset(): bigint | null {
    return this.#pageOffset;
  }

  /** Sets the direct-map base once it has been read from the guest. */
  setPageOffset(pageOffset: bigint): void {
    this.#pageOffset = pageOffset;
    this.clearCache();
  }

  /** Forgets cached translations. */
  clearCache(): void {
    this.#tlb.clear();
    this.#pageLo.fill(-1);
  }

  /**
   * Offset (into `memory.bytes`) of the kernel virtual address `hi:lo`
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
      return this.#pageOffsets[slot]! + inPage;
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
    this.#pageOffsets[slot] = offset;
    return offset;
  }

  /** Guest physical address of `va`, or null when it is not mapped or not backed. */
  translate(va: bigint): bigint | null {
    va = BigInt.asUintN(64, va);
    const pageOffset = this.#pageOffset;
    if (pageOffset !== null) {
      const pa = this.addressing.linearToPhys(va, pageOffset);
      if (pa !== null && pa < this.memory.end) {
        return this.memory.has(pa) ? pa : null;
      }
    }
    const image = this.addressing.imageToPhys(va);
    if (image !== null && this.memory.has(image)) return image;
    const page = va >> 12n;
    const frame = this.#tlb.get(page);
    if (frame !== undefined) return frame | (va & 0xfffn);
    const walked = this.addressing.walk(this.memory, va);
    if (walked.pa === null || !this.memory.has(walked.pa)) return null;
    if (this.#tlb.size >= TLB_LIMIT) this.#tlb.clear();
    this.#tlb.set(page, walked.pa & ~0xfffn);
    return walked.pa;
  }

  /** The page-table walk alone (no arithmetic shortcuts), for range scans. */
  walk(va: bigint): WalkResult {
    return this.addressing.walk(this.memory, BigInt.asUintN(64, va));
  }

  /**
   * `len` bytes at `va`: a view of `memory.bytes` when they sit in one page
   * (use it before the next read), else a copy stitched page by page. Null
   * if any byte is unmapped.
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
    const pageOffset = this.#pageOffset;
    if (
      (pageOffset !== null &&
        this.addressing.linearToPhys(va, pageOffset) === first) ||
      this.addressing.imageToPhys(va) === first
    ) {
      // the linear and image maps are physically contiguous: one read
      return this.memory.read(first, len);
    }
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const at = va + BigInt(done);
      const pa = done === 0 ? first : this.translate(at);
      if (pa === null) return null;
      const n = Math.min(len - done, 4096 - Number(at & 0xfffn));
      if (!this.memory.readInto(pa, out.subarray(done, done + n))) return null;
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
    if (at >= 0) return this.memory.view.getBigUint64(at, true);
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
    if (at >= 0) return this.memory.view.getUint32(at, true);
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
