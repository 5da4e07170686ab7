import { deepEqual, equal, ok } from "node:assert/strict";
import { BtfBuilder } from "./btf_builder.ts";
import { prng } from "./btf_fixture.ts";
import { ignoreUnless, REQUIRE_ALL } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import { existsSync } from "node:fs";
import {
  Btf,
  btfFromElfFile,
  BtfKind,
  formatValue,
  renderValue,
  toJson,
} from "../src/btf/mod.ts";
import {
  cmaskLayout,
  cmaskValue,
  cpuList,
  cpuListBytes,
  cpuListMax,
  cpumaskLayout,
} from "../src/btf/cpumask.ts";
import { compileValuePlan } from "../src/btf/plan.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { btfLoad, mapGetInfo } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { writeMapDump } from "../src/cli/dump.ts";
import { btfRenderer } from "../src/cli/render.ts";
import { MemorySink, OutputWriter } from "../src/cli/writer.ts";
import { dumpState } from "../src/dump/dump_state.ts";

/** The kernel's types as 7.3's BTF has them: cpumask_t, bpf_cpumask, and a scheduler's value using both. */
export function cpumaskBtf(): {
  bytes: Uint8Array;
  ids: { [name: string]: number };
} {
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4);
  const ulong = b.int("long unsigned int", 8);
  const int = b.int("int", 4, true);
  const bits = b.array(ulong, 128, u32);
  const cpumask = b.struct("cpumask", 1024, [
    { name: "bits", type: bits, bitOffset: 0 },
  ]);
  const cpumaskT = b.ref(8, cpumask, "cpumask_t");
  const atomic = b.struct("", 4, [{
    name: "counter",
    type: int,
    bitOffset: 0,
  }]);
  const atomicT = b.ref(8, atomic, "atomic_t");
  const refcount = b.struct("refcount_struct", 4, [
    { name: "refs", type: atomicT, bitOffset: 0 },
  ]);
  const refcountT = b.ref(8, refcount, "refcount_t");
  const bpfCpumask = b.struct("bpf_cpumask", 1032, [
    { name: "cpumask", type: cpumaskT, bitOffset: 0 },
    { name: "usage", type: refcountT, bitOffset: 8192 },
  ]);
  const pair = b.array(cpumaskT, 2, u32);
  const taskCtx = b.struct("task_ctx", 4136, [
    { name: "pid", type: u32, bitOffset: 0 },
    { name: "allowed", type: cpumaskT, bitOffset: 64 },
    { name: "owned", type: bpfCpumask, bitOffset: 64 + 8192 },
    { name: "history", type: pair, bitOffset: 64 + 8192 + 8256 },
  ]);
  // Look-alikes that are not the kernel's cpumask: rendered as structs.
  const signedBits = b.array(b.int("long int", 8, true), 2, u32);
  const signedMask = b.struct("cpumask", 16, [
    { name: "bits", type: signedBits, bitOffset: 0 },
  ]);
  const short = b.array(ulong, 1, u32);
  const shortMask = b.struct("cpumask", 16, [
    { name: "bits", type: short, bitOffset: 0 },
  ]);
  const small = b.struct("cpumask", 8, [{
    name: "bits",
    type: short,
    bitOffset: 0,
  }]);
  return {
    bytes: b.build(),
    ids: {
      u32,
      cpumask,
      cpumaskT,
      bpfCpumask,
      taskCtx,
      pair,
      signedMask,
      shortMask,
      small,
    },
  };
}

