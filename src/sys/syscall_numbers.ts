/**
 * System call numbers bpfmap issues through `syscall(2)`, per architecture.
 *
 * x86-64 has its own table (`arch/x86/entry/syscalls/syscall_64.tbl`); arm64
 * uses the generic numbers of `include/uapi/asm-generic/unistd.h`. The pidfd
 * calls came after the tables were unified, so they share one number
 * everywhere; bpf() does not.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";

/** The numbers of the calls bpfmap makes without a libc wrapper. */
export interface SyscallNumbers {
  /** `bpf(int cmd, union bpf_attr *attr, unsigned int size)`. */
  bpf: bigint;
  /** `pidfd_open(pid_t pid, unsigned int flags)`. */
  pidfdOpen: bigint;
  /** `pidfd_getfd(int pidfd, int targetfd, unsigned int flags)`. */
  pidfdGetfd: bigint;
}

/** Per `Deno.build.arch`: the architectures Deno ships for on Linux. */
export const SYSCALL_NUMBERS: Readonly<Record<string, SyscallNumbers>> = {
  "x86_64": { bpf: 321n, pidfdOpen: 434n, pidfdGetfd: 438n },
  aarch64: { bpf: 280n, pidfdOpen: 434n, pidfdGetfd: 438n },
};

/**
 * The syscall numbers of `arch` (default: this process's architecture).
 *
 * @throws {BpfmapError} on an architecture bpfmap has no table for, rather
 * than calling whatever another table's number means there
 */
export function syscallNumbers(
  arch: string = Deno.build.arch,
): SyscallNumbers {
  const numbers = SYSCALL_NUMBERS[arch];
  if (numbers === undefined) {
    throw new BpfmapError(
      `bpfmap has no system call numbers for architecture "${arch}" (it knows ${
        Object.keys(SYSCALL_NUMBERS).join(", ")
      })`,
      {
        hint:
          "add the numbers of bpf, pidfd_open and pidfd_getfd from the kernel's syscall table to src/sys/syscall_numbers.ts",
      },
    );
  }
  return numbers;
}
