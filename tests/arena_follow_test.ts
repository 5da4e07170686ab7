import { deepEqual, equal, ok } from "node:assert/strict";
import { BtfBuilder } from "./btf_builder.ts";
import { prng } from "./btf_fixture.ts";
import { runCli, runCliOn } from "./_support/cli.ts";
import { WrappedAccessor } from "./_support/wrapped.ts";
import { ignoreUnless } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import { Btf, parseJsonExact, toJson } from "../src/btf/mod.ts";
import { pointerSlots, typeName } from "../src/btf/arena_pointers.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { btfLoad, mapGetInfo } from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import { MappedBpfMap } from "../src/sys/mmap.ts";
import { ArenaView, followArenaPointers } from "../src/dump/arena.ts";
import { dumpState } from "../src/dump/dump_state.ts";
import { reportToText } from "../src/dump/format.ts";

const PAGE = 4096;

/**
 * A scheduler-like layout: `struct holder` (the map value) points into the
 * arena at a linked `struct item` (declared forward where the pointer is,
 * as clang emits a pointer-only use), which points at a `struct cpumask`.
 */
function arenaBtf(): { bytes: Uint8Array; ids: { [name: string]: number } } {
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4);
  const u64 = b.int("unsigned long long", 8);
  const ulong = b.int("long unsigned int", 8);
  const s64 = b.int("long long", 8, true);
  const itemFwd = b.fwd("item");
  const itemPtr = b.ptr(itemFwd);
  const cpumask = b.struct("cpumask", 16, [
    { name: "bits", type: b.array(ulong, 2, u32), bitOffset: 0 },
  ]);
  const item = b.struct("item", 24, [
    { name: "id", type: u32, bitOffset: 0 },
    { name: "next", type: itemPtr, bitOffset: 64 },
    { name: "cpus", type: b.ptr(cpumask), bitOffset: 128 },
  ]);
  const holder = b.struct("holder", 56, [
    { name: "head", type: itemPtr, bitOffset: 0 },
    { name: "as_u64", type: u64, bitOffset: 64 },
    { name: "opaque", type: b.ptr(0), bitOffset: 128 },
    { name: "gone", type: itemPtr, bitOffset: 192 },
    { name: "outside", type: itemPtr, bitOffset: 256 },
    { name: "signed", type: s64, bitOffset: 320 },
    { name: "zero", type: itemPtr, bitOffset: 384 },
  ]);
  return { bytes: b.build(), ids: { u32, item, holder, cpumask } };
}

Deno.test("pointerSlots() lists every pointer and u64 with its path and complete pointee type", () => {
  const { bytes, ids } = arenaBtf();
  const btf = Btf.parse(bytes);
  const slots = pointerSlots(btf, ids.holder!);
  deepEqual(
    slots.map((s) => [s.path, s.offset, s.pointee && typeName(btf, s.pointee)]),
    [
      ["head", 0, "struct item"],
      ["as_u64", 8, undefined],
      ["opaque", 16, 0],
      ["gone", 24, "struct item"],
      ["outside", 32, "struct item"],
      ["zero", 48, "struct item"],
    ],
  );
  equal(pointerSlots(btf, ids.holder!, { maxSlots: 2 }).length, 2);
  // Arrays without slots are passed over whole; arrays with them expanded.
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4);
  const ptr = b.ptr(0);
  const pair = b.struct("pair", 16, [
    { name: "n", type: b.array(u32, 2, u32), bitOffset: 0 },
    { name: "p", type: ptr, bitOffset: 64 },
  ]);
  const big = b.struct("big", 4 * (1 << 20) + 40, [
    { name: "counts", type: b.array(u32, 1 << 20, u32), bitOffset: 0 },
    { name: "ring", type: b.array(pair, 2, u32), bitOffset: 32 << 20 },
    { name: "last", type: ptr, bitOffset: (32 << 20) + 256 },
  ]);
  const wide = Btf.parse(b.build());
  deepEqual(
    pointerSlots(wide, big).map((s) => [s.path, s.offset]),
    [
      ["ring[0].p", (4 << 20) + 8],
      ["ring[1].p", (4 << 20) + 24],
      ["last", (4 << 20) + 32],
    ],
  );
  deepEqual(pointerSlots(btf, ids.cpumask!), [], "a cpumask holds no pointers");
});

