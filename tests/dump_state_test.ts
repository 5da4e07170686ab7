import { deepEqual, equal, ok } from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import { BtfBuilder } from "./btf_builder.ts";
import { assertSnapshot } from "./dump_snapshot.ts";
import { loadFixture } from "./btf_fixture.ts";
import { entryBatchesFromReads } from "../src/accessor/entry_batches.ts";
import type {
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
  BpfProgramInfo,
  EntryBatch,
  LocalStorageEntry,
  MapEntry,
  ReadProblem,
} from "../src/accessor/types.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { Btf, parseJsonExact } from "../src/btf/mod.ts";
import {
  dumpState,
  FAILURE_DUMP_SCHEMA,
  type FailureDumpReport,
  reportToJson,
  reportToText,
  writeFailureDump,
} from "../src/dump/mod.ts";

/** A program BTF with global data, a hash map value struct and a `.maps` section. */
function programBtf(): { bytes: Uint8Array; ids: Record<string, number> } {
  const b = new BtfBuilder();
  const ids: Record<string, number> = {};
  ids.u32 = b.int("unsigned int", 4);
  ids.int = b.int("int", 4, true);
  ids.u64 = b.int("unsigned long long", 8);
  ids.char = b.int("char", 1, true);
  ids.name = b.array(ids.char, 8, ids.u32);
  ids.flags = b.struct("flags", 4, [
    { name: "level", type: ids.int, bitOffset: 0, bitfieldSize: 3 },
  ]);
  ids.value = b.struct("stat", 24, [
    { name: "packets", type: ids.u64, bitOffset: 0 },
    { name: "comm", type: ids.name, bitOffset: 64 },
    { name: "fl", type: ids.flags, bitOffset: 128 },
  ]);
  ids.gInt = b.variable("g_errors", ids.int);
  ids.gName = b.variable("g_name", ids.name);
  ids.data = b.datasec(".data", 12, [
    { type: ids.gInt, offset: 0, size: 4 },
    { type: ids.gName, offset: 4, size: 8 },
  ]);
  // libbpf map definition: struct { int (*type)[1]; u32 *key; struct stat *value; }
  const typeArr = b.array(ids.int, 1, ids.u32);
  const typePtr = b.ptr(typeArr);
  const keyPtr = b.ptr(ids.u32);
  const valuePtr = b.ptr(ids.value);
  const def = b.struct("", 24, [
    { name: "type", type: typePtr, bitOffset: 0 },
    { name: "key", type: keyPtr, bitOffset: 64 },
    { name: "value", type: valuePtr, bitOffset: 128 },
  ]);
  const mapVar = b.variable("stats_by_cpu_and_reason", def);
  b.datasec(".maps", 24, [{ type: mapVar, offset: 0, size: 24 }]);
  return { bytes: b.build(), ids };
}

function info(
  partial: Partial<BpfMapInfo> & Pick<BpfMapInfo, "id" | "name" | "type">,
): BpfMapInfo {
  return {
    keySize: 4,
    valueSize: 4,
    maxEntries: 1,
    flags: 0,
    btfId: 0,
    btfKeyTypeId: 0,
    btfValueTypeId: 0,
    btfVmlinuxValueTypeId: 0,
    mapExtra: 0n,
    frozen: false,
    memlock: 0n,
    ...partial,
  };
}

function u32(n: number): Uint8Array {
  return new Uint8Array(new Uint32Array([n]).buffer);
}

function stat(packets: bigint, comm: string, level: number): Uint8Array {
  const bytes = new Uint8Array(24);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, packets, true);
  bytes.set(new TextEncoder().encode(comm), 8);
  view.setUint32(16, level & 7, true);
  return bytes;
}

