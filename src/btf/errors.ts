/**
 * Errors raised while reading BTF.
 *
 * @module
 */

import { BpfmapError, type BpfmapErrorOptions } from "../errors.ts";

/**
 * A BTF blob (or ELF file carrying one) is malformed: a length, offset,
 * kind or reference is out of range, or type references form a cycle.
 * `offset` is the byte offset in the blob where the bad data sits, or -1
 * when the problem is not tied to one place (a reference cycle).
 *
 * @example Catch a corrupt blob
 * ```ts
 * import { Btf, BtfError } from "./mod.ts";
 * try {
 *   Btf.parse(new Uint8Array([0x9f, 0xeb, 1, 0]));
 * } catch (error) {
 *   if (error instanceof BtfError) console.log(error.offset); // 0
 * }
 * ```
 */
export class BtfError extends BpfmapError {
  /** Byte offset of the bad data in the blob, -1 when not tied to one place. */
  readonly offset: number;

  /**
   * Builds the error; the message gets an `at byte N` prefix when `offset` is known.
   *
   * @param message what is wrong, sentence case, no final period
   * @param offset byte offset of the bad data, -1 when unknown
   */
  constructor(message: string, offset = -1, options: BpfmapErrorOptions = {}) {
    // Subclasses (a failed lookup) are not about invalid bytes: they keep their own wording.
    super(
      new.target !== BtfError
        ? message
        : offset >= 0
        ? `Invalid BTF at byte ${offset}: ${message}`
        : `Invalid BTF: ${message}`,
      options,
    );
    this.offset = offset;
  }
}

/**
 * A lookup by name or member path found nothing (the type is not in this
 * BTF, or the member does not exist on this kernel).
 *
 * @example Probe for a member that may be missing
 * ```ts
 * import { BtfNotFoundError, loadKernelBtf } from "./mod.ts";
 * try {
 *   loadKernelBtf().memberOffset("bpf_map", "no_such_member");
 * } catch (error) {
 *   if (error instanceof BtfNotFoundError) console.log("absent on this kernel");
 * }
 * ```
 */
export class BtfNotFoundError extends BtfError {
  /**
   * Builds the error.
   *
   * @param message what was looked up and not found
   * @param options cause and advice
   */
  constructor(message: string, options: BpfmapErrorOptions = {}) {
    super(message, -1, options);
  }
}
