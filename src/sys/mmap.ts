/**
 * Read-only file mappings (guest RAM images) owned by one object.
 *
 * @module
 */

import { BpfError } from "./errors.ts";
import { getLibc, lastErrno } from "./ffi.ts";
import { openReadOnly } from "./bpf.ts";

const PROT_READ = 1;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;

/**
 * A read-only shared mapping of a whole file. `bytes` is a view of the
 * mapping itself (no copy); it must not be used after `close()`, which
 * unmaps it.
 *
 * @example Map a guest RAM file
 * ```ts ignore
 * using ram = MappedFile.open("/dev/shm/guest-ram");
 * console.log(ram.bytes.byteLength);
 * ```
 */
export class MappedFile implements Disposable {
  #pointer: Deno.PointerObject | null;
  #length: number;
  #bytes: Uint8Array | null;
  /** The file that was mapped. */
  readonly path: string;

  private constructor(
    path: string,
    pointer: Deno.PointerObject,
    length: number,
  ) {
    this.path = path;
    this.#pointer = pointer;
    this.#length = length;
    this.#bytes = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, length),
    );
  }

  /**
   * Maps `path` read-only and shared, so later writes by a running VMM show through.
   *
   * @param path a regular file or memfd path of at least one byte
   */
  static open(path: string): MappedFile {
    const length = Deno.statSync(path).size;
    if (length === 0) {
      throw new RangeError(`Cannot map ${path}: the file is empty`);
    }
    using file = openReadOnly(path);
    const pointer = getLibc().mmap(
      0n,
      BigInt(length),
      PROT_READ,
      MAP_SHARED,
      file.fd,
      0n,
    );
    const address = pointer === null
      ? 0n
      : BigInt(Deno.UnsafePointer.value(pointer));
    if (pointer === null || address === MAP_FAILED) {
      throw new BpfError(-1, lastErrno(), { action: `mmap ${path}` });
    }
    return new MappedFile(path, pointer, length);
  }

  /** The mapped bytes; throws after close. */
  get bytes(): Uint8Array {
    if (this.#bytes === null) {
      throw new Error(`Mapping of ${this.path} used after close`);
    }
    return this.#bytes;
  }

  /** Unmaps the file; later calls do nothing. */
  close(): void {
    if (this.#pointer === null) return;
    getLibc().munmap(this.#pointer, BigInt(this.#length));
    this.#pointer = null;
    this.#bytes = null;
  }

  /** Unmaps the file. */
  [Symbol.dispose](): void {
    this.close();
  }
}

const PROT_WRITE = 2;

/**
 * A shared mapping of a BPF map (MMAPABLE array, arena, ringbuf) owned by one
 * object. Needs an fd opened read-write: the kernel refuses to map a
 * read-only map fd even for reading.
 */
export class MappedBpfMap implements Disposable {
  #pointer: Deno.PointerObject | null;
  #length: number;
  #bytes: Uint8Array | null;

  private constructor(pointer: Deno.PointerObject, length: number) {
    this.#pointer = pointer;
    this.#length = length;
    this.#bytes = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, length),
    );
  }

  /**
   * Maps `length` bytes of the map behind `fd`.
   *
   * @param fd a read-write map fd
   * @param length bytes to map (a multiple of the page size)
   * @param options `writable` for PROT_WRITE, `address` as a hint (arenas must be mapped where first mapped)
   */
  static map(
    fd: number,
    length: number,
    options: { writable?: boolean; address?: bigint } = {},
  ): MappedBpfMap {
    const pointer = getLibc().mmap(
      options.address ?? 0n,
      BigInt(length),
      PROT_READ | (options.writable ? PROT_WRITE : 0),
      MAP_SHARED,
      fd,
      0n,
    );
    const address = pointer === null
      ? 0n
      : BigInt(Deno.UnsafePointer.value(pointer));
    if (pointer === null || address === MAP_FAILED) {
      throw new BpfError(-1, lastErrno(), { action: `mmap of map fd ${fd}` });
    }
    return new MappedBpfMap(pointer, length);
  }

  /** The user-space address of the mapping. */
  get address(): bigint {
    if (this.#pointer === null) throw new Error("Mapping used after close");
    return BigInt(Deno.UnsafePointer.value(this.#pointer));
  }

  /** The mapped bytes; touching a page may fault it in (arenas allocate it). */
  get bytes(): Uint8Array {
    if (this.#bytes === null) throw new Error("Mapping used after close");
    return this.#bytes;
  }

  /** Unmaps; later calls do nothing. */
  close(): void {
    if (this.#pointer === null) return;
    getLibc().munmap(this.#pointer, BigInt(this.#length));
    this.#pointer = null;
    this.#bytes = null;
  }

  /** Unmaps. */
  [Symbol.dispose](): void {
    this.close();
  }
}
