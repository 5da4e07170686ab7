import { deepEqual, equal, ok } from "node:assert/strict";
import { BtfBuilder } from "./btf_builder.ts";
import { ignoreUnless } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import { WrappedAccessor } from "./_support/wrapped.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import {
  btfLoad,
  mapGetInfo,
  mapUpdateElem,
  mapUpdateStorageElem,
  pidfdOpen,
} from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import { MappedBpfMap } from "../src/sys/mmap.ts";
import { dumpState } from "../src/dump/dump_state.ts";
import { reportToText } from "../src/dump/format.ts";

const PAGE = 4096;

/**
 * scx_sdt's types as its BPF object's BTF has them (7.3,
 * tools/sched_ext/scx_sdt.{h,bpf.c}): `struct sdt_data` only declared,
 * the allocator a static in `.bss` after another global.
 */
function sdtBtf(): { bytes: Uint8Array; ids: { [name: string]: number } } {
  const b = new BtfBuilder();
  const int = b.int("int", 4, true);
  const s32 = b.ref(8, int, "__s32");
  const s64 = b.ref(8, b.int("long long", 8, true), "__s64");
  const u64 = b.ref(8, b.int("unsigned long long", 8), "__u64");
  const halves = b.struct("", 8, [
    { name: "idx", type: s32, bitOffset: 0 },
    { name: "genn", type: s32, bitOffset: 32 },
  ]);
  const sdtId = b.struct("sdt_id", 8, [
    { name: "val", type: s64, bitOffset: 0 },
    { name: "", type: halves, bitOffset: 0 },
  ], true);
  const dataPtr = b.ptr(b.fwd("sdt_data"));
  const taskMapVal = b.struct("scx_task_map_val", 24, [
    { name: "tid", type: sdtId, bitOffset: 0 },
    { name: "tptr", type: u64, bitOffset: 64 },
    { name: "data", type: dataPtr, bitOffset: 128 },
  ]);
  const pool = b.struct("sdt_pool", 32, [
    { name: "slab", type: b.ptr(0), bitOffset: 0 },
    { name: "elem_size", type: u64, bitOffset: 64 },
    { name: "max_elems", type: u64, bitOffset: 128 },
    { name: "idx", type: u64, bitOffset: 192 },
  ]);
  const allocator = b.struct("scx_allocator", 40, [
    { name: "pool", type: pool, bitOffset: 0 },
    { name: "root", type: b.ptr(b.fwd("sdt_desc")), bitOffset: 256 },
  ]);
  const other = b.variable("nr_seen", u64, 0);
  const alloc = b.variable("scx_task_allocator", allocator, 0);
  const bss = b.datasec(".bss", 48, [
    { type: other, offset: 0, size: 8 },
    { type: alloc, offset: 8, size: 40 },
  ]);
  return { bytes: b.build(), ids: { int, taskMapVal, bss } };
}

Deno.test({
  name:
    "scx_sdt: each task's sdt_alloc element is followed from scx_task_map and rendered under the task, sized by the allocator's elem_size",
  ignore: ignoreUnless("bpf"),
  fn(): void {
    const { bytes, ids } = sdtBtf();
    using btfFd = btfLoad(bytes);
    const accessor = new BpfSyscallAccessor();
    using arenaFd = BpfSyscallAccessor.createMap({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: 2,
      flags: MapFlag.MMAPABLE,
      name: uniqueName("sdt_arena"),
    });
    using mapping = MappedBpfMap.map(arenaFd.fd, 2 * PAGE, { writable: true });
    const base = mapping.address;
    // One element at page 1, offset 56 (the second of its chunk): tid
    // {idx 1, genn 3}, then scx_stats {seq, pid, enqueue, exit, init,
    // select_busy_cpu, select_idle_cpu}: 48 bytes, so elem_size 56.
    const element = PAGE + 56;
    const mem = new DataView(mapping.bytes.buffer, mapping.bytes.byteOffset);
    mem.setInt32(element, 1, true);
    mem.setInt32(element + 4, 3, true);
    mem.setInt32(element + 8, 7, true); // seq
    mem.setInt32(element + 12, Deno.pid, true); // pid
    for (let i = 0; i < 5; i++) {
      mem.setBigUint64(element + 16 + 8 * i, BigInt(100 + i), true);
    }

    using bssFd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 48,
      maxEntries: 1,
      name: uniqueName("sdt.bss"),
      btfFd: btfFd.fd,
      btfKeyTypeId: ids.int!,
      btfValueTypeId: ids.bss!,
    });
    const bss = new Uint8Array(48);
    const b = new DataView(bss.buffer);
    b.setBigUint64(8, base, true); // pool.slab
    b.setBigUint64(16, 56n, true); // pool.elem_size
    mapUpdateElem(bssFd.fd, new Uint8Array(4), bss);

    using taskFd = BpfSyscallAccessor.createMap({
      type: MapType.TASK_STORAGE,
      keySize: 4,
      valueSize: 24,
      maxEntries: 0,
      flags: MapFlag.NO_PREALLOC,
      name: uniqueName("scx_task_map"),
      btfFd: btfFd.fd,
      btfKeyTypeId: ids.int!,
      btfValueTypeId: ids.taskMapVal!,
    });
    const value = new Uint8Array(24);
    const v = new DataView(value.buffer);
    v.setInt32(0, 1, true);
    v.setInt32(4, 3, true);
    v.setBigUint64(8, 0xffff888012345678n, true); // tptr: a kernel address
    v.setBigUint64(16, base + BigInt(element), true);
    {
      using self = pidfdOpen(Deno.pid);
      mapUpdateStorageElem(
        taskFd.fd,
        new Uint8Array(new Int32Array([self.fd]).buffer),
        value,
      );
    }
    const taskId = mapGetInfo(taskFd.fd).id;
    const ids3 = [taskId, mapGetInfo(bssFd.fd).id, mapGetInfo(arenaFd.fd).id];
    const report = dumpState(
      new WrappedAccessor(accessor, { only: new Set(ids3) }),
      { followArena: true, filter: (m) => m.id === taskId },
    );
    const entries = report.maps[0]!.entries!;
    equal(entries.length, 1);
    equal(entries[0]!.owner?.includes(String(Deno.pid)), true);
    const [data] = entries[0]!.arena!.pointees;
    equal(
      entries[0]!.arena!.pointees.length,
      1,
      "tptr is not an arena address",
    );
    equal(data!.path, "data");
    equal(data!.type, "struct sdt_data (declared only)");
    equal(data!.offset, element);
    deepEqual(data!.value, {
      tid: { val: 3n << 32n | 1n, idx: 1, genn: 3 },
      payload: [
        BigInt(Deno.pid) << 32n | 7n,
        100n,
        101n,
        102n,
        103n,
        104n,
      ],
    });
    ok(data!.note!.includes("56 bytes"), data!.note);
    const text = reportToText(report);
    ok(
      text.includes(
        `-> data: struct sdt_data (declared only) at 0x${
          (base + BigInt(element)).toString(16)
        }`,
      ),
      text,
    );

    // Without the program's .bss the element size is unknown: the header only.
    const headerOnly = dumpState(
      new WrappedAccessor(accessor, {
        only: new Set([taskId, ids3[2]!]),
      }),
      { followArena: true },
    );
    const alone = headerOnly.maps.find((m) => m.id === taskId)!.entries![0]!
      .arena!.pointees[0]!;
    deepEqual(alone.value, {
      tid: { val: 3n << 32n | 1n, idx: 1, genn: 3 },
      payload: [],
    });
    ok(alone.note!.startsWith("scx_sdt element: header only"));
  },
});
