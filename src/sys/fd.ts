/**
 * An owned file descriptor.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";
import { SyscallError } from "./errors.ts";
import { getLibc, lastErrno } from "./ffi.ts";

const backstop = new FinalizationRegistry<number>((fd) => {
  // A leaked OwnedFd is still closed when collected, so long test runs do not
  // run out of descriptors; `using` or close() is the intended path.
  getLibc().close(fd);
});

/**
 * A file descriptor owned by exactly one object: closed once by `close()` or
 * `Symbol.dispose`, never handed out as 0 (the bpf ABI reads 0 as "none").
 *
 * @example Hold an fd for a scope
 * ```ts
 * import { openBpfMapFdByName } from "@bpfmap/bpfmap";
 * using fd = openBpfMapFdByName("counts");
 * console.log(fd.fd);
 * ```
 */
export class OwnedFd implements Disposable {
  #fd: number;

  /**
   * Takes ownership of `fd`.
   *
   * @param fd a descriptor this object alone will close
   */
  constructor(fd: number) {
    if (!Number.isInteger(fd) || fd < 0) {
      throw new BpfmapError(
        `Cannot own file descriptor ${fd}: it is not a descriptor number`,
        { hint: "pass the non-negative integer a system call returned" },
      );
    }
    if (fd === 0) {
      // fd 0 means "no fd" in bpf_attr; move it elsewhere and free 0.
      const libc = getLibc();
      const moved = libc.dup(0);
      libc.close(0);
      if (moved < 0) {
        throw new SyscallError(
          "dup(0) to move fd 0 out of the way",
          lastErrno(),
        );
      }
      fd = moved;
    }
    this.#fd = fd;
    backstop.register(this, fd, this);
  }

  /** The descriptor number; throws after close. */
  get fd(): number {
    if (this.#fd < 0) {
      throw new BpfmapError("File descriptor used after close", {
        hint:
          "a bug in the caller: keep the OwnedFd open while its number is used",
      });
    }
    return this.#fd;
  }

  /** Whether `close()` has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the descriptor; later calls do nothing. */
  close(): void {
    if (this.#fd < 0) return;
    backstop.unregister(this);
    getLibc().close(this.#fd);
    this.#fd = -1;
  }

  /** Gives up ownership and returns the raw number; the caller must close it. */
  disown(): number {
    const fd = this.fd;
    backstop.unregister(this);
    this.#fd = -1;
    return fd;
  }

  /** Closes the descriptor. */
  [Symbol.dispose](): void {
    this.close();
  }
}