/** An in-memory accessor: the dump must work through the interface alone. */
class FakeAccessor implements BpfMapAccessor {
  readonly btf = programBtf();
  readonly list: BpfMapInfo[];
  readonly kernelRelease = "9.9.9-fake-guest";
  readonly possibleCpus = 4;
  constructor() {
    const { ids } = this.btf;
    this.list = [
      info({
        id: 3,
        name: "fake.data",
        type: 2,
        valueSize: 12,
        flags: 0x400,
        btfId: 9,
        btfValueTypeId: ids.data!,
      }),
      info({
        id: 4,
        name: "stats_by_cpu_an",
        type: 1,
        valueSize: 24,
        maxEntries: 64,
        btfId: 9,
        btfKeyTypeId: ids.u32!,
        btfValueTypeId: ids.value!,
      }),
      info({ id: 5, name: "raw_array", type: 2, valueSize: 2, maxEntries: 3 }),
      info({
        id: 6,
        name: "pcpu",
        type: 6,
        valueSize: 8,
        maxEntries: 1,
        btfId: 9,
        btfKeyTypeId: ids.u32!,
        btfValueTypeId: ids.u64!,
      }),
      info({
        id: 7,
        name: "events",
        type: 27,
        keySize: 0,
        valueSize: 0,
        maxEntries: 4096,
      }),
      info({ id: 8, name: "broken", type: 1, valueSize: 4, maxEntries: 8 }),
      info({
        id: 10,
        name: "arena",
        type: 33,
        keySize: 0,
        valueSize: 0,
        maxEntries: 4,
      }),
      info({
        id: 11,
        name: "task_store",
        type: 29,
        valueSize: 4,
        maxEntries: 0,
        btfId: 9,
        btfValueTypeId: ids.int!,
      }),
      info({
        id: 12,
        name: "bad_btf",
        type: 2,
        valueSize: 4,
        maxEntries: 1,
        btfId: 77,
        btfValueTypeId: 1,
      }),
    ];
  }
  maps(): BpfMapInfo[] {
    return this.list;
  }
  findMap(suffix: string): BpfMapInfo | null {
    return this.list.find((m) => m.name.endsWith(suffix)) ?? null;
  }
  mapById(id: number): BpfMapInfo | null {
    return this.list.find((m) => m.id === id) ?? null;
  }
  iterEntryBatches(map: BpfMapInfo): Iterable<EntryBatch> {
    return entryBatchesFromReads(this, map);
  }
  readTypeDump(): null {
    return null;
  }
  problems(): readonly ReadProblem[] {
    return [];
  }
  programs(): BpfProgramInfo[] {
    return [];
  }
  programById(): BpfProgramInfo | null {
    return null;
  }
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null {
    if (map.id !== 3) return null;
    const bytes = new Uint8Array(12);
    new DataView(bytes.buffer).setInt32(0, -2, true);
    bytes.set(new TextEncoder().encode("eth0"), 4);
    return bytes.slice(offset, offset + len);
  }
  readArray(map: BpfMapInfo, key: number): Uint8Array | null {
    if (map.id === 12) return u32(1);
    return key < map.maxEntries ? new Uint8Array([key, 0xab]) : null;
  }
  *iterHashMap(map: BpfMapInfo): Iterable<MapEntry> {
    if (map.id === 8) {
      yield { key: u32(1), value: u32(2) };
      throw new Error("Map 8 vanished while being read");
    }
    for (let i = 0; i < 5; i++) {
      yield {
        key: u32(i),
        value: stat(0xffffffffffffff00n + BigInt(i), `p${i}`, i - 4),
      };
    }
  }
  readPercpuArray(
    _map: BpfMapInfo,
    key: number,
    numCpus: number = this.possibleCpus,
  ): (Uint8Array | null)[] | null {
    if (key !== 0) return null;
    return Array.from(
      { length: numCpus },
      (_, cpu) =>
        cpu === 2
          ? null
          : new Uint8Array(new BigUint64Array([BigInt(cpu) + 10n]).buffer),
    );
  }
  *iterPercpuHashMap(): Iterable<
    { key: Uint8Array; values: (Uint8Array | null)[] }
  > {}
  *iterTaskStorage(): Iterable<LocalStorageEntry> {
    yield { owner: "1234", key: u32(5), value: u32(42) };
  }
  readArenaPages(map: BpfMapInfo): ArenaPages {
    return {
      pages: [{
        index: 0,
        userAddress: 0x100000000n,
        bytes: new Uint8Array(4096),
      }],
      totalPages: map.maxEntries,
      notes: ["Only pages mapped by a process are visible"],
    };
  }
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null {
    if (map.btfId === 0) return null;
    if (map.btfId === 77) return new Uint8Array([1, 2, 3]);
    return this.btf.bytes;
  }
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null {
    const bytes = this.loadProgramBtfBytes(map);
    return bytes === null ? null : Btf.parse(bytes, base ? { base } : {});
  }
}

