/**
 * A synthetic guest RAM image holding the contract fixture (`spec.ts`) in
 * kernel structures: `map_idr`, `struct bpf_map`, arrays, per-CPU arrays
 * (`pptrs` + `__per_cpu_offset`), hash buckets of `htab_elem`, and
 * task-storage buckets, at the struct offsets of `GUEST_LAYOUT`. It is built
 * with the page-table builder of `tests/guest_fixture.ts` and opened with
 * `GuestMemMapAccessor.fromMemory`, VMCOREINFO and symbols given up front.
 *
 * @module
 */

import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import type { KernelLayout } from "../../src/guest/layout.ts";
import { START_KERNEL_MAP } from "../../src/guest/paging.ts";
import { MapType } from "../../src/sys/constants.ts";
import { FakeRam, PageTables } from "../guest_fixture.ts";
import {
  CONTRACT_SPEC,
  keyBytes,
  type Role,
  ROLES,
  TASK_VALUE,
  valueOf,
} from "./spec.ts";

/** The direct map's base (4-level paging, no KASLR of it). */
export const PAGE_OFFSET = 0xffff888000000000n;

/** Struct offsets the image is written with (any consistent set will do). */
export const GUEST_LAYOUT: KernelLayout = {
  xarray: {
    idrHead: 8,
    idrBase: 16,
    nodeShift: 0,
    nodeSlots: 40,
    chunkSize: 64,
  },
  map: {
    type: 0,
    keySize: 4,
    valueSize: 8,
    maxEntries: 12,
    flags: 16,
    mapExtra: 24,
    id: 32,
    name: 40,
    btf: 56,
    btfKeyTypeId: 64,
    btfValueTypeId: 68,
    btfVmlinuxValueTypeId: 72,
    frozen: 76,
    btfData: 0,
    btfDataSize: 8,
    btfId: 12,
  },
  array: { value: 128, elemSize: 120 },
  htab: {
    buckets: 128,
    nBuckets: 136,
    bucketSize: 16,
    bucketFirst: 0,
    elemNext: 0,
    elemKey: 48,
  },
  localStorage: {
    buckets: 128,
    bucketLog: 136,
    bucketSize: 16,
    bucketFirst: 0,
    elemMapNode: 0,
    nodeNext: 0,
    elemLocalStorage: 32,
    elemData: 64,
    storageOwner: 8,
  },
  arena: null,
};

/** What the image holds beyond the spec's contents. */
export interface GuestImage {
  /** The accessor over the image. */
  accessor: GuestMemMapAccessor;
  /** The kernel-visible name of each fixture map. */
  names: Record<Role, string>;
  /** `nr_cpu_ids`. */
  cpus: number;
  /** Kernel address of the task owning the one task-storage element. */
  taskOwner: bigint;
  /** The BTF blob the task-storage map carries. */
  taskBtf: Uint8Array;
  /** The OSRELEASE written into VMCOREINFO. */
  release: string;
}

