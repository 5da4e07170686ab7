import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { parseJsonExact } from "../src/btf/json.ts";
import {
  diffReports,
  diffToJson,
  diffToText,
  REPORT_DIFF_SCHEMA,
  ReportFormatError,
  reportsDiffer,
} from "../src/dump/diff.ts";
import { dumpState } from "../src/dump/dump_state.ts";
import { reportToJson } from "../src/dump/format.ts";
import { mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";
import { u32, u64, uniqueName } from "./_support/maps.ts";

function report(maps: unknown[], extra: Record<string, unknown> = {}): unknown {
  return {
    schema: "bpfmap.failure-dump/1",
    takenAt: "2026-01-01T00:00:00.000Z",
    kernelRelease: "7.3.4",
    maps,
    errors: [],
    ...extra,
  };
}

function map(
  id: number,
  name: string,
  fields: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    id,
    name,
    type: 1,
    typeName: "hash",
    omittedEntries: 0,
    entries: [],
    notes: [],
    errors: [],
    ...fields,
  };
}

Deno.test("diffReports() names each changed leaf of each entry, exactly (u64 beyond 2^53)", () => {
  const before = report([
    map(3, "stats", {
      entries: [
        { key: 1, value: { packets: 18446744073709551360n, comm: "a" } },
        { key: 2, value: { packets: 5, comm: "b" } },
      ],
    }),
  ]);
  const after = report([
    map(3, "stats", {
      entries: [
        { key: 1, value: { packets: 18446744073709551361n, comm: "a" } },
        { key: 3, value: { packets: 7, comm: "c" } },
      ],
    }),
  ]);
  const diff = diffReports(before, after);
  equal(diff.schema, REPORT_DIFF_SCHEMA);
  equal(diff.changedMaps.length, 1);
  deepEqual(diff.changedMaps[0]!.entries, [
    {
      key: 1,
      status: "changed",
      changes: [{
        path: "/value/packets",
        before: 18446744073709551360n,
        after: 18446744073709551361n,
      }],
    },
    { key: 2, status: "removed", changes: [] },
    { key: 3, status: "added", changes: [] },
  ]);
  // The JSON form keeps the digits; the text form shows one leaf per line.
  match(diffToJson(diff), /18446744073709551361/);
  match(
    diffToText(diff),
    /~ key 1\n {8}\/value\/packets: 18446744073709551360 -> 18446744073709551361\n/,
  );
  ok(reportsDiffer(diff));
});

Deno.test("diffReports() pairs same-named maps by id first, then by name when ids differ", () => {
  // Two copies of one .bss (the swap window) in the first report; one
  // survives with its id, and a new run's copy appears under another id.
  const before = report([
    map(10, "scx_simp.bss", { type: 2, typeName: "array" }),
    map(11, "scx_simp.bss", { type: 2, typeName: "array" }),
    map(12, "gone"),
  ]);
  const after = report([
    map(11, "scx_simp.bss", { type: 2, typeName: "array" }),
    map(20, "scx_simp.bss", { type: 2, typeName: "array" }),
    map(21, "new"),
  ]);
  const diff = diffReports(before, after);
  equal(diff.unchangedMaps, 1); // id 11 in both
  deepEqual(
    diff.changedMaps.map((m) => [m.idBefore, m.idAfter, m.name]),
    [[10, 20, "scx_simp.bss"]],
  );
  deepEqual(diff.removedMaps.map((m) => m.id), [12]);
  deepEqual(diff.addedMaps.map((m) => m.id), [21]);
});

Deno.test("diffReports() does not call entries beyond a report's entry limit removed", () => {
  const before = report([
    map(1, "h", { entries: [{ key: 1, value: 1 }], omittedEntries: 5 }),
  ]);
  const after = report([
    map(1, "h", { entries: [{ key: 2, value: 1 }], omittedEntries: 5 }),
  ]);
  const change = diffReports(before, after).changedMaps[0]!;
  deepEqual(change.entries, []);
  equal(change.uncomparedEntries, 2);
});

Deno.test("diffReports() compares globals by variable and report sections it does not know", () => {
  const before = report(
    [map(4, "x.bss", {
      type: 2,
      globals: [{ name: "nr_queued", value: 3 }, {
        name: "mask",
        value: [1, 2],
      }],
    })],
    { scheduler: { exitKind: "NONE" } },
  );
  const after = report(
    [map(4, "x.bss", {
      type: 2,
      globals: [{ name: "nr_queued", value: 4 }, {
        name: "mask",
        value: [1, 2, 3],
      }],
    })],
    { scheduler: { exitKind: "ERROR_STALL" }, takenAt: "2026-01-01T00:00:01Z" },
  );
  const diff = diffReports(before, after);
  deepEqual(diff.report.map((c) => c.path).sort(), [
    "/scheduler/exitKind",
    "/takenAt",
  ]);
  deepEqual(diff.changedMaps[0]!.globals, [
    { path: "/nr_queued", before: 3, after: 4 },
    { path: "/mask/2", after: 3 },
  ]);
});