function fakeReport(): FailureDumpReport {
  return dumpState(new FakeAccessor(), {
    source: "fake accessor",
    kernelRelease: "6.18.0-test",
    takenAt: new Date("2025-01-02T03:04:05Z"),
    entryLimit: 3,
    numCpus: 4,
  });
}

Deno.test("dumpState() reads every map kind through the accessor interface alone", () => {
  const report = fakeReport();
  equal(report.schema, FAILURE_DUMP_SCHEMA);
  deepEqual(report.maps.map((m) => [m.id, m.kind]), [
    [3, "global-data"],
    [4, "hash"],
    [5, "array"],
    [6, "percpu-array"],
    [7, "unsupported"],
    [8, "hash"],
    [10, "arena"],
    [11, "local-storage"],
    [12, "array"],
  ]);
  const [data, hash, raw, pcpu, , broken, , , badBtf] = report.maps;
  deepEqual(data!.globals, [{ name: "g_errors", value: -2 }, {
    name: "g_name",
    value: "eth0",
  }]);
  equal(hash!.fullName, "stats_by_cpu_and_reason");
  equal(hash!.entries.length, 3);
  equal(hash!.omittedEntries, 2);
  deepEqual(hash!.entries[1], {
    key: 1,
    value: { packets: 0xffffffffffffff01n, comm: "p1", fl: { level: -3 } },
  });
  deepEqual(raw!.entries.map((e) => [e.key, e.value]), [[0, "00ab"], [
    1,
    "01ab",
  ], [2, "02ab"]]);
  deepEqual(pcpu!.entries[0]!.values!.map((v) => v.cpu), [0, 1, 3]);
  equal(broken!.entries.length, 1, "entries before the failure are kept");
  ok(broken!.errors[0]!.includes("vanished"));
  ok(badBtf!.errors[0]!.startsWith("Cannot load BTF 77"));
  equal(
    badBtf!.entries[0]!.value,
    "01000000",
    "without usable BTF the value is hex",
  );
});

Deno.test("dumpState() takes the kernel release and CPU count from the accessor, not the host", () => {
  const report = dumpState(new FakeAccessor(), { entryLimit: 1 });
  equal(report.kernelRelease, "9.9.9-fake-guest");
  const percpu = report.maps.find((m) => m.id === 6)!;
  // The fake kernel has 4 possible CPUs (CPU 2 reads as absent); this host has 2.
  deepEqual(
    [...reportToJson({ ...report, maps: [percpu] }).matchAll(/"cpu":(\d+)/g)]
      .map((m) => Number(m[1])),
    [0, 1, 3],
  );
});

Deno.test("dumpState() records a failed map listing instead of throwing", () => {
  const accessor = new FakeAccessor();
  accessor.maps = () => {
    throw new Error("Cannot walk map ids: EPERM");
  };
  const report = dumpState(accessor, { kernelRelease: "x" });
  deepEqual(report.maps, []);
  ok(report.errors[0]!.includes("EPERM"));
});

Deno.test("reportToJson() and reportToText() match their snapshots", () => {
  const report = fakeReport();
  const json = reportToJson(report, { indent: 2 });
  assertSnapshot("dump_fake_report.json", json + "\n");
  assertSnapshot("dump_fake_report.txt", reportToText(report));
  const back = parseJsonExact(json) as FailureDumpReport;
  equal(
    back.maps[1]!.entries[0]!.value &&
      (back.maps[1]!.entries[0]!.value as Record<string, unknown>).packets,
    0xffffffffffffff00n,
  );
});

