/**
 * Robustness on a real image: mutates a private copy of a frozen guest's RAM
 * (bpf_map structs, hash buckets and elements, map_idr nodes, kallsyms,
 * VMCOREINFO, BTF) and checks that every read ends in data or an error,
 * quickly, never a hang.
 *
 * @module
 */

import assert from "node:assert/strict";
import { prng as rng } from "../btf_fixture.ts";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import type { BpfMapInfo } from "../../src/accessor/types.ts";
import { detectArch } from "../../src/guest/arch/mod.ts";
import { BytesMemory } from "../../src/guest/phys.ts";
import { MapType } from "../../src/sys/constants.ts";
import { findVmcoreinfo } from "../../src/guest/vmcoreinfo.ts";

/** What a sweep saw. */
export interface SweepResult {
  /** Mutations tried. */
  runs: number;
  /** Runs where some read threw (a clean error). */
  errors: number;
  /** Runs where every read returned (possibly altered) data. */
  completed: number;
  /** Slowest run in ms. */
  maxMs: number;
}

/** Reads everything the accessor offers; returns how many items were read. */
export function readEverything(guest: GuestMemMapAccessor): number {
  let items = 0;
  const cpus = guest.cpuCount + 1;
  for (const map of guest.maps()) {
    items += readMap(guest, map, cpus);
  }
  return items;
}

function readMap(
  guest: GuestMemMapAccessor,
  map: BpfMapInfo,
  cpus: number,
): number {
  let items = 0;
  switch (map.type) {
    case MapType.ARRAY:
      for (let i = 0; i < Math.min(map.maxEntries, 4096); i++) {
        if (guest.readArray(map, i)) items++;
      }
      guest.loadProgramBtfBytes(map);
      break;
    case MapType.PERCPU_ARRAY:
      for (let i = 0; i < Math.min(map.maxEntries, 4096); i++) {
        if (guest.readPercpuArray(map, i, cpus)) items++;
      }
      break;
    case MapType.HASH:
    case MapType.LRU_HASH:
      for (const _ of guest.iterHashMap(map)) items++;
      break;
    case MapType.PERCPU_HASH:
    case MapType.LRU_PERCPU_HASH:
      for (const _ of guest.iterPercpuHashMap(map, cpus)) items++;
      break;
    case MapType.TASK_STORAGE:
      for (const _ of guest.iterTaskStorage(map)) items++;
      break;
    case MapType.ARENA:
      items += guest.readArenaPages(map).pages.length;
      break;
    default:
      // ring buffers, queues, tries, stack and fd maps: their own readers
      if (
        guest.readTypeDump(map, { recurse: true, keyedEntries: true }) !== null
      ) items++;
  }
  return items;
}

/**
 * Loads a private copy of the RAM file and runs targeted and random
 * mutations against it.
 *
 * @param ramPath the frozen guest's RAM file
 * @param runs how many random mutations
 */
