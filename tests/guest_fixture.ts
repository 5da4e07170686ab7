/**
 * Synthetic guest memory for the guest-backend unit tests: a byte array
 * with little-endian writers and an x86-64 page-table builder.
 *
 * @module
 */

import { PhysicalMemory } from "../src/guest/phys.ts";

/** Page-table entry flags: present | rw | accessed | dirty. */
export const PTE_FLAGS = 0x63n;
/** Flags of a huge-page (PS) leaf entry. */
export const HUGE_FLAGS = 0xe3n;

/** A writable fake guest RAM starting at GPA 0. */
export class FakeRam {
  /** The bytes. */
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  #next: bigint;

  /**
   * @param size bytes of RAM
   * @param allocFrom where `alloc()` hands out page-aligned memory from
   */
  constructor(size: number, allocFrom = 0x100000n) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
    this.#next = allocFrom;
  }

  /** A zeroed page-aligned block of `size` bytes. */
  alloc(size = 4096): bigint {
    const at = this.#next;
    this.#next += BigInt((size + 4095) & ~4095);
    if (this.#next > BigInt(this.bytes.byteLength)) {
      throw new Error("FakeRam exhausted");
    }
    return at;
  }

  /** Writes a u64. */
  u64(pa: bigint, value: bigint): void {
    this.#view.setBigUint64(Number(pa), BigInt.asUintN(64, value), true);
  }

  /** Writes a u32. */
  u32(pa: bigint, value: number): void {
    this.#view.setUint32(Number(pa), value >>> 0, true);
  }

  /** Writes a u8. */
  u8(pa: bigint, value: number): void {
    this.#view.setUint8(Number(pa), value);
  }

  /** Writes bytes. */
  set(pa: bigint, data: Uint8Array): void {
    this.bytes.set(data, Number(pa));
  }

  /** A PhysicalMemory over the whole array at GPA 0. */
  memory(): PhysicalMemory {
    return new PhysicalMemory(this.bytes, [{
      gpa: 0n,
      size: BigInt(this.bytes.byteLength),
      fileOffset: 0,
    }]);
  }
}

/** Builds x86-64 page tables inside a FakeRam. */
export class PageTables {
  /** Physical address of the root table. */
  readonly root: bigint;
  readonly #ram: FakeRam;
  readonly #levels: 4 | 5;
  readonly #view: DataView;

  /**
   * @param ram where tables are allocated
   * @param levels 4 or 5
   */
  constructor(ram: FakeRam, levels: 4 | 5) {
    this.#ram = ram;
    this.#levels = levels;
    this.#view = new DataView(ram.bytes.buffer);
    this.root = ram.alloc();
  }

  /** Maps `va` to `pa` with a page of `pageSize` (4 KiB, 2 MiB or 1 GiB). */
  map(va: bigint, pa: bigint, pageSize: bigint = 4096n): void {
    const leafLevel = pageSize === 4096n ? 1 : pageSize === 2n << 20n ? 2 : 3;
    let table = this.root;
    for (let level = this.#levels; level > leafLevel; level--) {
      const shift = 12n + 9n * BigInt(level - 1);
      const slot = table + ((va >> shift) & 511n) * 8n;
      let entry = this.#view.getBigUint64(Number(slot), true);
      if ((entry & 1n) === 0n) {
        entry = this.#ram.alloc() | PTE_FLAGS;
        this.#ram.u64(slot, entry);
      }
      table = entry & 0x000ffffffffff000n;
    }
    const shift = 12n + 9n * BigInt(leafLevel - 1);
    this.#ram.u64(
      table + ((va >> shift) & 511n) * 8n,
      pa | (leafLevel === 1 ? PTE_FLAGS : HUGE_FLAGS),
    );
  }
}
