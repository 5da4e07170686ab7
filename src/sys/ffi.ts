/**
 * The one FFI symbol table of bpfmap: libc, opened once on first use.
 *
 * Nothing outside `src/sys/` imports this module; everything that touches a
 * pointer lives in this folder.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";

const LIBC_CANDIDATES = ["libc.so.6", "libc.so"] as const;

const symbols = {
  /** long syscall(long nr, long a, void *b, unsigned long c) — bpf(cmd, attr, size) */
  syscall: { parameters: ["i64", "i64", "buffer", "u64"], result: "i64" },
  /** long syscall(long nr, long a, long b) — pidfd_open(pid, flags), pidfd_getfd */
  syscall3: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64"],
    result: "i64",
  },
  /** int *__errno_location(void) */
  __errno_location: { parameters: [], result: "pointer" },
  /** int close(int fd) */
  close: { parameters: ["i32"], result: "i32" },
  /** void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) */
  mmap: {
    parameters: ["u64", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  /** int munmap(void *addr, size_t len) */
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  /** int dup(int fd) */
  dup: { parameters: ["i32"], result: "i32" },
  /** int open(const char *path, int flags, mode_t mode) */
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  /** ssize_t pread(int fd, void *buf, size_t count, off_t offset) */
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "i64" },
  /** ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) — writes into a frozen guest's RAM file */
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "i64" },
  /** uid_t geteuid(void) */
  geteuid: { parameters: [], result: "u32" },
  /** off_t lseek(int fd, off_t offset, int whence) — SEEK_DATA/SEEK_HOLE for sparse guest RAM files */
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  /** char *strerror(int errnum) */
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libc symbols. */
export type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let libc: Libc | undefined;

/**
 * Returns libc's symbols, opening the library on the first call.
 *
 * @throws {BpfmapError} when no libc can be opened (e.g. `--allow-ffi` missing or a musl system).
 */
export function getLibc(): Libc {
  if (libc !== undefined) return libc;
  const failures: string[] = [];
  for (const path of LIBC_CANDIDATES) {
    try {
      libc = Deno.dlopen(path, symbols).symbols;
      return libc;
    } catch (error) {
      failures.push(
        `${path}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  throw new BpfmapError(
    `Cannot open the C library for the bpf() syscall: ${failures.join("; ")}`,
    { hint: "run with --allow-ffi on a glibc system" },
  );
}

/** Reads the calling thread's errno right after a failed libc call. */
export function lastErrno(): number {
  const pointer = getLibc().__errno_location();
  if (pointer === null) return 0;
  return new Deno.UnsafePointerView(pointer).getInt32(0);
}

/** libc's text for an errno value. */
export function strerror(errno: number): string {
  const pointer = getLibc().strerror(errno);
  if (pointer === null) return `errno ${errno}`;
  return Deno.UnsafePointerView.getCString(pointer);
}

/** The address of a buffer, for storing in a `bpf_attr` u64 field; 0 for an empty one. */
export function addressOf(buffer: Uint8Array): bigint {
  if (buffer.byteLength === 0) return 0n;
  const pointer = Deno.UnsafePointer.of(buffer as Uint8Array<ArrayBuffer>);
  return pointer === null ? 0n : BigInt(Deno.UnsafePointer.value(pointer));
}

/** A view of `length` bytes of native memory at `address` (no copy). */
export function viewNative(address: bigint, length: number): Uint8Array {
  const pointer = Deno.UnsafePointer.create(address);
  if (pointer === null) {
    throw new BpfmapError("Cannot view native memory at address 0", {
      hint: "a bug in the caller: pass the address of a live mapping",
    });
  }
  return new Uint8Array(
    Deno.UnsafePointerView.getArrayBuffer(pointer, length),
  );
}