Deno.test({
  name:
    "dumpState() on the live kernel shows the fixture's maps with full names and globals",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const ids = new Set([...fixture.info.values()].map((i) => i.id));
    const report = dumpState(new BpfSyscallAccessor(), {
      filter: (m) => ids.has(m.id),
      entryLimit: 2,
    });
    equal(report.maps.length, ids.size);
    const byName = new Map(report.maps.map((m) => [m.fullName ?? m.name, m]));
    ok(byName.has("kinds_array_with_a_very_long_name"));
    ok(byName.has("kinds_array_with_a_very_long_other"));
    const long = byName.get("kinds_array_with_a_very_long_name")!;
    equal(long.entries.length, 2);
    equal(long.omittedEntries, 2);
    const data = byName.get("kinds.data")!;
    equal(data.kind, "global-data");
    deepEqual(data.globals!.find((g) => g.name === "g_u64"), {
      name: "g_u64",
      value: 0xfffffffffffffff0n,
    });
    for (const map of report.maps) {
      deepEqual(map.errors, [], `${map.name} has no errors`);
    }
    const json = reportToJson(report);
    ok(json.includes('"g_u64","value":18446744073709551600'));
    JSON.parse(json);
    const text = reportToText(report);
    ok(text.includes('  g_name = "hello"'));
    ok(text.includes("full name: kinds_array_with_a_very_long_name"));
  },
});

Deno.test("dumpState() carries fullName only when the kernel name is a truncation of it", () => {
  const accessor = new FakeAccessor();
  accessor.list.push(
    info({
      id: 20,
      name: "exactly_15_char",
      fullName: "exactly_15_char",
      type: 2,
      maxEntries: 1,
    }),
    info({
      id: 21,
      name: "exactly_15_cha2",
      fullName: "exactly_15_cha2_and_more",
      type: 2,
      maxEntries: 1,
    }),
  );
  const report = dumpState(accessor, { filter: (m) => m.id >= 20 });
  deepEqual(report.maps.map((m) => m.fullName), [
    undefined,
    "exactly_15_cha2_and_more",
  ]);
  ok(!reportToJson(report).includes('"fullName":"exactly_15_char"'));
});

Deno.test({
  name:
    "the failure dump reads an empty real stack_trace map through its type reader",
  ignore: ignoreUnless("bpf"),
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.STACK_TRACE,
      keySize: 4,
      valueSize: 8 * 16,
      maxEntries: 8,
      name: "dump_stack",
    });
    const id = mapGetInfo(fd.fd).id;
    const report = dumpState(new BpfSyscallAccessor(), {
      filter: (m) => m.id === id,
    });
    equal(report.maps.length, 1);
    const [stack] = report.maps;
    equal(stack!.kind, "stack-trace");
    deepEqual(stack!.stackTrace, { buildId: false });
    deepEqual(stack!.errors, []);
    deepEqual(stack!.notes, []);
    ok(reportToText(report).includes("  (no entries)"));
  },
});

Deno.test("writeFailureDump() streams the same report dumpState() collects, JSON and text", () => {
  const options = {
    source: "fake accessor",
    kernelRelease: "6.18.0-test",
    takenAt: new Date("2025-01-02T03:04:05Z"),
    entryLimit: 3,
    numCpus: 4,
  };
  for (const format of ["json", "text"] as const) {
    const parts: string[] = [];
    const summary = writeFailureDump(
      { text: (part) => parts.push(part) },
      new FakeAccessor(),
      { ...options, format },
    );
    const streamed = parts.join("");
    if (format === "json") {
      deepEqual(
        parseJsonExact(streamed),
        parseJsonExact(reportToJson(fakeReport())),
      );
      ok(streamed.endsWith("}\n") && !streamed.slice(0, -1).includes("\n"));
    } else {
      equal(streamed, reportToText(fakeReport()));
    }
    // The broken map (8) and the bad BTF (12) are what the dump left out.
    deepEqual(summary.skipped.map((line) => /\(id (\d+)\)/.exec(line)![1]), [
      "8",
      "12",
    ]);
  }
});
