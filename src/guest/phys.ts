/**
 * Guest physical memory behind one interface, {@linkcode PhysicalMemory}:
 * guest physical addresses (GPA) map to offsets in a byte array the walkers
 * index directly (`bytes` + `offsetOf`), and anything larger than a page is
 * read through `read`/`readInto`.
 *
 * Two implementations: {@linkcode BytesMemory} (an image already in memory:
 * tests, small cores) and {@linkcode FileMemory} (a RAM file or core read with
 * pread into a bounded page cache). A file is never mapped: a mapped file that
 * shrinks under the reader kills it with SIGBUS, while a short pread is an
 * error the caller can report. Sources that cannot be mapped at all (a running
 * QEMU's `/proc/PID/mem`, `/proc/kcore`) fit the same read path.
 *
 * @module
 */

import { openReadOnly, openReadWrite, preadFd, pwriteFd } from "../sys/bpf.ts";
import type { OwnedFd } from "../sys/fd.ts";
import { type DataRun, dataRuns } from "../sys/holes.ts";
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

export { qemuX86Layout } from "./arch/x86_64.ts";

/**
 * Guest physical memory, whatever holds it. The fast path is `offsetOf` +
 * `bytes`: hot loops index `bytes` at the returned offset with no allocation.
 * An offset stays valid until a listener given to `onReset` is called (never,
 * for an image held whole in memory).
 */
export interface PhysicalMemory {
  /** Sorted by `gpa`, non-overlapping. */
  readonly regions: readonly PhysRegion[];
  /** One past the highest backed guest physical address. */
  readonly end: bigint;
  /** The array `offsetOf` indexes into (the whole image, or a page cache). */
  readonly bytes: Uint8Array;
  /** A DataView over `bytes`. */
  readonly view: DataView;
  /**
   * Offset in `bytes` of `[pa, pa+len)`, or -1 when some byte is not backed
   * or (for a page cache) the run crosses a 4 KiB page.
   */
  offsetOf(pa: bigint, len: number): number;
  /** Whether every byte of `[pa, pa+len)` is backed (does not read). */
  has(pa: bigint, len?: number): boolean;
  /**
   * `len` bytes at `pa` (stitched across regions), or null when some byte is
   * not backed. The result may be a view of `bytes`: use it before the next read.
   */
  read(pa: bigint, len: number): Uint8Array | null;
  /** Fills `out` from `pa`; false when some byte is not backed. Never caches. */
  readInto(pa: bigint, out: Uint8Array): boolean;
  /** u8 at `pa`, or null when unbacked. */
  u8(pa: bigint): number | null;
  /** Little-endian u32 at `pa`, or null when unbacked. */
  u32(pa: bigint): number | null;
  /** Little-endian u64 at `pa`, or null when unbacked. */
  u64(pa: bigint): bigint | null;
  /** Calls `listener` whenever offsets handed out before become invalid. */
  onReset(listener: () => void): void;
  /**
   * The parts of `region` that may hold anything but zeros, as GPA runs
   * `[start, end)` in order (the whole region unless the source knows its
   * holes, as a sparse file does).
   */
  dataRuns(region: PhysRegion): { start: bigint; end: bigint }[];
  /**
   * Writes `bytes` at `pa` (stitched across regions) so that the image and
   * later reads hold them. Absent on memory that can never be written; throws
   * a GuestMemoryError when some byte is not backed (nothing is written then)
   * or the source was opened read-only.
   */
  write?(pa: bigint, bytes: Uint8Array): void;
}

/** A write outside the backed memory: refused before any byte is written. */
function unbackedWrite(pa: bigint, len: number): GuestMemoryError {
  return new GuestMemoryError(
    `write ${len} bytes of guest memory`,
    pa,
    "some byte is not backed by the image",
  );
}

