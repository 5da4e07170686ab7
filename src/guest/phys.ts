/**
 * Guest physical memory: a byte image (RAM file, ELF core) plus the map from
 * guest physical addresses (GPA) to offsets in that image. Reads return views
 * into the image when they fit one region, so nothing is copied.
 *
 * @module
 */

import { GuestMemoryError, hex } from "./errors.ts";

/** One contiguous run of guest physical memory inside the image. */
export interface PhysRegion {
  /** First guest physical address of the run. */
  gpa: bigint;
  /** Length in bytes. */
  size: bigint;
  /** Byte offset of `gpa` in the image. */
  fileOffset: number;
}

const GIB = 1n << 30n;

/**
 * QEMU x86-64 `pc`/`q35` layout for a RAM file of `size` bytes: the first
 * `min(size, 3 GiB)` at GPA 0, the rest at GPA 4 GiB.
 *
 * @example
 * ```ts
 * import { qemuX86Layout } from "./phys.ts";
 * console.log(qemuX86Layout(5n << 30n).length); // 2
 * ```
 */
export function qemuX86Layout(
  size: bigint,
  lowLimit: bigint = 3n * GIB,
): PhysRegion[] {
  const low = size < lowLimit ? size : lowLimit;
  const regions: PhysRegion[] = [{ gpa: 0n, size: low, fileOffset: 0 }];
  if (size > low) {
    regions.push({ gpa: 4n * GIB, size: size - low, fileOffset: Number(low) });
  }
  return regions;
}

/**
 * Reads guest physical memory out of one byte image. Regions must not
 * overlap; a read that is not wholly inside one region returns null (or is
 * stitched together by `readCopy`).
 *
 * @example
 * ```ts
 * import { PhysicalMemory } from "./phys.ts";
 * const mem = new PhysicalMemory(new Uint8Array(8192), [
 *   { gpa: 0x1000n, size: 8192n, fileOffset: 0 },
 * ]);
 * console.log(mem.u64(0x1000n)); // 0n
 * ```
 */
export class PhysicalMemory {
  /** The image bytes (a mapping of the RAM file or core). */
  readonly bytes: Uint8Array;
  /** Sorted by `gpa`. */
  readonly regions: readonly PhysRegion[];
  readonly #view: DataView;
  #last: PhysRegion | undefined;

  /**
   * @param bytes the whole image
   * @param regions where each GPA run lives in `bytes`; each must fit inside it
   */
  constructor(bytes: Uint8Array, regions: readonly PhysRegion[]) {
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const sorted = [...regions].sort((
      a,
      b,
    ) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
    for (const region of sorted) {
      if (
        region.size < 0n || region.fileOffset < 0 ||
        BigInt(region.fileOffset) + region.size > BigInt(bytes.byteLength)
      ) {
        throw new RangeError(
          `Region at GPA ${
            hex(region.gpa)
          } (+${region.size}) does not fit the ${bytes.byteLength}-byte image`,
        );
      }
    }
    this.regions = sorted;
  }

  /** One past the highest backed guest physical address. */
  get end(): bigint {
    const last = this.regions[this.regions.length - 1];
    return last ? last.gpa + last.size : 0n;
  }

  /** Image offset of `[pa, pa+len)` if wholly inside one region, else -1. */
  offsetOf(pa: bigint, len: number): number {
    const cached = this.#last;
    if (
      cached && pa >= cached.gpa && pa + BigInt(len) <= cached.gpa + cached.size
    ) {
      return cached.fileOffset + Number(pa - cached.gpa);
    }
    for (const region of this.regions) {
      if (pa >= region.gpa && pa + BigInt(len) <= region.gpa + region.size) {
        this.#last = region;
        return region.fileOffset + Number(pa - region.gpa);
      }
    }
    return -1;
  }

  /** Whether every byte of `[pa, pa+len)` is backed. */
  has(pa: bigint, len = 1): boolean {
    return this.offsetOf(pa, len) >= 0;
  }

  /** A zero-copy view of `[pa, pa+len)`, or null when not inside one region. */
  view(pa: bigint, len: number): Uint8Array | null {
    const offset = this.offsetOf(pa, len);
    return offset < 0 ? null : this.bytes.subarray(offset, offset + len);
  }

  /** Like `view`, but stitches reads that span regions into a copy; null if any byte is missing. */
  readCopy(pa: bigint, len: number): Uint8Array | null {
    const direct = this.view(pa, len);
    if (direct) return direct.slice();
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const at = pa + BigInt(done);
      const region = this.regions.find((r) =>
        at >= r.gpa && at < r.gpa + r.size
      );
      if (!region) return null;
      const n = Math.min(len - done, Number(region.gpa + region.size - at));
      const offset = region.fileOffset + Number(at - region.gpa);
      out.set(this.bytes.subarray(offset, offset + n), done);
      done += n;
    }
    return out;
  }

  /** u8 at `pa`, or null when unbacked. */
  u8(pa: bigint): number | null {
    const offset = this.offsetOf(pa, 1);
    return offset < 0 ? null : this.#view.getUint8(offset);
  }

  /** Little-endian u32 at `pa`, or null when unbacked. */
  u32(pa: bigint): number | null {
    const offset = this.offsetOf(pa, 4);
    return offset < 0 ? null : this.#view.getUint32(offset, true);
  }

  /** Little-endian u64 at `pa`, or null when unbacked. */
  u64(pa: bigint): bigint | null {
    const offset = this.offsetOf(pa, 8);
    return offset < 0 ? null : this.#view.getBigUint64(offset, true);
  }

  /** Little-endian u64 at `pa`; throws a GuestMemoryError naming `what` when unbacked. */
  mustU64(pa: bigint, what: string): bigint {
    const value = this.u64(pa);
    if (value === null) {
      throw new GuestMemoryError(
        `read ${what}`,
        pa,
        "physical address not in the image",
      );
    }
    return value;
  }
}
