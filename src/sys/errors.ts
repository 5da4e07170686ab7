/**
 * The error every failed bpf() call becomes.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";
import { commandName, Errno } from "./constants.ts";
import { errnoName, errnoText } from "./errno.ts";
import { getLibc } from "./ffi.ts";

/** How bpf() errnos read for a map: the generic header text would mislead here. */
const BPF_ERRNO_TEXT: Record<number, string> = {
  [Errno.ENOENT]: "no such entry",
  [Errno.ENOSPC]: "no space left in the buffer",
  [Errno.ENOSYS]: "bpf() not implemented by this kernel",
  [Errno.EEXIST]: "entry exists",
  [Errno.EOPNOTSUPP]: "operation not supported",
};

const CAP_SYS_ADMIN = 21n;

/** What this process may do, for advice on EPERM/EACCES; null parts are unknown. */
export interface Privileges {
  /** The effective uid, null when it cannot be read. */
  euid: number | null;
  /** Whether CAP_SYS_ADMIN is in the effective set, null when unknown. */
  sysAdmin: boolean | null;
}

/** The effective uid (geteuid) and CAP_SYS_ADMIN (`/proc/self/status` CapEff) of this process. */
export function currentPrivileges(): Privileges {
  let euid: number | null = null;
  try {
    euid = getLibc().geteuid();
  } catch {
    // Without --allow-ffi there was no bpf() call to fail either.
  }
  let sysAdmin: boolean | null = null;
  try {
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(
      Deno.readTextFileSync("/proc/self/status"),
    );
    if (capEff) {
      sysAdmin = ((BigInt(`0x${capEff[1]}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
    }
  } catch {
    // No /proc: say what the uid alone tells.
  }
  return { euid, sysAdmin };
}

/**
 * Advice for EPERM/EACCES that fits who is asking: "run with sudo" helps only
 * a caller that is not root already.
 */
export function permissionHint(
  privileges: Privileges = currentPrivileges(),
): string {
  const { euid, sysAdmin } = privileges;
  if (sysAdmin === true || (euid === 0 && sysAdmin === null)) {
    return "the process already has CAP_SYS_ADMIN, so the object itself refused: e.g. a frozen map or a read-only fd written to, a pin path outside bpffs, or a security module (lockdown, SELinux) denying bpf()";
  }
  if (euid === 0) {
    return "the process is root but lacks CAP_SYS_ADMIN (a container or user namespace?): grant CAP_SYS_ADMIN to it";
  }
  return "needs root or CAP_SYS_ADMIN (run with sudo)";
}

function defaultHint(errno: number): string | undefined {
  switch (errno) {
    case Errno.EPERM:
    case Errno.EACCES:
      return permissionHint();
    case Errno.ENOSYS:
      return "the kernel was built without CONFIG_BPF_SYSCALL";
    case Errno.EMFILE:
      return "this process has as many fds open as RLIMIT_NOFILE allows (ulimit -n): close some or raise the limit";
    case Errno.ENFILE:
      return "the system's file table is full (fs.file-max)";
    case Errno.ENAMETOOLONG:
      return "a path component is longer than 255 bytes or the path longer than 4095";
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

/** `ENAME (text)`; bpf() calls read some errnos in map terms. */
export function errnoPhrase(errno: number, bpf = false): string {
  const text = (bpf ? BPF_ERRNO_TEXT[errno] : undefined) ?? errnoText(errno);
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
    super(`${name} failed${action}: ${errnoPhrase(errno, command >= 0)}`, {
      hint: options.hint ?? defaultHint(errno),
      cause: options.cause,
    });
    this.command = command;
    this.commandName = name;
    this.errno = errno;
    this.code = errnoName(errno);
  }
}
