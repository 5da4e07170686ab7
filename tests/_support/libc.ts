/**
 * The few libc calls tests need beyond bpfmap's own: sockets for sockmap
 * slots (and their cookies), and mmap at an offset to play a ring
 * buffer's producer or consumer.
 *
 * @module
 */

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  close: { parameters: ["i32"], result: "i32" },
  mmap: {
    parameters: ["u64", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
}).symbols;

/**
 * A bound UDP socket, closed on dispose: on 127.0.0.1, or with `anyAddress`
 * on 0.0.0.0 (a test guest whose `lo` is down has no 127.0.0.1 to bind).
 */
export class UdpSocket implements Disposable {
  readonly fd: number;

  constructor(reuseport = false, anyAddress = false) {
    this.fd = libc.socket(2, 2 | 0o2000000, 0);
    if (this.fd < 0) throw new Error("socket() failed");
    if (reuseport) {
      const one = new Uint8Array([1, 0, 0, 0]);
      if (libc.setsockopt(this.fd, 1, 15, one, 4) < 0) {
        throw new Error("setsockopt(SO_REUSEPORT) failed");
      }
    }
    const address = new Uint8Array(16);
    address.set(
      anyAddress ? [2, 0, 0, 0, 0, 0, 0, 0] : [2, 0, 0, 0, 127, 0, 0, 1],
    );
    if (libc.bind(this.fd, address, 16) < 0) throw new Error("bind() failed");
  }

  /** SO_COOKIE: the id the kernel shows for this socket in a sockmap. */
  cookie(): bigint {
    const value = new Uint8Array(8);
    const length = new Uint8Array([8, 0, 0, 0]);
    if (libc.getsockopt(this.fd, 1, 57, value, length) < 0) {
      throw new Error("getsockopt(SO_COOKIE) failed");
    }
    return new DataView(value.buffer).getBigUint64(0, true);
  }

  [Symbol.dispose](): void {
    libc.close(this.fd);
  }
}

/** A MAP_SHARED mapping at `offset` of `fd`, unmapped on dispose. */
export class SharedMapping implements Disposable {
  readonly bytes: Uint8Array;
  readonly #pointer: Deno.PointerObject;
  readonly #length: number;

  constructor(fd: number, length: number, offset: number, writable: boolean) {
    const pointer = libc.mmap(
      0n,
      BigInt(length),
      writable ? 3 : 1,
      1,
      fd,
      BigInt(offset),
    );
    if (
      pointer === null ||
      BigInt(Deno.UnsafePointer.value(pointer)) === 0xffffffffffffffffn
    ) {
      throw new Error(`mmap(fd ${fd}, ${length} bytes at ${offset}) failed`);
    }
    this.#pointer = pointer;
    this.#length = length;
    this.bytes = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, length),
    );
  }

  [Symbol.dispose](): void {
    libc.munmap(this.#pointer, BigInt(this.#length));
  }
}
