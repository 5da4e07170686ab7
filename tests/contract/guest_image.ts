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
import type { ProgramLayout } from "../../src/guest/prog_layout.ts";
import {
  kernelTags,
  PROGRAM_ROLES,
  PROGRAM_SPEC,
  type ProgramRole,
} from "./program_spec.ts";
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
  /** The RAM, for tests that corrupt it after building (reads are lazy). */
  ram: FakeRam;
  /** The kernel-visible name of each fixture program. */
  programNames: Record<ProgramRole, string>;
  /** Each program's id and the physical addresses of its records. */
  programs: Record<ProgramRole, GuestProgramImage>;
  /** Physical address of the `prog_idr` xa_node (slot `id` at `nodeSlots + 8 * id`). */
  progNode: bigint;
  /** Physical address of `bpf_stats_enabled_key`. */
  statsKey: bigint;
}

/** Where one program's records sit in the image. */
export interface GuestProgramImage {
  /** Program id. */
  id: number;
  /** Physical address of `struct bpf_prog`. */
  prog: bigint;
  /** Physical address of `struct bpf_prog_aux`. */
  aux: bigint;
  /** `bpf_prog.stats`: CPU c's counters are at this + `__per_cpu_offset[c]`. */
  stats: bigint;
}

/** Program struct offsets the image is written with (any consistent set will do). */
export const GUEST_PROGRAM_LAYOUT: ProgramLayout = {
  pages: 0,
  gplCompatible: { byte: 2, bit: 2 },
  type: 4,
  len: 12,
  jitedLen: 16,
  tag: 20,
  stats: 56,
  aux: 80,
  auxId: 0,
  auxName: 8,
  usedMapCnt: 24,
  usedMaps: 32,
  auxBtf: 40,
  subprograms: { funcCnt: 72, func: 80 },
  loadTime: 48,
  verifiedInsns: 56,
  user: { pointer: 64, uid: 4 },
  counters: { cnt: 0, nsecs: 8, misses: 16 },
  staticKeyEnabled: 0,
};

/** Ids of the image's programs (below 64: one xa_node holds them). */
export const GUEST_PROGRAM_IDS: Readonly<Record<ProgramRole, number>> = {
  plain: 5,
  withMaps: 9,
};

/** Per-CPU run counters of each program: [cnt, nsecs, misses] per CPU, u64 sums that need all 64 bits. */
export const GUEST_PROGRAM_STATS: Readonly<
  Record<ProgramRole, readonly (readonly [bigint, bigint, bigint])[]>
> = {
  plain: [[3n, 0x8000_0000_0000_0001n, 0n], [4n, 0x7fff_ffff_ffff_fffen, 1n]],
  withMaps: [[0n, 0n, 0n], [0n, 0n, 0n]],
};

/** The uid written into each program's `user_struct`. */
export const GUEST_PROGRAM_UID = 1000;
/** The load time written into each program's aux (ns since boot). */
export const GUEST_PROGRAM_LOAD_TIME = 0x0123_4567_89ab_cdefn;

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
  const mapAt = {} as Record<Role, bigint>;
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
    mapAt[role] = at;
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

  // prog_idr, its programs and the stats key.
  const progIdr = ram.alloc();
  const progNode = ram.alloc();
  ram.u64(progIdr + BigInt(GUEST_LAYOUT.xarray.idrHead), va(progNode) | 2n);
  const statsKey = ram.alloc();
  ram.u32(statsKey + BigInt(GUEST_PROGRAM_LAYOUT.staticKeyEnabled!), 1);
  const user = ram.alloc();
  ram.u32(user + BigInt(GUEST_PROGRAM_LAYOUT.user!.uid), GUEST_PROGRAM_UID);
  const programNames = {} as Record<ProgramRole, string>;
  const programs = {} as Record<ProgramRole, GuestProgramImage>;
  for (const role of PROGRAM_ROLES) {
    const spec = PROGRAM_SPEC[role];
    const p = GUEST_PROGRAM_LAYOUT;
    const id = GUEST_PROGRAM_IDS[role];
    const name = `cp_${role}`;
    const insns = spec.insns(spec.maps.map(() => 0));
    const prog = ram.alloc();
    const aux = ram.alloc();
    ram.u64(
      progNode + BigInt(GUEST_LAYOUT.xarray.nodeSlots + id * 8),
      va(prog),
    );
    ram.u8(prog + BigInt(p.pages), 1);
    ram.u8(
      prog + BigInt(p.gplCompatible.byte),
      spec.license === "GPL" ? 1 << p.gplCompatible.bit : 0,
    );
    ram.u32(prog + BigInt(p.type), spec.type);
    ram.u32(prog + BigInt(p.len), insns.length / 8);
    ram.u32(prog + BigInt(p.jitedLen), 20 + id);
    ram.set(
      prog + BigInt(p.tag),
      Uint8Array.from(
        kernelTags(insns)[0].match(/../g)!.map((h) => parseInt(h, 16)),
      ),
    );
    const stats = nextPercpu;
    nextPercpu += 32n;
    GUEST_PROGRAM_STATS[role].forEach(([cnt, nsecs, misses], cpu) => {
      const at = stats + PERCPU_OFFSETS[cpu]!;
      ram.u64(at + BigInt(p.counters!.cnt), cnt);
      ram.u64(at + BigInt(p.counters!.nsecs), nsecs);
      ram.u64(at + BigInt(p.counters!.misses!), misses);
    });
    ram.u64(prog + BigInt(p.stats), va(stats));
    ram.u64(prog + BigInt(p.aux), va(aux));
    ram.u32(aux + BigInt(p.auxId), id);
    ram.set(aux + BigInt(p.auxName), new TextEncoder().encode(name));
    ram.u32(aux + BigInt(p.usedMapCnt), spec.maps.length);
    if (spec.maps.length > 0) {
      const used = ram.alloc();
      spec.maps.forEach((r, i) => ram.u64(used + BigInt(i * 8), va(mapAt[r])));
      ram.u64(aux + BigInt(p.usedMaps), va(used));
    }
    ram.u64(aux + BigInt(p.loadTime), GUEST_PROGRAM_LOAD_TIME);
    ram.u32(aux + BigInt(p.verifiedInsns!), spec.verifiedInsns);
    ram.u64(aux + BigInt(p.user!.pointer), va(user));
    programNames[role] = name;
    programs[role] = { id, prog, aux, stats };
  }

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
      ["prog_idr", va(progIdr)],
      ["bpf_stats_enabled_key", va(statsKey)],
      ["nr_cpu_ids", va(symbolsPa)],
      ["__per_cpu_offset", va(symbolsPa + 8n)],
      ["page_offset_base", START_KERNEL_MAP + symbolsPa + 0x20n],
    ]),
    symbolsRelocated: true,
    layout: GUEST_LAYOUT,
    programLayout: GUEST_PROGRAM_LAYOUT,
  });
  return {
    accessor,
    names,
    cpus,
    taskOwner,
    taskBtf,
    release,
    ram,
    programNames,
    programs,
    progNode,
    statsKey,
  };
}