function sortRegions(
  regions: readonly PhysRegion[],
  fileSize: number,
  what: string,
): PhysRegion[] {
  const sorted = [...regions].sort((a, b) =>
    a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0
  );
  for (const region of sorted) {
    if (
      region.size < 0n || region.fileOffset < 0 ||
      BigInt(region.fileOffset) + region.size > BigInt(fileSize)
    ) {
      throw new GuestMemoryError(
        `use the region at GPA ${hex(region.gpa)} (+${region.size})`,
        region.gpa,
        `it does not fit ${what} of ${fileSize} bytes`,
      );
    }
  }
  return sorted;
}

function regionOf(
  regions: readonly PhysRegion[],
  pa: bigint,
): PhysRegion | undefined {
  for (const region of regions) {
    if (pa >= region.gpa && pa < region.gpa + region.size) return region;
  }
  return undefined;
}

/** Whether regions cover every byte of `[pa, pa+len)`. */
function covered(
  regions: readonly PhysRegion[],
  pa: bigint,
  len: number,
): boolean {
  let at = pa;
  const end = pa + BigInt(len);
  while (at < end) {
    const region = regionOf(regions, at);
    if (!region) return false;
    at = region.gpa + region.size;
  }
  return true;
}

/** Copies `[pa, pa+out.length)` run by run; `chunk` reads one run inside a region. */
function stitch(
  regions: readonly PhysRegion[],
  pa: bigint,
  out: Uint8Array,
  chunk: (fileOffset: number, into: Uint8Array) => void,
): boolean {
  let done = 0;
  while (done < out.length) {
    const at = pa + BigInt(done);
    const region = regionOf(regions, at);
    if (!region) return false;
    const n = Math.min(
      out.length - done,
      Number(region.gpa + region.size - at),
    );
    chunk(
      region.fileOffset + Number(at - region.gpa),
      out.subarray(done, done + n),
    );
    done += n;
  }
  return true;
}

/**
 * Guest memory held whole in a byte array (a test image, a core read into
 * memory). Reads are views; offsets never go stale.
 *
 * @example
 * ```ts
 * import { BytesMemory } from "./phys.ts";
 * const mem = new BytesMemory(new Uint8Array(8192), [
 *   { gpa: 0x1000n, size: 8192n, fileOffset: 0 },
 * ]);
 * console.log(mem.u64(0x1000n)); // 0n
 * ```
 */
export class BytesMemory implements PhysicalMemory {
  /** The image bytes. */
  readonly bytes: Uint8Array;
  /** A DataView over `bytes`. */
  readonly view: DataView;
  /** Sorted by `gpa`. */
  readonly regions: readonly PhysRegion[];
  #last: PhysRegion | undefined;

  /**
   * @param bytes the whole image
   * @param regions where each GPA run lives in `bytes`; each must fit inside it
   */
  constructor(bytes: Uint8Array, regions: readonly PhysRegion[]) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.regions = sortRegions(regions, bytes.byteLength, "the image");
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
    return this.offsetOf(pa, len) >= 0 || covered(this.regions, pa, len);
  }

  /** A view when inside one region, else a stitched copy; null if any byte is missing. */
  read(pa: bigint, len: number): Uint8Array | null {
    const offset = this.offsetOf(pa, len);
    if (offset >= 0) return this.bytes.subarray(offset, offset + len);
    const out = new Uint8Array(len);
    return this.readInto(pa, out) ? out : null;
  }

  /** Copies `[pa, pa+out.length)` into `out`; false if any byte is missing. */
  readInto(pa: bigint, out: Uint8Array): boolean {
    return stitch(this.regions, pa, out, (fileOffset, into) => {
      into.set(this.bytes.subarray(fileOffset, fileOffset + into.length));
    });
  }

  /** u8 at `pa`, or null when unbacked. */
  u8(pa: bigint): number | null {
    const offset = this.offsetOf(pa, 1);
    return offset < 0 ? null : this.bytes[offset]!;
  }

  /** Little-endian u32 at `pa`, or null when unbacked. */
  u32(pa: bigint): number | null {
    const offset = this.offsetOf(pa, 4);
    return offset < 0 ? null : this.view.getUint32(offset, true);
  }

  /** Little-endian u64 at `pa`, or null when unbacked. */
  u64(pa: bigint): bigint | null {
    const offset = this.offsetOf(pa, 8);
    return offset < 0 ? null : this.view.getBigUint64(offset, true);
  }

  /** Offsets into an in-memory image never go stale: the listener is never called. */
  onReset(_listener: () => void): void {}

  /** The whole region: an array has no holes to skip. */
  dataRuns(region: PhysRegion): { start: bigint; end: bigint }[] {
    return [{ start: region.gpa, end: region.gpa + region.size }];
  }

  /** Copies `bytes` into the image at `pa`; nothing is written unless every byte is backed. */
  write(pa: bigint, bytes: Uint8Array): void {
    if (!covered(this.regions, pa, bytes.length)) {
      throw unbackedWrite(pa, bytes.length);
    }
    let done = 0;
    stitch(this.regions, pa, new Uint8Array(bytes.length), (offset, into) => {
      this.bytes.set(bytes.subarray(done, done + into.length), offset);
      done += into.length;
    });
  }
}

