/**
 * The kernel's `jhash` and `jhash2` (include/linux/jhash.h, Bob Jenkins'
 * lookup3), which BLOOM_FILTER uses to pick bits: with them a bloom filter
 * in guest memory answers a membership test exactly as the guest would.
 *
 * @module
 */

const INITVAL = 0xdeadbeef;

function rol(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

// State lives in module variables: the hash runs per candidate per hash
// function, and an object per call would dominate its cost.
let a = 0;
let b = 0;
let c = 0;

function mix(): void {
  a = (a - c) >>> 0;
  a = (a ^ rol(c, 4)) >>> 0;
  c = (c + b) >>> 0;
  b = (b - a) >>> 0;
  b = (b ^ rol(a, 6)) >>> 0;
  a = (a + c) >>> 0;
  c = (c - b) >>> 0;
  c = (c ^ rol(b, 8)) >>> 0;
  b = (b + a) >>> 0;
  a = (a - c) >>> 0;
  a = (a ^ rol(c, 16)) >>> 0;
  c = (c + b) >>> 0;
  b = (b - a) >>> 0;
  b = (b ^ rol(a, 19)) >>> 0;
  a = (a + c) >>> 0;
  c = (c - b) >>> 0;
  c = (c ^ rol(b, 4)) >>> 0;
  b = (b + a) >>> 0;
}

function final(): void {
  c = ((c ^ b) - rol(b, 14)) >>> 0;
  a = ((a ^ c) - rol(c, 11)) >>> 0;
  b = ((b ^ a) - rol(a, 25)) >>> 0;
  c = ((c ^ b) - rol(b, 16)) >>> 0;
  a = ((a ^ c) - rol(c, 4)) >>> 0;
  b = ((b ^ a) - rol(a, 14)) >>> 0;
  c = ((c ^ b) - rol(b, 24)) >>> 0;
}

function le32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) |
    (bytes[at + 3]! << 24)) >>> 0;
}

/** `jhash(key, length, initval)` over bytes (x86-64 and arm64 read words little-endian). */
export function jhash(key: Uint8Array, initval: number): number {
  let length = key.byteLength;
  a = b = c = (INITVAL + length + initval) >>> 0;
  let k = 0;
  while (length > 12) {
    a = (a + le32(key, k)) >>> 0;
    b = (b + le32(key, k + 4)) >>> 0;
    c = (c + le32(key, k + 8)) >>> 0;
    mix();
    length -= 12;
    k += 12;
  }
  if (length === 0) return c;
  // the tail: byte i of the last 12 goes into word i/4 at bit 8*(i%4)
  for (let i = length - 1; i >= 0; i--) {
    const add = (key[k + i]! << (8 * (i % 4))) >>> 0;
    if (i >= 8) c = (c + add) >>> 0;
    else if (i >= 4) b = (b + add) >>> 0;
    else a = (a + add) >>> 0;
  }
  final();
  return c;
}

/** `jhash2(words, length / 4, initval)`: the kernel's choice when the length is a multiple of 4. */
export function jhash2(key: Uint8Array, initval: number): number {
  let words = key.byteLength >>> 2;
  a = b = c = (INITVAL + (words << 2) + initval) >>> 0;
  let k = 0;
  while (words > 3) {
    a = (a + le32(key, k)) >>> 0;
    b = (b + le32(key, k + 4)) >>> 0;
    c = (c + le32(key, k + 8)) >>> 0;
    mix();
    words -= 3;
    k += 12;
  }
  if (words === 0) return c;
  if (words >= 3) c = (c + le32(key, k + 8)) >>> 0;
  if (words >= 2) b = (b + le32(key, k + 4)) >>> 0;
  a = (a + le32(key, k)) >>> 0;
  final();
  return c;
}
