/**
 * The error every failed bpf() call becomes.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";
import { commandName, Errno, errnoName } from "./constants.ts";

const ERRNO_TEXT: Record<number, string> = {
  [Errno.ENOTSUPP]: "operation not supported for this map type",
  [Errno.EOPNOTSUPP]: "operation not supported",
  [Errno.EPERM]: "operation not permitted",
  [Errno.EACCES]: "permission denied",
  [Errno.ENOENT]: "no such entry",
  [Errno.EINVAL]: "invalid argument",
  [Errno.E2BIG]: "argument too big",
  [Errno.ENOSPC]: "no space left in the buffer",
  [Errno.EBADF]: "bad file descriptor",
  [Errno.ENOMEM]: "out of memory",
  [Errno.EEXIST]: "entry exists",
  [Errno.EFAULT]: "bad address",
  [Errno.ENOSYS]: "bpf() not implemented by this kernel",
  [Errno.ESRCH]: "no such process",
  [Errno.EBUSY]: "device or resource busy",
};

function defaultHint(errno: number): string | undefined {
  switch (errno) {
    case Errno.EPERM:
    case Errno.EACCES:
      return "needs root or CAP_SYS_ADMIN (run with sudo)";
    case Errno.ENOSYS:
      return "the kernel was built without CONFIG_BPF_SYSCALL";
    default:
      return undefined;
  }
}

/** Options for {@linkcode SyscallError} and {@linkcode BpfError}. */
export interface BpfErrorOptions {
  /** What bpfmap was doing, e.g. `look up key 0x01 in map 12`. */
  action?: string;
  /** Advice for the reader; a default is chosen for EPERM and ENOSYS. */
  hint?: string;
  /** The lower-level error this one wraps. */
  cause?: unknown;
}

function errnoPhrase(errno: number): string {
  const text = ERRNO_TEXT[errno] ?? "";
  return `${errnoName(errno)}${text ? ` (${text})` : ""}`;
}

/**
 * A failed system call other than bpf() (`pidfd_open`, `mmap`, `open`, ...):
 * the call, errno number and name.
 *
 * @example
 * ```ts
 * import { SyscallError } from "./errors.ts";
 * const error = new SyscallError("pidfd_open(1)", 3);
 * console.log(error.code, error.message); // ESRCH ...
 * ```
 */
export class SyscallError extends BpfmapError {
  /** The errno number. */
  readonly errno: number;
  /** The errno name, e.g. `ENOENT`; `errno N` when unknown. */
  readonly code: string;

  /**
   * Builds the one-line message.
   *
   * @param call the call and its argument, e.g. `open /sys/fs/bpf/x`
   * @param errno the errno it returned
   * @param options advice and cause
   */
  constructor(
    call: string,
    errno: number,
    options: Omit<BpfErrorOptions, "action"> = {},
  ) {
    super(`${call} failed: ${errnoPhrase(errno)}`, {
      hint: options.hint ?? defaultHint(errno),
      cause: options.cause,
    });
    this.errno = errno;
    this.code = errnoName(errno);
  }
}

/**
 * A failed bpf() system call: carries the command, errno number and name.
 *
 * @example Catch a missing key
 * ```ts
 * import { BpfError } from "./errors.ts";
 * try {
 *   throw new BpfError(1, 2, { action: "look up key 0x01 in map 12" });
 * } catch (error) {
 *   if (error instanceof BpfError && error.code === "ENOENT") console.log("absent");
 * }
 * ```
 */
export class BpfError extends BpfmapError {
  /** The bpf() command number, or -1 for a non-bpf() call. */
  readonly command: number;
  /** The kernel's name for the call, e.g. `BPF_MAP_LOOKUP_ELEM`. */
  readonly commandName: string;
  /** The errno number. */
  readonly errno: number;
  /** The errno name, e.g. `ENOENT`; `errno N` when unknown. */
  readonly code: string;

  /**
   * Builds the error; the message reads `BPF_X failed (action): ENAME (text); hint`.
   *
   * @param command the bpf() command number, or -1 with `options.action` naming the call
   * @param errno the errno the call returned
   * @param options what was being done, advice and cause
   */
  constructor(command: number, errno: number, options: BpfErrorOptions = {}) {
    const name = command >= 0
      ? commandName(command)
      : (options.action ?? "system call");
    const action = command >= 0 && options.action ? ` (${options.action})` : "";
    super(`${name} failed${action}: ${errnoPhrase(errno)}`, {
      hint: options.hint ?? defaultHint(errno),
      cause: options.cause,
    });
    this.command = command;
    this.commandName = name;
    this.errno = errno;
    this.code = errnoName(errno);
  }
}
