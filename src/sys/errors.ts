/**
 * The error every failed bpf() call becomes.
 *
 * @module
 */

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

/** Options for {@linkcode BpfError}. */
export interface BpfErrorOptions {
  /** What bpfmap was doing, e.g. `look up key 0x01 in map 12`. */
  action?: string;
  /** Advice for the reader; a default is chosen for EPERM and ENOSYS. */
  hint?: string;
}

/**
 * A failed bpf() (or related) system call: carries the command, errno number and name.
 *
 * @example Catch a missing key
 * ```ts ignore
 * import { BpfError } from "@bpfmap/bpfmap";
 * try {
 *   // ...
 * } catch (error) {
 *   if (error instanceof BpfError && error.code === "ENOENT") console.log("absent");
 * }
 * ```
 */
export class BpfError extends Error {
  /** The bpf() command number, or -1 for a non-bpf() call. */
  readonly command: number;
  /** The kernel's name for the call, e.g. `BPF_MAP_LOOKUP_ELEM`. */
  readonly commandName: string;
  /** The errno number. */
  readonly errno: number;
  /** The errno name, e.g. `ENOENT`; `errno N` when unknown. */
  readonly code: string;
  /** Advice, when there is some. */
  readonly hint: string | undefined;

  /**
   * Builds the error; the message reads `BPF_X failed (action): ENAME (text); hint`.
   *
   * @param command the bpf() command number, or -1 with `options.action` naming the call
   * @param errno the errno the call returned
   * @param options what was being done and advice
   */
  constructor(command: number, errno: number, options: BpfErrorOptions = {}) {
    const name = command >= 0
      ? commandName(command)
      : (options.action ?? "system call");
    const code = errnoName(errno);
    const text = ERRNO_TEXT[errno] ?? "";
    const hint = options.hint ?? defaultHint(errno);
    const action = command >= 0 && options.action ? ` (${options.action})` : "";
    super(
      `${name} failed${action}: ${code}${text ? ` (${text})` : ""}${
        hint ? `; ${hint}` : ""
      }`,
    );
    this.name = "BpfError";
    this.command = command;
    this.commandName = name;
    this.errno = errno;
    this.code = code;
    this.hint = hint;
  }
}