Deno.test({
  name:
    "arena pointers in a live map's value are followed into the arena's pages, bounded, with notes for what cannot be read",
  ignore: ignoreUnless("bpf"),
  async fn(): Promise<void> {
    const { bytes, ids } = arenaBtf();
    const btf = Btf.parse(bytes);
    using btfFd = btfLoad(bytes);
    const accessor = new BpfSyscallAccessor();
    using arenaFd = BpfSyscallAccessor.createMap({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: 4,
      flags: MapFlag.MMAPABLE,
      name: uniqueName("f_arena"),
    });
    using mapping = MappedBpfMap.map(arenaFd.fd, 4 * PAGE, { writable: true });
    const base = mapping.address;
    const arenaId = mapGetInfo(arenaFd.fd).id;
    // Page 0: item 1 -> item 2 (page 1) -> item 1 again; both point at a
    // cpumask on page 2. Page 3 is never touched, so it is not visible.
    const mem = new DataView(mapping.bytes.buffer, mapping.bytes.byteOffset);
    const itemAt = (at: number, id: number, next: bigint): void => {
      mem.setUint32(at, id, true);
      mem.setBigUint64(at + 8, next, true);
      mem.setBigUint64(at + 16, base + BigInt(2 * PAGE), true);
    };
    itemAt(0, 1, base + BigInt(PAGE + 16));
    itemAt(PAGE + 16, 2, base);
    mapping.bytes[2 * PAGE] = 0b1111;
    mapping.bytes[2 * PAGE + 15] = 0x80;

    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 56,
      maxEntries: 2,
      name: uniqueName("holder"),
      btfFd: btfFd.fd,
      btfKeyTypeId: ids.u32!,
      btfValueTypeId: ids.holder!,
    });
    const map = accessor.mapById(mapGetInfo(fd.fd).id)!;
    const value = new Uint8Array(56);
    const v = new DataView(value.buffer);
    v.setBigUint64(0, base, true); // head
    v.setBigUint64(8, base + BigInt(PAGE + 16), true); // as_u64
    v.setBigUint64(16, base, true); // opaque
    v.setBigUint64(24, base + BigInt(3 * PAGE + 8), true); // gone
    v.setBigUint64(32, 0xffff888000001000n, true); // outside: a kernel address
    v.setBigInt64(40, -1n, true);
    accessor.update(map, new Uint8Array(4), value);

    const arena = accessor.mapById(arenaId)!;
    const view = ArenaView.read(accessor, [arena, map]);
    equal(view.problems.length, 0, view.problems.join("; "));
    const found = followArenaPointers(btf, ids.holder!, value, view);
    equal(found.note, undefined);
    const summary = found.pointees.map((p) => ({
      path: p.path,
      offset: p.offset,
      ...(p.type ? { type: p.type } : {}),
      ...(p.value !== undefined ? { value: toJson(p.value) } : {}),
      ...(p.note ? { note: p.note.replace(/ \(.*/, "") } : {}),
    }));
    deepEqual(summary, [
      {
        path: "head",
        offset: 0,
        type: "struct item",
        value: `{"id":1,"next":${base + BigInt(PAGE + 16)},"cpus":${
          base + BigInt(2 * PAGE)
        }}`,
      },
      {
        path: "as_u64",
        offset: PAGE + 16,
        note: "a u64 holding an arena address; BTF gives no type",
      },
      {
        path: "opaque",
        offset: 0,
        type: "void",
        note: "points to void: BTF gives no type",
      },
      {
        path: "gone",
        offset: 3 * PAGE + 8,
        type: "struct item",
        note: `page 3 of arena ${arenaId} is not visible`,
      },
      {
        path: "head->next",
        offset: PAGE + 16,
        type: "struct item",
        value: `{"id":2,"next":${base},"cpus":${base + BigInt(2 * PAGE)}}`,
      },
      {
        path: "head->cpus",
        offset: 2 * PAGE,
        type: "struct cpumask",
        value: '"0-3,127"',
      },
      {
        path: "head->next->next",
        offset: 0,
        type: "struct item",
        note: "same as head",
      },
      {
        path: "head->next->cpus",
        offset: 2 * PAGE,
        type: "struct cpumask",
        note: "same as head->cpus",
      },
    ]);
    ok(found.pointees.every((p) => p.arenaId === arenaId));

    // Each limit stops the walk with a note, never an error.
    const shallow = followArenaPointers(btf, ids.holder!, value, view, {
      maxDepth: 1,
    });
    deepEqual(shallow.pointees.map((p) => p.path), [
      "head",
      "as_u64",
      "opaque",
      "gone",
    ]);
    const few = followArenaPointers(btf, ids.holder!, value, view, {
      maxPointees: 2,
    });
    equal(few.pointees.length, 2);
    equal(few.note, "stopped after 2 arena pointers (the limit)");
    const small = followArenaPointers(btf, ids.holder!, value, view, {
      maxBytes: 30,
    });
    equal(small.pointees[0]!.value !== undefined, true, "24 bytes fit");
    ok(
      small.pointees.find((p) => p.path === "head->next")!.note!.startsWith(
        "not read: over the 30-byte limit",
      ),
    );

    // Hostile bytes: every slot pointing anywhere in or past the arena.
    const next = prng(0xa7e);
    for (let round = 0; round < 200; round++) {
      const hostile = new Uint8Array(56);
      const h = new DataView(hostile.buffer);
      for (let i = 0; i < 7; i++) {
        h.setBigUint64(
          i * 8,
          base + BigInt(Math.floor(next() * (5 * PAGE))) - 8n,
          true,
        );
      }
      const got = followArenaPointers(btf, ids.holder!, hostile, view);
      ok(got.pointees.length <= 32);
    }

    // The failure dump: the entry carries them, the text shows them.
    const report = dumpState(accessor, {
      filter: (m) => m.id === map.id,
      followArena: true,
    });
    const entry = report.maps[0]!.entries![0]!;
    equal(entry.arena!.pointees.length, 8);
    const text = reportToText(report);
    ok(
      text.includes(
        `    -> head->cpus: struct cpumask at 0x${
          (base + BigInt(2 * PAGE)).toString(16)
        } (arena ${arenaId} +0x2000): "0-3,127"`,
      ),
      text,
    );
    ok(text.includes("-> head->next->next: struct item at"), text);
    const plain = dumpState(accessor, { filter: (m) => m.id === map.id });
    equal(plain.maps[0]!.entries![0]!.arena, undefined, "off by default");

    // The CLI: bpfmap dump --follow-arena, on a window of the two maps.
    const window = new WrappedAccessor(accessor, {
      only: new Set([map.id, arenaId]),
    });
    const cli = await runCliOn(window, "dump", "--json", "--follow-arena");
    equal(cli.code, 0, cli.stderr);
    const json = parseJsonExact(cli.stdout) as {
      maps: { id: number; entries: { arena?: { pointees: unknown[] } }[] }[];
    };
    const dumped = json.maps.find((m) => m.id === map.id)!;
    equal(dumped.entries[0]!.arena!.pointees.length, 8);
    const textRun = await runCliOn(window, "dump", "--follow-arena");
    ok(textRun.stdout.includes("-> head->next: struct item at 0x"));
    const misuse = await runCli("dump", "--id", "1", "--follow-arena");
    equal(misuse.code, 2);
    ok(misuse.stderr.includes("--follow-arena applies to the failure dump"));
  },
});