/** Options for {@linkcode FileMemory.open}. */
export interface FileMemoryOptions {
  /** Bytes of page cache (4 KiB pages); default 256 MiB, allocated as used. */
  cacheBytes?: number;
  /**
   * Open the file read-write so `write` works (a RAM file of a frozen guest).
   * Default false: reading never needs write access.
   */
  writable?: boolean;
  /**
   * Where data may lie in `[start, end)` of the file, for a source lseek
   * cannot tell (a process's memory: its page map can). Default: SEEK_DATA.
   */
  dataRuns?: (start: number, end: number) => DataRun[];
  /** Why a read came up short, for a source that is not a plain file (default: it shrank). */
  shortRead?: () => string;
  /**
   * Maps a region's offset to the file offset read: `/proc/kcore` under
   * 5-level paging puts RAM past 2^53, beyond what a number offset can say.
   */
  fileOffsetOf?: (offset: number) => bigint;
}

const PAGE = 4096;

/**
 * Guest memory read from a file with pread into a bounded cache of 4 KiB
 * pages: nothing is mapped, so a file truncated while in use makes a read
 * fail with an error naming the offset instead of killing the process
 * (SIGBUS). The cache is one array; when it fills, it starts over and tells
 * `onReset` listeners that earlier offsets are stale. Owns its fd: dispose it.
 *
 * @example
 * ```ts
 * import { FileMemory } from "./phys.ts";
 * using ram = FileMemory.open("/dev/shm/guest-ram", 1 << 30, [{ gpa: 0n, size: 1n << 30n, fileOffset: 0 }]);
 * console.log(ram.u64(0x1000n));
 * ```
 */
export class FileMemory implements PhysicalMemory, Disposable {
  /** The file read. */
  readonly path: string;
  /** Its size when opened. */
  readonly size: number;
  /** Sorted by `gpa`. */
  readonly regions: readonly PhysRegion[];
  /** The page cache `offsetOf` indexes into. */
  readonly bytes: Uint8Array;
  /** A DataView over `bytes`. */
  readonly view: DataView;
  #fd: OwnedFd | null;
  // page number (pa >> 12) -> slot in the cache
  readonly #slots = new Map<number, number>();
  readonly #listeners: (() => void)[] = [];
  readonly #scratch = new Uint8Array(8);
  readonly #scratchView = new DataView(this.#scratch.buffer);
  #used = 0;
  readonly #writable: boolean;
  readonly #options: FileMemoryOptions;

  private constructor(
    path: string,
    fd: OwnedFd,
    size: number,
    regions: readonly PhysRegion[],
    options: FileMemoryOptions,
  ) {
    const cacheBytes = options.cacheBytes ?? 256 << 20;
    this.#options = options;
    this.path = path;
    this.#fd = fd;
    this.#writable = options.writable === true;
    this.size = size;
    this.regions = sortRegions(regions, size, `${path}`);
    const pages = Math.max(16, Math.floor(cacheBytes / PAGE));
    this.bytes = new Uint8Array(pages * PAGE);
    this.view = new DataView(this.bytes.buffer);
  }

