/**
 * Synthetic guest memory for the guest-backend unit tests: a byte array
 * with little-endian writers and an x86-64 page-table builder.
 *
 * @module
 */

import { X86Addressing } from "../src/guest/arch/x86_64.ts";
import { KernelAddressSpace } from "../src/guest/paging.ts";
import { BytesMemory, type PhysicalMemory } from "../src/guest/phys.ts";

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
  memory(): BytesMemory {
    return new BytesMemory(this.bytes, [{
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

/** x86-64 translation facts plus the direct-map base, as tests state them. */
export interface X86SpaceParams {
  /** `phys_base`. */
  physBase: bigint;
  /** Root page table. */
  rootPa: bigint;
  /** Paging levels. */
  levels: 4 | 5;
  /** Direct-map base, or null. */
  pageOffset: bigint | null;
}

/** A KernelAddressSpace over `memory` with x86-64 translation. */
export function x86Space(
  memory: PhysicalMemory,
  params: X86SpaceParams,
): KernelAddressSpace {
  return new KernelAddressSpace(
    memory,
    new X86Addressing({
      physBase: params.physBase,
      rootPa: params.rootPa,
      levels: params.levels,
    }),
    params.pageOffset,
  );
}

/** An ELF64 core: PT_LOAD per `loads` and, unless null, a VMCOREINFO note (after a CORE note, as QEMU writes). */
export function elfCore(
  loads: { paddr: bigint; data: Uint8Array }[],
  note: string | null,
): Uint8Array {
  const phnum = loads.length + (note === null ? 0 : 1);
  const noteBytes = (() => {
    if (note === null) return new Uint8Array(0);
    const name = new TextEncoder().encode("VMCOREINFO\0");
    const desc = new TextEncoder().encode(note);
    const pad = (n: number): number => (n + 3) & ~3;
    // a leading "CORE" note first, as QEMU writes
    const core = new Uint8Array(12 + 8 + 8);
    new DataView(core.buffer).setUint32(0, 5, true);
    new DataView(core.buffer).setUint32(4, 8, true);
    core.set(new TextEncoder().encode("CORE\0"), 12);
    const out = new Uint8Array(
      core.length + 12 + pad(name.length) + pad(desc.length),
    );
    out.set(core);
    const view = new DataView(out.buffer, core.length);
    view.setUint32(0, name.length, true);
    view.setUint32(4, desc.length, true);
    view.setUint32(8, 0, true);
    out.set(name, core.length + 12);
    out.set(desc, core.length + 12 + pad(name.length));
    return out;
  })();
  const headerSize = 64 + phnum * 56;
  let offset = headerSize + noteBytes.length;
  const total = offset + loads.reduce((n, l) => n + l.data.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  view.setUint16(16, 4, true); // ET_CORE
  view.setUint16(18, 62, true);
  view.setBigUint64(32, 64n, true);
  view.setUint16(52, 64, true);
  view.setUint16(54, 56, true);
  view.setUint16(56, phnum, true);
  let ph = 64;
  if (note !== null) {
    view.setUint32(ph, 4, true);
    view.setBigUint64(ph + 8, BigInt(headerSize), true);
    view.setBigUint64(ph + 32, BigInt(noteBytes.length), true);
    out.set(noteBytes, headerSize);
    ph += 56;
  }
  for (const load of loads) {
    view.setUint32(ph, 1, true);
    view.setBigUint64(ph + 8, BigInt(offset), true);
    view.setBigUint64(ph + 24, load.paddr, true);
    view.setBigUint64(ph + 32, BigInt(load.data.length), true);
    view.setBigUint64(ph + 40, BigInt(load.data.length), true);
    out.set(load.data, offset);
    offset += load.data.length;
    ph += 56;
  }
  return out;
}
