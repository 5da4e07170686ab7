/**
 * A set of equal-length byte keys: an open-addressing table over one byte
 * arena. A walk that must notice keys listed twice (a restarted
 * GET_NEXT_KEY / LOOKUP_BATCH) checks every key of the map, and a
 * `Set<string>` of a million keys cost more than the kernel's own walk of an
 * LPM trie; this keeps the check at a few tens of nanoseconds per key.
 *
 * @module
 */

/** Equal-length byte keys, added and looked up by value. */
export class ByteKeySet {
  readonly #keySize: number;
  #arena: Uint8Array;
  #slots: Int32Array; // 0 empty, else index + 1 into the arena
  #mask: number;
  #size = 0;

  /** @param keySize every key's length in bytes */
  constructor(keySize: number, expected = 1024) {
    this.#keySize = keySize;
    let capacity = 64;
    while (capacity < expected * 2 && capacity < 1 << 26) capacity *= 2;
    this.#slots = new Int32Array(capacity);
    this.#mask = capacity - 1;
    this.#arena = new Uint8Array(Math.max(keySize, 1) * (capacity >>> 1));
  }

  /** How many keys are in the set. */
  get size(): number {
    return this.#size;
  }

  #hash(bytes: Uint8Array, at: number): number {
    // FNV-1a: cheap, and the bytes of map keys are rarely adversarial here
    let h = 0x811c9dc5;
    for (let i = 0; i < this.#keySize; i++) {
      h = Math.imul(h ^ bytes[at + i]!, 0x01000193);
    }
    return h ^ (h >>> 15);
  }

  #equal(index: number, bytes: Uint8Array, at: number): boolean {
    const arena = this.#arena;
    const base = index * this.#keySize;
    for (let i = 0; i < this.#keySize; i++) {
      if (arena[base + i] !== bytes[at + i]) return false;
    }
    return true;
  }

  /** The slot holding the key, or the empty slot where it would go (negative: -slot - 1). */
  #find(bytes: Uint8Array, at: number): number {
    let slot = this.#hash(bytes, at) & this.#mask;
    for (;;) {
      const entry = this.#slots[slot]!;
      if (entry === 0) return -slot - 1;
      if (this.#equal(entry - 1, bytes, at)) return slot;
      slot = (slot + 1) & this.#mask;
    }
  }

  /** Whether the `keySize` bytes at `at` of `bytes` are in the set. */
  has(bytes: Uint8Array, at = 0): boolean {
    return this.#find(bytes, at) >= 0;
  }

  /** Adds the key; false when it was there already. */
  add(bytes: Uint8Array, at = 0): boolean {
    const found = this.#find(bytes, at);
    if (found >= 0) return false;
    if ((this.#size + 1) * 2 > this.#slots.length) {
      this.#grow();
      return this.add(bytes, at);
    }
    const index = this.#size++;
    const base = index * this.#keySize;
    if (base + this.#keySize > this.#arena.length) {
      const bigger = new Uint8Array(this.#arena.length * 2 + this.#keySize);
      bigger.set(this.#arena);
      this.#arena = bigger;
    }
    this.#arena.set(bytes.subarray(at, at + this.#keySize), base);
    this.#slots[-found - 1] = index + 1;
    return true;
  }

  #grow(): void {
    const slots = new Int32Array(this.#slots.length * 2);
    const mask = slots.length - 1;
    for (let index = 0; index < this.#size; index++) {
      let slot = this.#hash(this.#arena, index * this.#keySize) & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = index + 1;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}
