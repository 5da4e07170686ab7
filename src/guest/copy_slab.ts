/**
 * Copying many small runs out of guest memory without one allocation each.
 *
 * @module
 */

/** Copies `len` bytes; a plain loop for small runs (no subarray objects). */
export function copyInto(
  to: Uint8Array,
  toAt: number,
  from: Uint8Array,
  fromAt: number,
  len: number,
): void {
  if (len <= 64) {
    for (let i = 0; i < len; i++) to[toAt + i] = from[fromAt + i]!;
  } else {
    to.set(from.subarray(fromAt, fromAt + len), toAt);
  }
}

/**
 * Copies small byte runs into shared chunks and hands out views of them, so
 * a walk allocates one buffer per chunk instead of one per key or value
 * (allocating an ArrayBuffer costs far more than copying a few bytes). Each
 * copy starts 8-byte aligned; runs over a quarter chunk get their own buffer.
 * A view keeps its whole chunk alive.
 *
 * @example
 * ```ts
 * import { CopySlab } from "./copy_slab.ts";
 * const slab = new CopySlab(4096);
 * const a = slab.copy(new Uint8Array([1, 2, 3]), 1, 2);
 * console.log(a); // Uint8Array(2) [ 2, 3 ]
 * ```
 */
export class CopySlab {
  readonly #chunkSize: number;
  #chunk = new Uint8Array(0);
  #used = 0;

  /** @param chunkSize bytes per shared chunk */
  constructor(chunkSize = 64 << 10) {
    this.#chunkSize = Math.max(64, chunkSize);
  }

  /** A copy of `from[at, at + len)`. */
  copy(from: Uint8Array, at: number, len: number): Uint8Array {
    if (len > this.#chunkSize >> 2) {
      return from.slice(at, at + len);
    }
    let start = this.#used;
    if (start + len > this.#chunk.length) {
      this.#chunk = new Uint8Array(this.#chunkSize);
      start = 0;
    }
    copyInto(this.#chunk, start, from, at, len);
    this.#used = (start + len + 7) & ~7;
    return this.#chunk.subarray(start, start + len);
  }
}