/** The bitmap with `cpus` set, `length` bytes. */
function maskOf(cpus: number[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (const cpu of cpus) out[cpu >> 3]! |= 1 << (cpu & 7);
  return out;
}

/** The list the slow way: every set bit, then runs joined. */
function naiveList(bytes: Uint8Array): string {
  const set: number[] = [];
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    if (bytes[bit >> 3]! & (1 << (bit & 7))) set.push(bit);
  }
  const parts: string[] = [];
  for (let i = 0; i < set.length;) {
    let j = i;
    while (j + 1 < set.length && set[j + 1] === set[j]! + 1) j++;
    parts.push(i === j ? `${set[i]}` : `${set[i]}-${set[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

Deno.test("cpuList() writes %*pbl ranges, loses no bit, and stays under cpuListMax()", () => {
  equal(cpuList(maskOf([0, 1, 2, 5], 8), 0, 8), "0-2,5");
  equal(cpuList(maskOf([], 8), 0, 8), "");
  equal(cpuList(maskOf([63], 8), 0, 8), "63");
  equal(cpuList(maskOf([7, 8], 8), 0, 8), "7-8");
  equal(cpuList(new Uint8Array(8).fill(0xff), 0, 8), "0-63");
  equal(cpuList(maskOf([3, 4], 16).subarray(0), 8, 8), "", "offset honoured");
  const next = prng(0xc9);
  for (let round = 0; round < 2000; round++) {
    const length = [4, 8, 16, 128, 1024][round % 5]!;
    const density = next();
    const bytes = Uint8Array.from(
      { length },
      () => {
        let byte = 0;
        for (let i = 0; i < 8; i++) if (next() < density) byte |= 1 << i;
        return next() < 0.3 ? 0 : byte;
      },
    );
    const list = cpuList(bytes, 0, length);
    equal(list, naiveList(bytes));
    deepEqual(cpuListBytes(list, length), bytes, "the list rebuilds the bytes");
    ok(list.length <= cpuListMax(length), `${list.length} > max`);
  }
  // The densest list is runs of two and a gap; the bound must hold it.
  const dense = new Uint8Array(1024);
  for (let bit = 0; bit < 8192; bit++) {
    if (bit % 3 !== 2) dense[bit >> 3]! |= 1 << (bit & 7);
  }
  ok(cpuList(dense, 0, 1024).length <= cpuListMax(1024));
  equal(cpuListBytes("3-1", 8), undefined);
  equal(cpuListBytes("64", 8), undefined);
  equal(cpuListBytes("x", 8), undefined);
});

Deno.test("cpumasks render as CPU lists in renderValue() and formatValue(), bpftool style keeps the words", () => {
  const { bytes, ids } = cpumaskBtf();
  const btf = Btf.parse(bytes);
  equal(cpumaskLayout(btf, ids.cpumaskT!)?.bytes, 1024);
  equal(cpumaskLayout(btf, ids.bpfCpumask!), undefined);
  for (const id of [ids.signedMask!, ids.shortMask!, ids.small!]) {
    // `small` is the right shape at 64 CPUs: recognised; the others are not.
    equal(cpumaskLayout(btf, id) !== undefined, id === ids.small, `type ${id}`);
  }
  const value = new Uint8Array(4136);
  new DataView(value.buffer).setUint32(0, 42, true);
  value.set(maskOf([0, 1, 2, 5], 1024), 8);
  value.set(maskOf([8191], 1024), 8 + 1024);
  value[8 + 2048] = 1; // usage.refs.counter
  value.set(maskOf([1, 3, 4, 5], 1024), 8 + 1032 + 1024);
  const rendered = renderValue(btf, ids.taskCtx!, value);
  deepEqual(rendered, {
    pid: 42,
    allowed: "0-2,5",
    owned: { cpumask: "8191", usage: { refs: { counter: 1 } } },
    history: ["1,3-5", ""],
  });
  equal(
    formatValue(rendered),
    [
      "{",
      "  pid = 42,",
      '  allowed = "0-2,5",',
      '  owned = {cpumask = "8191", usage = {refs = {counter = 1}}},',
      '  history = ["1,3-5", ""]',
      "}",
    ].join("\n"),
  );
  const compat = renderValue(btf, ids.cpumaskT!, value.subarray(8), {
    style: "bpftool",
  }) as { bits: bigint[] };
  equal(compat.bits.length, 128);
  equal(compat.bits[0], 0b100111n);
  const lookalike = renderValue(btf, ids.signedMask!, new Uint8Array(16));
  deepEqual(lookalike, { bits: [0n, 0n] });
});

Deno.test("compiled plans write cpumasks exactly as the renderer, JSON and text, on random and dense masks", () => {
  const { bytes, ids } = cpumaskBtf();
  const btf = Btf.parse(bytes);
  const next = prng(0x5eed);
  const decoder = new TextDecoder();
  for (
    const id of [
      ids.taskCtx!,
      ids.cpumaskT!,
      ids.bpfCpumask!,
      ids.pair!,
      ids.small!,
    ]
  ) {
    const size = btf.sizeOf(id);
    const plan = compileValuePlan(btf, id, size)!;
    const textPlan = plan.text!;
    ok(textPlan, `type ${id} has a text plan`);
    for (let round = 0; round < 60; round++) {
      const value = new Uint8Array(size);
      const style = round % 4;
      for (let i = 0; i < size; i++) {
        value[i] = style === 0
          ? 0
          : style === 1
          ? 0xff
          : style === 2
          ? [0xdb, 0xb6, 0x6d][i % 3]! // runs of two and a gap: the widest list
          : next() < 0.7
          ? 0
          : Math.floor(next() * 256);
      }
      const rendered = renderValue(btf, id, value);
      const jsonOut = new Uint8Array(plan.jsonMax);
      equal(
        decoder.decode(jsonOut.subarray(0, plan.json(value, 0, jsonOut, 0))),
        toJson(rendered),
      );
      const textOut = new Uint8Array(plan.textMax);
      equal(
        decoder.decode(textOut.subarray(0, textPlan(value, 0, textOut, 0))),
        formatValue(rendered),
      );
    }
  }
});

Deno.test({
  name:
    "a live map whose value holds cpumasks dumps as CPU lists through plans, the renderer and the failure dump alike",
  ignore: ignoreUnless("bpf"),
  fn(): void {
    const { bytes, ids } = cpumaskBtf();
    const btf = Btf.parse(bytes);
    using btfFd = btfLoad(bytes);
    const accessor = new BpfSyscallAccessor();
    const name = uniqueName("cpumask");
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: btf.sizeOf(ids.taskCtx!),
      maxEntries: 8,
      name,
      btfFd: btfFd.fd,
      btfKeyTypeId: ids.u32!,
      btfValueTypeId: ids.taskCtx!,
    });
    const map = accessor.mapById(mapGetInfo(fd.fd).id)!;
    const masks = [[0, 1, 2, 5], [], [4095, 4096], [7]];
    masks.forEach((cpus, pid) => {
      const value = new Uint8Array(4136);
      new DataView(value.buffer).setUint32(0, pid, true);
      value.set(maskOf(cpus, 1024), 8);
      accessor.update(
        map,
        new Uint8Array(new Uint32Array([pid]).buffer),
        value,
      );
    });
    const renderer = btfRenderer(accessor, map, (m) => {
      throw new Error(m);
    })!;
    ok(renderer.plans, "the map's types have plans");
    for (const json of [true, false]) {
      const dump = (plans: boolean): string => {
        const sink = new MemorySink();
        const out = new OutputWriter(sink);
        writeMapDump(out, accessor, map, {
          json,
          cpus: 1,
          renderer: plans ? renderer : { ...renderer, plans: undefined },
        });
        out.flush();
        return sink.text();
      };
      const planned = dump(true);
      equal(planned, dump(false), `json ${json}`);
      for (const list of ['"0-2,5"', '""', '"4095-4096"', '"7"']) {
        ok(
          planned.includes(json ? `"allowed":${list}` : `allowed = ${list}`),
          `${list} in ${json ? "JSON" : "text"}`,
        );
      }
    }
    const report = dumpState(accessor, { filter: (m) => m.id === map.id });
    const entries = report.maps[0]!.entries!;
    deepEqual(
      entries.map((e) => (e.value as { allowed: string }).allowed).sort(),
      ["", "0-2,5", "4095-4096", "7"],
    );
  },
});

/** scx_cmask and qmap's inline-storage wrapper, as scx_qmap's BTF has them. */
function cmaskBtf(): { bytes: Uint8Array; ids: { [name: string]: number } } {
  const b = new BtfBuilder();
  const u32 = b.ref(8, b.int("unsigned int", 4), "u32");
  const u64 = b.ref(8, b.int("long long unsigned int", 8), "u64");
  const cmask = b.struct("scx_cmask", 16, [
    { name: "base", type: u32, bitOffset: 0 },
    { name: "nr_cids", type: u32, bitOffset: 32 },
    { name: "alloc_words", type: u32, bitOffset: 64 },
    { name: "bits", type: b.array(u64, 0, u32), bitOffset: 128 },
  ]);
  const words = b.array(u64, 19, u32);
  const inline = b.struct("", 152, [
    { name: "mask", type: cmask, bitOffset: 0 },
    { name: "words", type: words, bitOffset: 0 },
  ], true);
  const qmapCmask = b.struct("qmap_cmask", 152, [
    { name: "", type: inline, bitOffset: 0 },
  ]);
  return { bytes: b.build(), ids: { cmask, qmapCmask } };
}

/** The cids the slow way, straight from the header's definition. */
function naiveCids(bytes: Uint8Array, end: number): string {
  const view = new DataView(bytes.buffer);
  const base = view.getUint32(0, true);
  const nr = view.getUint32(4, true);
  const alloc = view.getUint32(8, true);
  const set: number[] = [];
  for (let cid = base; cid < base + nr; cid++) {
    const word = Math.floor(cid / 64) - Math.floor(base / 64);
    if (word >= alloc || 16 + 8 * word + 8 > end) break;
    const bit = cid % 64;
    if (bytes[16 + 8 * word + (bit >> 3)]! & (1 << (bit & 7))) set.push(cid);
  }
  const parts: string[] = [];
  for (let i = 0; i < set.length;) {
    let j = i;
    while (j + 1 < set.length && set[j + 1] === set[j]! + 1) j++;
    parts.push(i === j ? `${set[i]}` : `${set[i]}-${set[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

Deno.test("cmaskValue() lists an scx_cmask's active cids from the words after its header, bounded on hostile headers", () => {
  const next = prng(0xc31d);
  for (let round = 0; round < 3000; round++) {
    const size = 16 + 8 * Math.floor(next() * 20);
    const bytes = Uint8Array.from(
      { length: size },
      () => next() < 0.4 ? 0 : Math.floor(next() * 256),
    );
    const view = new DataView(bytes.buffer);
    const hostile = round % 10 === 0;
    view.setUint32(0, hostile ? 0xffffff00 : Math.floor(next() * 300), true);
    view.setUint32(4, hostile ? 0xffffffff : Math.floor(next() * 700), true);
    view.setUint32(8, hostile ? 0xffffffff : Math.floor(next() * 24), true);
    const value = cmaskValue(bytes, 0, size);
    equal(value.cids, naiveCids(bytes, size), `round ${round}`);
  }
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 62, true); // base: the active range starts in word 0
  view.setUint32(4, 10, true); // cids 62..71
  view.setUint32(8, 3, true); // storage for 3 words, 2 present
  bytes[16 + 7] = 0xc0; // cids 62, 63
  bytes[24] = 0b101; // cids 64, 66
  deepEqual(cmaskValue(bytes, 0, 32), {
    base: 62,
    nr_cids: 10,
    alloc_words: 3,
    cids: "62-64,66",
  });
  deepEqual(cmaskValue(bytes, 0, 24), {
    base: 62,
    nr_cids: 10,
    alloc_words: 3,
    cids: "62-63",
    unread_words: 1,
  });
});

Deno.test("scx_cmask renders as its cids inside the value that holds its words; plans leave it to the renderer", () => {
  const { bytes, ids } = cmaskBtf();
  const btf = Btf.parse(bytes);
  ok(cmaskLayout(btf, ids.cmask!));
  const value = new Uint8Array(152);
  const view = new DataView(value.buffer);
  view.setUint32(0, 0, true);
  view.setUint32(4, 8, true);
  view.setUint32(8, 17, true);
  value[16] = 0b10010111;
  const rendered = renderValue(btf, ids.qmapCmask!, value) as {
    mask: unknown;
    words: bigint[];
  };
  deepEqual(rendered.mask, {
    base: 0,
    nr_cids: 8,
    alloc_words: 17,
    cids: "0-2,4,7",
  });
  equal(rendered.words[2], 0b10010111n, "the words stay shown beside it");
  equal(compileValuePlan(btf, ids.qmapCmask!, 152), undefined);
  const compat = renderValue(btf, ids.cmask!, value, { style: "bpftool" });
  deepEqual(compat, { base: 0, nr_cids: 8, alloc_words: 17, bits: [] });
});

const SCX_OBJECTS = new URL(
  "../.vm-cache/scx73/build/obj/sched_ext/",
  import.meta.url,
).pathname;

Deno.test({
  name:
    "the real 7.3 schedulers' BTF (clang-built scx_qmap, scx_central) has the cpumask and scx_cmask shapes recognised",
  ignore: !REQUIRE_ALL && !existsSync(`${SCX_OBJECTS}scx_qmap.bpf.o`),
  fn(): void {
    for (const object of ["scx_qmap", "scx_central"]) {
      const btf = btfFromElfFile(`${SCX_OBJECTS}${object}.bpf.o`);
      const cpumask = btf.findByName("cpumask", BtfKind.STRUCT)!;
      equal(cpumaskLayout(btf, cpumask.id)?.bytes, 1024, object);
      equal(
        cpumaskLayout(btf, btf.findByName("cpumask_t")!.id)?.bytes,
        1024,
      );
    }
    const qmap = btfFromElfFile(`${SCX_OBJECTS}scx_qmap.bpf.o`);
    const cmask = qmap.findByName("scx_cmask", BtfKind.STRUCT)!;
    ok(cmaskLayout(qmap, cmask.id), "scx_cmask");
    const wrapper = qmap.findByName("qmap_cmask", BtfKind.STRUCT)!;
    const value = new Uint8Array(qmap.sizeOf(wrapper.id));
    const view = new DataView(value.buffer);
    view.setUint32(4, 4, true);
    view.setUint32(8, 2, true);
    value[16] = 0b1011;
    deepEqual(
      (renderValue(qmap, wrapper.id, value) as { mask: unknown }).mask,
      { base: 0, nr_cids: 4, alloc_words: 2, cids: "0-1,3" },
    );
  },
});