  /**
   * Opens `path` for reading. `regions` say where guest memory lies in it.
   *
   * @param path a regular file (checked by the caller)
   * @param size the file's size in bytes
   * @param regions GPA runs; each must fit in `size`
   */
  static open(
    path: string,
    size: number,
    regions: readonly PhysRegion[],
    options: FileMemoryOptions = {},
  ): FileMemory {
    const writable = options.writable === true;
    const fd = writable ? openReadWrite(path) : openReadOnly(path);
    try {
      return new FileMemory(path, fd, size, regions, options);
    } catch (error) {
      fd.close();
      throw error;
    }
  }

  /** One past the highest backed guest physical address. */
  get end(): bigint {
    const last = this.regions[this.regions.length - 1];
    return last ? last.gpa + last.size : 0n;
  }

  /** Reads `into.length` bytes at file `offset`; a short read is the file shrinking. */
  #pread(offset: number, into: Uint8Array): void {
    if (this.#fd === null) {
      throw new GuestMemoryError(
        `read ${this.path}`,
        BigInt(offset),
        "the file was closed",
      );
    }
    let done = 0;
    while (done < into.length) {
      const n = preadFd(
        this.#fd.fd,
        into.subarray(done),
        this.#options.fileOffsetOf?.(offset + done) ?? BigInt(offset + done),
      );
      if (n < 0) {
        throw new GuestMemoryError(
          `read ${into.length} bytes of ${this.path} (file offset)`,
          BigInt(offset),
          `pread failed with errno ${-n}`,
        );
      }
      if (n === 0 && this.#options.shortRead) {
        throw new GuestMemoryError(
          `read ${into.length} bytes of ${this.path} (file offset)`,
          BigInt(offset),
          this.#options.shortRead(),
        );
      }
      if (n === 0) {
        let now = "shorter";
        try {
          now = `${Deno.statSync(this.path).size} bytes`;
        } catch {
          now = "gone";
        }
        throw new GuestMemoryError(
          `read ${into.length} bytes of ${this.path} (file offset)`,
          BigInt(offset),
          `the file is now ${now} but was ${this.size} when opened (truncated while in use?)`,
        );
      }
      done += n;
    }
  }

  /** Page-cache offset of `[pa, pa+len)` when it lies in one 4 KiB page of one region, else -1. */
  offsetOf(pa: bigint, len: number): number {
    const inPage = Number(pa & 0xfffn);
    if (len < 0 || inPage + len > PAGE) return -1;
    const page = Number(pa >> 12n);
    const slot = this.#slots.get(page);
    if (slot !== undefined) return slot * PAGE + inPage;
    return this.#load(pa - BigInt(inPage), page, inPage);
  }

  #load(pagePa: bigint, page: number, inPage: number): number {
    const region = regionOf(this.regions, pagePa);
    if (!region || pagePa + BigInt(PAGE) > region.gpa + region.size) return -1;
    if (this.#used * PAGE >= this.bytes.length) {
      this.#used = 0;
      this.#slots.clear();
      for (const listener of this.#listeners) listener();
    }
    const slot = this.#used;
    this.#pread(
      region.fileOffset + Number(pagePa - region.gpa),
      this.bytes.subarray(slot * PAGE, slot * PAGE + PAGE),
    );
    this.#used++;
    this.#slots.set(page, slot);
    return slot * PAGE + inPage;
  }

  /** Whether every byte of `[pa, pa+len)` is in some region. */
  has(pa: bigint, len = 1): boolean {
    return covered(this.regions, pa, len);
  }

  /** A cached view when inside one page, else a fresh copy; null if any byte is missing. */
  read(pa: bigint, len: number): Uint8Array | null {
    const offset = this.offsetOf(pa, len);
    if (offset >= 0) return this.bytes.subarray(offset, offset + len);
    const out = new Uint8Array(len);
    return this.readInto(pa, out) ? out : null;
  }

  /** Reads straight from the file into `out` (no caching); false if any byte is missing. */
  readInto(pa: bigint, out: Uint8Array): boolean {
    if (!this.has(pa, out.length)) return false;
    return stitch(
      this.regions,
      pa,
      out,
      (fileOffset, into) => this.#pread(fileOffset, into),
    );
  }

  /** A value that straddles pages: read into scratch. */
  #small(pa: bigint, len: number): DataView | null {
    const scratch = this.#scratch.subarray(0, len);
    return this.readInto(pa, scratch) ? this.#scratchView : null;
  }

  /** u8 at `pa`, or null when unbacked. */
  u8(pa: bigint): number | null {
    const offset = this.offsetOf(pa, 1);
    if (offset >= 0) return this.bytes[offset]!;
    return this.#small(pa, 1)?.getUint8(0) ?? null;
  }

  /** Little-endian u32 at `pa`, or null when unbacked. */
  u32(pa: bigint): number | null {
    const offset = this.offsetOf(pa, 4);
    if (offset >= 0) return this.view.getUint32(offset, true);
    return this.#small(pa, 4)?.getUint32(0, true) ?? null;
  }

  /** Little-endian u64 at `pa`, or null when unbacked. */
  u64(pa: bigint): bigint | null {
    const offset = this.offsetOf(pa, 8);
    if (offset >= 0) return this.view.getBigUint64(offset, true);
    return this.#small(pa, 8)?.getBigUint64(0, true) ?? null;
  }

  /** `listener` runs when the cache starts over (offsets handed out are stale). */
  onReset(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /** The region's runs that hold data in the file (holes of a sparse file skipped). */
  dataRuns(region: PhysRegion): { start: bigint; end: bigint }[] {
    if (this.#fd === null) return [];
    const start = region.fileOffset;
    const end = start + Number(region.size);
    const runs = this.#options.dataRuns?.(start, end) ??
      dataRuns(this.#fd.fd, start, end);
    return runs.map((
      run,
    ) => ({
      start: region.gpa + BigInt(run.start - start),
      end: region.gpa + BigInt(run.end - start),
    }));
  }

  /**
   * pwrites `bytes` at `pa` and updates any cached copy of the pages touched,
   * so reads through this object see the write. Nothing is written unless
   * every byte is backed. The file must have been opened `writable`.
   */
  write(pa: bigint, bytes: Uint8Array): void {
    if (this.#fd === null || !this.#writable) {
      throw new GuestMemoryError(
        `write ${bytes.length} bytes of ${this.path}`,
        pa,
        this.#fd === null ? "the file was closed" : "it was opened read-only",
      );
    }
    if (!this.has(pa, bytes.length)) throw unbackedWrite(pa, bytes.length);
    const fd = this.#fd.fd;
    let done = 0;
    stitch(this.regions, pa, new Uint8Array(bytes.length), (offset, into) => {
      const chunk = bytes.subarray(done, done + into.length);
      for (let written = 0; written < chunk.length;) {
        const n = pwriteFd(
          fd,
          chunk.subarray(written),
          this.#options.fileOffsetOf?.(offset + written) ??
            BigInt(offset + written),
        );
        if (n <= 0) {
          throw new GuestMemoryError(
            `write ${chunk.length} bytes of ${this.path} (file offset)`,
            BigInt(offset + written),
            n < 0 ? `pwrite failed with errno ${-n}` : "pwrite wrote nothing",
          );
        }
        written += n;
      }
      done += into.length;
    });
    for (let i = 0; i < bytes.length;) {
      const at = pa + BigInt(i);
      const inPage = Number(at & 0xfffn);
      const n = Math.min(bytes.length - i, PAGE - inPage);
      const slot = this.#slots.get(Number(at >> 12n));
      if (slot !== undefined) {
        this.bytes.set(bytes.subarray(i, i + n), slot * PAGE + inPage);
      }
      i += n;
    }
  }

  /** Closes the file; later reads throw. */
  close(): void {
    this.#fd?.close();
    this.#fd = null;
    this.#slots.clear();
  }

  /** Closes the file. */
  [Symbol.dispose](): void {
    this.close();
  }
}
