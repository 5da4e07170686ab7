/**
 * Errors raised while reading a guest's memory. Each one names the address
 * (and, when known, the symbol or structure) that could not be read.
 *
 * @module
 */

import { BpfmapError, type BpfmapErrorOptions } from "../errors.ts";

/** Formats an address as `0x` plus 16 hex digits. */
export function hex(address: bigint): string {
  return "0x" + BigInt.asUintN(64, address).toString(16).padStart(16, "0");
}

/**
 * A guest address that is not backed by the image, not mapped by the guest's
 * page tables, or whose contents make no sense (a corrupt or foreign image).
 *
 * @example
 * ```ts
 * import { GuestMemoryError } from "./errors.ts";
 * const error = new GuestMemoryError("read u64 of map_idr", 0xffffffff81000000n, "not mapped");
 * console.log(error.message);
 * ```
 */
export class GuestMemoryError extends BpfmapError {
  /** The guest address (virtual or physical, see `message`). */
  readonly address: bigint;

  /**
   * Builds the message naming the address.
   *
   * @param what what was being read, e.g. `"bpf_map.name"`
   * @param address the guest address that failed
   * @param reason why, e.g. `"not mapped"`
   */
  constructor(
    what: string,
    address: bigint,
    reason: string,
    options: BpfmapErrorOptions = {},
  ) {
    super(`Cannot ${what} at ${hex(address)}: ${reason}`, options);
    this.address = address;
  }
}

/**
 * The guest kernel could not be identified or lacks something bpfmap needs
 * (a VMCOREINFO key, a kallsyms symbol, a BTF struct member).
 *
 * @example
 * ```ts
 * import { GuestKernelError } from "./errors.ts";
 * throw new GuestKernelError("symbol map_idr not found in kallsyms");
 * ```
 */
export class GuestKernelError extends BpfmapError {
  /**
   * Wraps the message.
   *
   * @param message what is missing and where it was looked for
   */
  constructor(message: string, options: BpfmapErrorOptions = {}) {
    super(message, options);
  }
}

/**
 * A guest memory source that cannot be used as one: a directory, a FIFO, an
 * empty file, a truncated core. The message names the path and what is needed.
 */
export class GuestSourceError extends BpfmapError {
  /** The file given. */
  readonly path: string;

  /**
   * Builds the one-line message.
   *
   * @param path the file given
   * @param problem what is wrong with it, e.g. `"is a directory"`
   */
  constructor(path: string, problem: string, options: BpfmapErrorOptions = {}) {
    super(`${path} ${problem}`, options);
    this.path = path;
  }
}