export function mutationSweep(
  ramPath: string,
  runs: number,
  seed = 1,
): SweepResult {
  const bytes = Deno.readFileSync(ramPath);
  const size = BigInt(bytes.byteLength);
  // the layout of the architecture whose VMCOREINFO is in the file (RAM at
  // 1 GiB on arm64 virt): file offsets and guest physical addresses differ
  const located = findVmcoreinfo(
    new BytesMemory(bytes, [{ gpa: 0n, size, fileOffset: 0 }]),
  );
  assert.ok(located, `no VMCOREINFO in ${ramPath}`);
  const memory = new BytesMemory(
    bytes,
    detectArch(located).ramFileLayouts(size)[0]!.regions,
  );
  /** The offset in `bytes` of a guest physical address. */
  const fileAt = (pa: bigint): number => {
    const at = memory.offsetOf(pa, 8);
    assert.ok(at >= 0, `guest physical ${pa.toString(16)} not in the file`);
    return at;
  };
  const view = new DataView(bytes.buffer);
  const clean = GuestMemMapAccessor.fromMemory(memory);
  const baseline = readEverything(clean);
  const vmcoreinfo =
    [...clean.kernel.vmcoreinfo.raw].map(([k, v]) => `${k}=${v}`).join("\n") +
    "\n";
  const space = clean.kernel.space;
  const pa = (va: bigint): number => {
    const p = space.translate(va);
    assert.ok(p !== null, `translate ${va.toString(16)}`);
    return fileAt(p);
  };
  const withU64 = <T>(at: number, value: bigint, fn: () => T): T => {
    const old = view.getBigUint64(at, true);
    view.setBigUint64(at, BigInt.asUintN(64, value), true);
    try {
      space.clearCache();
      return fn();
    } finally {
      view.setBigUint64(at, old, true);
      space.clearCache();
    }
  };
  const layout = clean.reader.layout;
  const maps = clean.maps();
  const hash = maps.find((m) => m.name === "t_hash")!;
  const guest = GuestMemMapAccessor.fromMemory(memory, { vmcoreinfo, layout });

  // 1. a hash chain that loops back on itself
  const buckets = space.mustU64(
    hash.kernelAddress! + BigInt(layout.htab!.buckets),
    "buckets",
  );
  let firstElem = 0n;
  for (let b = 0; firstElem === 0n; b++) {
    const head = space.mustU64(
      buckets + BigInt(b * layout.htab!.bucketSize),
      "bucket",
    );
    if ((head & 1n) === 0n) firstElem = head;
  }
  withU64(pa(firstElem), firstElem, () => {
    guest.refresh();
    assert.throws(() => [...guest.iterHashMap(hash)], /cycle\?/);
  });
  // 2. an absurd bucket count
  withU64(
    pa(hash.kernelAddress! + BigInt(layout.htab!.nBuckets)),
    0x7fffffffn,
    () => {
      guest.refresh();
      assert.throws(() => [...guest.iterHashMap(hash)], /n_buckets 2147483647/);
    },
  );
  // 3. a map_idr slot pointing back at its own node: reported, other maps still listed
  const idrHead = space.mustU64(
    clean.reader.mapIdr + BigInt(layout.xarray.idrHead),
    "xa_head",
  );
  const node = idrHead & ~3n;
  withU64(pa(node + BigInt(layout.xarray.nodeSlots)), idrHead, () => {
    guest.refresh();
    assert.equal(guest.maps().length, maps.length);
    assert.match(
      guest.problems().map((p) => p.message).join("\n"),
      /holds node pointer|reachable twice/,
    );
  });
  // 4. kallsyms_num_syms, VMCOREINFO and BTF corrupted: clean errors when locating the kernel
  const numSyms = clean.kernel.vmcoreinfo.symbols.get("kallsyms_num_syms")!;
  withU64(pa(numSyms), 0xffffffffn, () => {
    assert.throws(
      () => GuestMemMapAccessor.fromMemory(memory, { vmcoreinfo }),
      /kallsyms_num_syms is 4294967295/,
    );
  });
  const startBtf = clean.kernel.symbol("__start_BTF");
  withU64(pa(startBtf), 0n, () => {
    assert.throws(
      () => GuestMemMapAccessor.fromMemory(memory, { vmcoreinfo }),
      /No BTF magic at __start_BTF/,
    );
  });
  // every copy of VMCOREINFO (the kernel keeps the text and an ELF note of it)
  const copies: { at: number; old: bigint }[] = [];
  for (
    let found = findVmcoreinfo(memory);
    found && copies.length < 8;
    found = findVmcoreinfo(memory)
  ) {
    const at = fileAt(found.foundAt!);
    copies.push({ at, old: view.getBigUint64(at, true) });
    view.setBigUint64(at, 0x5858585858585858n, true);
  }
  try {
    assert.ok(
      copies.length >= 1 && copies.length < 8,
      `${copies.length} VMCOREINFO copies`,
    );
    assert.throws(
      () => GuestMemMapAccessor.fromMemory(memory),
      /No VMCOREINFO found/,
    );
  } finally {
    for (const { at, old } of copies.reverse()) {
      view.setBigUint64(at, old, true);
    }
  }

  // 5. random 8-byte mutations of bpf_map structs, buckets, elements and xa_nodes
  const targets: { va: bigint; len: number }[] = [{
    va: node,
    len: 40 + 64 * 8,
  }];
  for (const map of maps) {
    targets.push({ va: map.kernelAddress!, len: 512 });
    if (
      map.type === MapType.HASH || map.type === MapType.PERCPU_HASH ||
      map.type === MapType.LRU_HASH
    ) {
      const b = space.mustU64(
        map.kernelAddress! + BigInt(layout.htab!.buckets),
        "buckets",
      );
      targets.push({ va: b, len: 256 });
    }
  }
  const random = rng(seed);
  const pick = <T>(items: T[]): T =>
    items[Math.floor(random() * items.length)]!;
  const result: SweepResult = { runs: 0, errors: 0, completed: 0, maxMs: 0 };
  for (let i = 0; i < runs; i++) {
    const target = pick(targets);
    const offset = Math.floor(random() * (target.len / 8)) * 8;
    const va = target.va + BigInt(offset);
    const pa = space.translate(va);
    if (pa === null) continue;
    const at = fileAt(pa);
    const values = [
      0n,
      0xffffffffffffffffn,
      va,
      target.va,
      BigInt(Math.floor(random() * 2 ** 32)) << 32n |
      BigInt(Math.floor(random() * 2 ** 32)),
      view.getBigUint64(at, true) ^
      (1n << BigInt(Math.floor(random() * 64))),
      0x7fffffffn,
    ];
    const started = performance.now();
    withU64(at, pick(values), () => {
      guest.refresh();
      try {
        readEverything(guest);
        result.completed++;
      } catch {
        result.errors++;
      }
    });
    result.maxMs = Math.max(result.maxMs, performance.now() - started);
    result.runs++;
  }
  guest.refresh();
  assert.equal(
    readEverything(guest),
    baseline,
    "the copy reads as before once restored",
  );
  return result;
}