const PERCPU_OFFSETS = [0x600000n, 0x700000n];
const PERCPU_TYPES = new Set<number>([
  MapType.PERCPU_ARRAY,
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

function roundUp8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function roundUpPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Builds the image. `taskBtf` is stored as the task-storage map's BTF.
 *
 * @param taskBtf a BTF blob (the live fixture's, so both backends match)
 */
export function buildGuestImage(taskBtf: Uint8Array): GuestImage {
  const ram = new FakeRam(8 << 20, 0x100000n);
  const tables = new PageTables(ram, 4);
  const va = (pa: bigint): bigint => PAGE_OFFSET + pa;
  const m = GUEST_LAYOUT.map;
  const cpus = PERCPU_OFFSETS.length;

  // Per-CPU areas: a per-CPU pointer is a direct-map address X; CPU c's copy
  // sits at X + __per_cpu_offset[c]. X comes from [0x10000, 0x100000).
  let nextPercpu = 0x10000n;
  const percpuPointer = (role: Role, key: number): bigint => {
    const base = nextPercpu;
    const size = BigInt(roundUp8(CONTRACT_SPEC[role].valueSize));
    nextPercpu += size;
    PERCPU_OFFSETS.forEach((offset, cpu) =>
      ram.set(base + offset, valueOf(role, key, cpu))
    );
    return va(base);
  };

  const idr = 0x1000n;
  const xaNode = 0x2000n;
  ram.u64(idr + BigInt(GUEST_LAYOUT.xarray.idrHead), va(xaNode) | 2n);
  const symbolsPa = 0x3000n;
  ram.u32(symbolsPa, cpus); // nr_cpu_ids
  PERCPU_OFFSETS.forEach((o, cpu) =>
    ram.u64(symbolsPa + 8n + BigInt(cpu * 8), o)
  );
  ram.u64(symbolsPa + 0x20n, PAGE_OFFSET); // page_offset_base

  const names = {} as Record<Role, string>;
  let taskOwner = 0n;
  ROLES.forEach((role, index) => {
    const spec = CONTRACT_SPEC[role];
    const id = index + 1;
    const name = role === "global" ? "c_obj.bss" : `c_${role}`.slice(0, 15);
    names[role] = name;
    const stride = roundUp8(spec.valueSize);
    const at = ram.alloc(
      Math.max(4096, GUEST_LAYOUT.array.value + stride * spec.maxEntries),
    );
    ram.u64(xaNode + 40n + BigInt(id * 8), va(at));
    ram.u32(at + BigInt(m.type), spec.type);
    ram.u32(at + BigInt(m.keySize), spec.keySize);
    ram.u32(at + BigInt(m.valueSize), spec.valueSize);
    ram.u32(at + BigInt(m.maxEntries), spec.maxEntries);
    ram.u32(at + BigInt(m.flags), spec.flags);
    ram.u32(at + BigInt(m.id), id);
    ram.set(at + BigInt(m.name), new TextEncoder().encode(name));
    switch (spec.type) {
      case MapType.ARRAY:
        ram.u32(at + BigInt(GUEST_LAYOUT.array.elemSize), stride);
        for (const key of spec.keys) {
          ram.set(
            at + BigInt(GUEST_LAYOUT.array.value + key * stride),
            valueOf(role, key),
          );
        }
        break;
      case MapType.PERCPU_ARRAY:
        ram.u32(at + BigInt(GUEST_LAYOUT.array.elemSize), stride);
        for (let key = 0; key < spec.maxEntries; key++) {
          ram.u64(
            at + BigInt(GUEST_LAYOUT.array.value + key * 8),
            percpuPointer(role, key),
          );
        }
        break;
      case MapType.HASH:
      case MapType.LRU_HASH:
      case MapType.PERCPU_HASH:
      case MapType.LRU_PERCPU_HASH: {
        const h = GUEST_LAYOUT.htab!;
        const n = roundUpPow2(spec.maxEntries);
        const buckets = ram.alloc(n * h.bucketSize);
        ram.u64(at + BigInt(h.buckets), va(buckets));
        ram.u32(at + BigInt(h.nBuckets), n);
        // Empty buckets end in their nulls marker, (index << 1) | 1.
        const heads: bigint[] = Array.from(
          { length: n },
          (_, b) => BigInt((b << 1) | 1),
        );
        spec.keys.forEach((key, i) => {
          const bucket = (i * 3) % n;
          const elem = ram.alloc();
          ram.u64(elem + BigInt(h.elemNext), heads[bucket]!);
          heads[bucket] = va(elem);
          const keyAt = elem + BigInt(h.elemKey);
          ram.set(keyAt, keyBytes(key, spec.keySize));
          const valueAt = keyAt + BigInt(roundUp8(spec.keySize));
          if (PERCPU_TYPES.has(spec.type)) {
            ram.u64(valueAt, percpuPointer(role, key));
          } else {
            ram.set(valueAt, valueOf(role, key));
          }
        });
        heads.forEach((head, b) =>
          ram.u64(buckets + BigInt(b * h.bucketSize + h.bucketFirst), head)
        );
        break;
      }
      case MapType.TASK_STORAGE: {
        const s = GUEST_LAYOUT.localStorage!;
        const buckets = ram.alloc(2 * s.bucketSize);
        ram.u64(at + BigInt(s.buckets), va(buckets));
        ram.u32(at + BigInt(s.bucketLog), 1);
        const elem = ram.alloc();
        const storage = ram.alloc();
        taskOwner = PAGE_OFFSET + 0x7ff000n; // a task_struct's address
        ram.u64(storage + BigInt(s.storageOwner), taskOwner);
        ram.u64(elem + BigInt(s.elemMapNode + s.nodeNext), 0n);
        ram.u64(elem + BigInt(s.elemLocalStorage), va(storage));
        ram.set(elem + BigInt(s.elemData), TASK_VALUE);
        ram.u64(buckets + BigInt(s.bucketSize + s.bucketFirst), va(elem));
        // Its BTF: struct btf { data, data_size, id }.
        const btf = ram.alloc();
        const data = ram.alloc(taskBtf.length);
        ram.set(data, taskBtf);
        ram.u64(btf + BigInt(m.btfData), va(data));
        ram.u32(btf + BigInt(m.btfDataSize), taskBtf.length);
        ram.u32(btf + BigInt(m.btfId), 77);
        ram.u64(at + BigInt(m.btf), va(btf));
        ram.u32(at + BigInt(m.btfKeyTypeId), 1);
        ram.u32(at + BigInt(m.btfValueTypeId), 2);
        break;
      }
      default:
        throw new Error(
          `the guest image cannot hold a map of type ${spec.type}`,
        );
    }
  });

  const release = "6.99.0-contract";
  const vmcoreinfo = [
    `OSRELEASE=${release}`,
    "PAGESIZE=4096",
    "NUMBER(phys_base)=0",
    `SYMBOL(init_top_pgt)=${(START_KERNEL_MAP + tables.root).toString(16)}`,
    "",
  ].join("\n");
  const accessor = GuestMemMapAccessor.fromMemory(ram.memory(), {
    vmcoreinfo,
    symbols: new Map([
      ["map_idr", va(idr)],
      ["nr_cpu_ids", va(symbolsPa)],
      ["__per_cpu_offset", va(symbolsPa + 8n)],
      ["page_offset_base", START_KERNEL_MAP + symbolsPa + 0x20n],
    ]),
    symbolsRelocated: true,
    layout: GUEST_LAYOUT,
  });
  return { accessor, names, cpus, taskOwner, taskBtf, release };
}
