/**
 * Shared memory mappings owned by one object: guest RAM images and BPF maps
 * (MMAPABLE arrays, arenas).
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";
import { SyscallError } from "./errors.ts";
import { getLibc, lastErrno } from "./ffi.ts";
import { openReadOnly } from "./bpf.ts";

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;

/** mmap(2) with MAP_SHARED; throws a SyscallError naming `what` on failure. */
function mapShared(
  fd: number,
  length: number,
  protection: number,
  address: bigint,
  what: string,
  offset = 0,
): Deno.PointerObject {
  const pointer = getLibc().mmap(
    address,
    BigInt(length),
    protection,
    MAP_SHARED,
    fd,
    BigInt(offset),
  );
  const value = pointer === null
    ? 0n
    : BigInt(Deno.UnsafePointer.value(pointer));
  if (pointer === null || value === MAP_FAILED) {
    throw new SyscallError(`mmap of ${what}`, lastErrno());
  }
  return pointer;
}

function usedAfterClose(): BpfmapError {
  return new BpfmapError("Mapping used after close", {
    hint: "a bug in the caller: read the bytes before closing the mapping",
  });
}

/**
 * A mapping and the byte view over it. `bytes` is the mapped memory itself
 * (no copy); it must not be used after `close()`, which unmaps it.
 */
class Mapping implements Disposable {
  #pointer: Deno.PointerObject | null;
  readonly #length: number;
  #bytes: Uint8Array | null;

  constructor(pointer: Deno.PointerObject, length: number) {
    this.#pointer = pointer;
    this.#length = length;
    this.#bytes = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, length),
    );
  }

  /** The user-space address of the mapping. */
  get address(): bigint {
    if (this.#pointer === null) throw usedAfterClose();
    return BigInt(Deno.UnsafePointer.value(this.#pointer));
  }

  /** The mapped bytes; throws after close. */
  get bytes(): Uint8Array {
    if (this.#bytes === null) throw usedAfterClose();
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

/**
 * A read-only shared mapping of a whole file, so later writes by a running
 * VMM show through.
 *
 * @example Map a guest RAM file
 * ```ts
 * using ram = MappedFile.open("/dev/shm/guest-ram");
 * console.log(ram.bytes.byteLength);
 * ```
 */
export class MappedFile extends Mapping {
  /** The file that was mapped. */
  readonly path: string;

  private constructor(
    path: string,
    pointer: Deno.PointerObject,
    length: number,
  ) {
    super(pointer, length);
    this.path = path;
  }

  /**
   * Maps `path` read-only and shared.
   *
   * @param path a regular file or memfd path of at least one byte
   */
  static open(path: string): MappedFile {
    const length = Deno.statSync(path).size;
    if (length === 0) {
      throw new BpfmapError(`Cannot map ${path}: the file is empty`, {
        hint: "pass the guest's RAM file or core, not an empty file",
      });
    }
    using file = openReadOnly(path);
    return new MappedFile(
      path,
      mapShared(file.fd, length, PROT_READ, 0n, path),
      length,
    );
  }
}

/**
 * A shared mapping of a BPF map (MMAPABLE array, arena, ringbuf). Needs an
 * fd opened read-write: the kernel refuses to map a read-only map fd even for
 * reading. Touching an arena page may fault it in, which allocates it.
 */
export class MappedBpfMap extends Mapping {
  /**
   * Maps `length` bytes of the map behind `fd`.
   *
   * @param fd a read-write map fd
   * @param length bytes to map (a multiple of the page size)
   * @param options `writable` for PROT_WRITE, `address` as a hint (arenas
   *   must be mapped where first mapped), `offset` the byte offset into the
   *   map's memory (a page multiple: a ring buffer's pending pages alone)
   */
  static map(
    fd: number,
    length: number,
    options: { writable?: boolean; address?: bigint; offset?: number } = {},
  ): MappedBpfMap {
    const protection = PROT_READ | (options.writable ? PROT_WRITE : 0);
    const offset = options.offset ?? 0;
    return new MappedBpfMap(
      mapShared(
        fd,
        length,
        protection,
        options.address ?? 0n,
        offset === 0
          ? `map fd ${fd}`
          : `map fd ${fd} (${length} bytes at offset ${offset})`,
        offset,
      ),
      length,
    );
  }
}