Deno.test({
  name:
    "an arena pointer to an scx_cmask is read with the words its header asks for, within the byte limit",
  ignore: ignoreUnless("bpf"),
  fn(): void {
    const b = new BtfBuilder();
    const u32 = b.int("unsigned int", 4);
    const u64 = b.int("long long unsigned int", 8);
    const cmask = b.struct("scx_cmask", 16, [
      { name: "base", type: u32, bitOffset: 0 },
      { name: "nr_cids", type: u32, bitOffset: 32 },
      { name: "alloc_words", type: u32, bitOffset: 64 },
      { name: "bits", type: b.array(u64, 0, u32), bitOffset: 128 },
    ]);
    const holder = b.struct("task_ctx", 8, [
      { name: "cpus_allowed", type: b.ptr(cmask), bitOffset: 0 },
    ]);
    const btf = Btf.parse(b.build());
    const accessor = new BpfSyscallAccessor();
    using arenaFd = BpfSyscallAccessor.createMap({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: 1,
      flags: MapFlag.MMAPABLE,
      name: uniqueName("cm_arena"),
    });
    using mapping = MappedBpfMap.map(arenaFd.fd, PAGE, { writable: true });
    const mem = new DataView(mapping.bytes.buffer, mapping.bytes.byteOffset);
    // At offset 64: cids 60..139 active, three words of storage.
    mem.setUint32(64, 60, true);
    mem.setUint32(68, 80, true);
    mem.setUint32(72, 3, true);
    mem.setBigUint64(80, 0xf000000000000000n, true); // cids 60-63
    mem.setBigUint64(88, 1n, true); // cid 64
    mem.setBigUint64(96, 1n << 11n, true); // cid 139
    const value = new Uint8Array(8);
    new DataView(value.buffer).setBigUint64(0, mapping.address + 64n, true);
    const view = ArenaView.read(accessor, [
      accessor.mapById(mapGetInfo(arenaFd.fd).id)!,
    ]);
    const [whole] = followArenaPointers(btf, holder, value, view).pointees;
    deepEqual(whole!.value, {
      base: 60,
      nr_cids: 80,
      alloc_words: 3,
      cids: "60-64,139",
    });
    const [cut] = followArenaPointers(btf, holder, value, view, {
      maxBytes: 32,
    }).pointees;
    deepEqual(cut!.value, {
      base: 60,
      nr_cids: 80,
      alloc_words: 3,
      cids: "60-64",
      unread_words: 1,
    });
  },
});
