/**
 * The maps every backend under the contract is built with, and their
 * contents: one definition, so two backends that pass the contract hold
 * byte-identical data and must read it identically.
 *
 * @module
 */

import { MapType } from "../../src/sys/constants.ts";

/** The roles a contract fixture fills. */
export type Role =
  | "hash"
  | "lru"
  | "array"
  | "global"
  | "pcpuArray"
  | "pcpuHash"
  | "lruPcpuHash"
  | "task";

/** One fixture map: its shape and its entries. */
export interface MapSpec {
  /** `enum bpf_map_type`. */
  type: number;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes. */
  valueSize: number;
  /** Maximum entries. */
  maxEntries: number;
  /** Map flags at creation. */
  flags: number;
  /** Keys with a value (indexes for arrays, u32 keys for hashes). */
  keys: readonly number[];
}

const NO_PREALLOC = 1;
const MMAPABLE = 1 << 10;

/** The fixture, by role. */
export const CONTRACT_SPEC: Readonly<Record<Role, MapSpec>> = {
  hash: {
    type: MapType.HASH,
    keySize: 4,
    valueSize: 8,
    maxEntries: 16,
    flags: 0,
    keys: [3, 17, 42, 1000, 65537],
  },
  lru: {
    type: MapType.LRU_HASH,
    keySize: 4,
    valueSize: 8,
    maxEntries: 16,
    flags: 0,
    keys: [5, 6, 7],
  },
  array: {
    type: MapType.ARRAY,
    keySize: 4,
    valueSize: 12,
    maxEntries: 4,
    flags: 0,
    keys: [0, 1, 2, 3],
  },
  global: {
    type: MapType.ARRAY,
    keySize: 4,
    valueSize: 24,
    maxEntries: 1,
    flags: MMAPABLE,
    keys: [0],
  },
  pcpuArray: {
    type: MapType.PERCPU_ARRAY,
    keySize: 4,
    valueSize: 12,
    maxEntries: 3,
    flags: 0,
    keys: [0, 1, 2],
  },
  pcpuHash: {
    type: MapType.PERCPU_HASH,
    keySize: 4,
    valueSize: 8,
    maxEntries: 8,
    flags: 0,
    keys: [9, 10],
  },
  lruPcpuHash: {
    type: MapType.LRU_PERCPU_HASH,
    keySize: 4,
    valueSize: 8,
    maxEntries: 8,
    flags: 0,
    keys: [11],
  },
  task: {
    type: MapType.TASK_STORAGE,
    keySize: 4,
    valueSize: 8,
    maxEntries: 0,
    flags: NO_PREALLOC,
    keys: [],
  },
};

/** Every role, in a fixed order. */
export const ROLES: readonly Role[] = Object.keys(CONTRACT_SPEC) as Role[];

/** A little-endian u32 key. */
export function keyBytes(key: number, size = 4): Uint8Array {
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, key, true);
  return bytes;
}

/**
 * The value of `key` in `role` (for per-CPU maps: on `cpu`). u64 values use
 * all 64 bits, so a reader that went through a double would be caught.
 */
export function valueOf(role: Role, key: number, cpu = 0): Uint8Array {
  const spec = CONTRACT_SPEC[role];
  const bytes = new Uint8Array(spec.valueSize);
  const seed = ROLES.indexOf(role) * 131 + key * 17 + cpu * 7;
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed + i * 29) & 0xff;
  if (spec.valueSize === 8) {
    new DataView(bytes.buffer).setBigUint64(
      0,
      0xfedc_ba98_0000_0000n + BigInt(key) * 0x1_0000_0001n + BigInt(cpu),
      true,
    );
  }
  return bytes;
}

/** The per-CPU layout the kernel uses: slots of `round_up(value_size, 8)`. */
export function percpuValue(role: Role, key: number, cpus: number): Uint8Array {
  const size = CONTRACT_SPEC[role].valueSize;
  const stride = Math.ceil(size / 8) * 8;
  const all = new Uint8Array(stride * cpus);
  for (let cpu = 0; cpu < cpus; cpu++) {
    all.set(valueOf(role, key, cpu), cpu * stride);
  }
  return all;
}

/** The one task-storage value. */
export const TASK_VALUE: Uint8Array = Uint8Array.from([
  0x88,
  0x77,
  0x66,
  0x55,
  0x44,
  0x33,
  0x22,
  0x11,
]);

/** Arena pages a backend that can make an arena fills: page index to first bytes. */
export const ARENA_PAGES: ReadonlyMap<number, Uint8Array> = new Map([
  [0, Uint8Array.from([0xaa, 1, 2, 3])],
  [2, Uint8Array.from([0xbb, 4, 5, 6])],
]);