Deno.test("diffReports() refuses input that is not a report, naming which", () => {
  throws(
    () => diffReports(report([]), [1, 2], ["a.json", "b.json"]),
    (error: unknown) =>
      error instanceof ReportFormatError &&
      /^b\.json is not a bpfmap failure-dump report/.test(error.message),
  );
  // Equal reports (but for the time) do not differ.
  ok(
    !reportsDiffer(
      diffReports(
        report([map(1, "a")]),
        report([map(1, "a")], { takenAt: "x" }),
      ),
    ),
  );
});

Deno.test({
  name:
    "diffReports() on two real dumps of live maps shows exactly the writes made in between",
  ignore: ignoreUnlessRoot(),
  fn(): void {
    const accessor = new BpfSyscallAccessor();
    using hash = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: 16,
      name: uniqueName("diffh"),
    });
    using array = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 2,
      name: uniqueName("diffa"),
    });
    const ids = new Set([mapGetInfo(hash.fd).id, mapGetInfo(array.fd).id]);
    mapUpdateElem(hash.fd, u32(1), u64(10n));
    mapUpdateElem(hash.fd, u32(2), u64(20n));
    const capture = (): unknown =>
      parseJsonExact(
        reportToJson(dumpState(accessor, { filter: (m) => ids.has(m.id) })),
      );
    const early = capture();
    mapUpdateElem(hash.fd, u32(2), u64(21n));
    mapUpdateElem(hash.fd, u32(3), u64(30n));
    mapUpdateElem(array.fd, u32(1), u64(0xffffffffffffffffn));
    const late = capture();
    const diff = diffReports(early, late);
    equal(diff.unchangedMaps, 0);
    equal(diff.addedMaps.length + diff.removedMaps.length, 0);
    const byId = new Map(diff.changedMaps.map((m) => [m.idBefore, m]));
    const hashChange = byId.get(mapGetInfo(hash.fd).id)!;
    deepEqual(hashChange.entries, [
      {
        key: "02000000",
        status: "changed",
        changes: [{
          path: "/value",
          before: "1400000000000000",
          after: "1500000000000000",
        }],
      },
      { key: "03000000", status: "added", changes: [] },
    ]);
    const arrayChange = byId.get(mapGetInfo(array.fd).id)!;
    // Array entries are keyed by index in the report.
    deepEqual(arrayChange.entries, [{
      key: 1,
      status: "changed",
      changes: [{
        path: "/value",
        before: "0000000000000000",
        after: "ffffffffffffffff",
      }],
    }]);
  },
});

Deno.test({
  name:
    "bpfmap diff: two real dumps written by the CLI, text and JSON; bad files are one line",
  ignore: ignoreUnlessRoot(),
  async fn(): Promise<void> {
    using hash = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: 4,
      name: uniqueName("diffc"),
    });
    const dir = await Deno.makeTempDir();
    try {
      mapUpdateElem(hash.fd, u32(7), u64(1n));
      const before = await runCli("dump", "--json", "--partial");
      equal(before.code, 0, before.stderr);
      await Deno.writeTextFile(`${dir}/a.json`, before.stdout);
      mapUpdateElem(hash.fd, u32(7), u64(2n));
      const after = await runCli("dump", "--json", "--partial");
      await Deno.writeTextFile(`${dir}/b.json`, after.stdout);

      const text = await runCli("diff", `${dir}/a.json`, `${dir}/b.json`);
      equal(text.code, 0, text.stderr);
      const id = mapGetInfo(hash.fd).id;
      match(
        text.stdout,
        new RegExp(
          `~ map ${id} "diffc[^"]*":\\n(?:.*\\n)*? {4}~ key "07000000"\\n {8}/value: "0100000000000000" -> "0200000000000000"\\n`,
        ),
      );
      const json = await runCli(
        "diff",
        "--json",
        `${dir}/a.json`,
        `${dir}/b.json`,
      );
      const parsed = parseJsonExact(json.stdout) as {
        schema: string;
        changedMaps: { idBefore: number }[];
      };
      equal(parsed.schema, REPORT_DIFF_SCHEMA);
      ok(parsed.changedMaps.some((m) => m.idBefore === id));

      await Deno.writeTextFile(`${dir}/bad.json`, "{not json");
      for (
        const [args, code, pattern] of [
          [
            [`${dir}/missing.json`, `${dir}/b.json`],
            1,
            /missing\.json: no such file/,
          ],
          [[`${dir}/bad.json`, `${dir}/b.json`], 1, /bad\.json is not JSON/],
          [[`${dir}`, `${dir}/b.json`], 1, /it is a directory/],
          [[`${dir}/a.json`], 2, /diff takes two report files/],
        ] as const
      ) {
        const run = await runCli("diff", ...args);
        equal(run.code, code, run.stderr);
        equal(run.stdout, "");
        match(run.stderr, pattern);
        equal(run.stderr.trim().split("\n").length, 1);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
