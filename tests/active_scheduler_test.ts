/**
 * The active-scheduler decision, `bpfmap scx` and the failure report's
 * schema 3 sections on the live host kernel. The host (6.18) runs no
 * sched_ext scheduler, so here the decision must say so and the report must
 * carry it as unavailable; the decision on a real scheduler and the swap
 * window are proven in tests/vm/scx_swap_vm_test.ts.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { activeScheduler } from "../src/accessor/active_scheduler.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type { BpfProgramInfo } from "../src/accessor/types.ts";
import { parseJsonExact } from "../src/btf/mod.ts";
import {
  diffReports,
  diffToText,
  dumpState,
  FAILURE_DUMP_SCHEMA,
  type FailureDumpReport,
  isUnavailable,
  reportsDiffer,
  reportToJson,
  reportToText,
} from "../src/dump/mod.ts";
import { MapType } from "../src/sys/constants.ts";
import { loadTrivialProgram } from "./_support/bpf_prog.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";

const ignore = ignoreUnlessRoot();

/** The root ops name sysfs shows, when this kernel runs a scheduler. */
function sysfsRootOps(): string | null {
  try {
    return Deno.readTextFileSync("/sys/kernel/sched_ext/root/ops").trim();
  } catch {
    return null;
  }
}

Deno.test({
  name:
    "activeScheduler on the live kernel: no scheduler attached is rule none, with the reason; an attached one is found by struct_ops",
  ignore,
  fn(): void {
    const decision = activeScheduler(new BpfSyscallAccessor());
    const ops = sysfsRootOps();
    if (ops === null) {
      equal(decision.rule, "none");
      match(decision.reason, /^no sched_ext scheduler attached/);
      deepEqual(decision.activeMapIds, []);
      deepEqual(decision.outgoingMapIds, []);
      equal(decision.structOpsMapId, null);
    } else {
      equal(decision.rule, "struct_ops", decision.reason);
      equal(decision.opsName, ops);
    }
  },
});

Deno.test({
  name:
    "failure report schema 3, live: scheduler section first (unavailable without a scheduler), every program with exact run stats",
  ignore,
  fn(): void {
    using created = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 1,
      name: "sxa_report",
    });
    using program = loadTrivialProgram("sxa_prog");
    const accessor = new BpfSyscallAccessor();
    const mine = accessor.programs().find((p) => p.name === "sxa_prog");
    ok(mine, "the loaded program is listed");
    const mapId = accessor.maps().find((m) => m.name === "sxa_report")!.id;
    const report = dumpState(accessor, { filter: (m) => m.id === mapId });
    equal(report.schema, FAILURE_DUMP_SCHEMA);
    equal(report.schema, "bpfmap.failure-dump/3");
    ok(!isUnavailable(report.programs));
    const listed = (report.programs as BpfProgramInfo[]).find((p) =>
      p.id === mine.id
    );
    deepEqual(listed?.tag, mine.tag);
    equal(typeof listed?.loadTime, "bigint");
    if (sysfsRootOps() === null) {
      ok(isUnavailable(report.scheduler.active));
      match(
        (report.scheduler.active as { unavailable: string }).unavailable,
        /no sched_ext scheduler attached/,
      );
      equal(report.maps[0]!.role, undefined, "no map has a role");
    }
    // u64 exact through JSON: load time (ns since boot) is beyond 2^53 only
    // after 104 days, so compare as bigint either way.
    const back = parseJsonExact(reportToJson(report)) as FailureDumpReport;
    const again = (back.programs as BpfProgramInfo[]).find((p) =>
      p.id === mine.id
    )!;
    equal(BigInt(again.loadTime), mine.loadTime);
    deepEqual(back.scheduler, report.scheduler);
    const text = reportToText(report);
    const schedulerAt = text.indexOf("== sched_ext scheduler ==");
    ok(schedulerAt > 0, text.slice(0, 400));
    ok(schedulerAt < text.indexOf("== map "), "scheduler before the maps");
    match(
      text,
      new RegExp(`^  prog ${mine.id} sxa_prog \\(socket_filter\\)`, "m"),
    );
    void created;
    void program;
  },
});

Deno.test({
  name:
    "bpfmap diff between two schema 3 reports: a program loaded in between is an added program, by id",
  ignore,
  fn(): void {
    const accessor = new BpfSyscallAccessor();
    const none = () => false;
    const before = parseJsonExact(
      reportToJson(dumpState(accessor, { filter: none })),
    );
    using program = loadTrivialProgram("sxa_diff");
    const after = parseJsonExact(
      reportToJson(dumpState(accessor, { filter: none })),
    );
    const id = accessor.programs().find((p) => p.name === "sxa_diff")!.id;
    const diff = diffReports(before, after);
    const added = diff.programs.find((p) => p.id === id);
    deepEqual(added, { id, name: "sxa_diff", status: "added", changes: [] });
    ok(reportsDiffer(diff));
    match(
      diffToText(diff),
      new RegExp(`^\\+ prog ${id} "sxa_diff": only in the second report$`, "m"),
    );
    ok(
      !diff.report.some((c) => c.path.startsWith("/programs")),
      "programs are diffed by id, not as one array",
    );
    void program;
  },
});

Deno.test({
  name:
    "bpfmap scx: the active-scheduler section, text and exact JSON; usage errors exit 2",
  ignore,
  async fn(): Promise<void> {
    const json = await runCli("scx", "--json");
    equal(json.code, 0, json.stderr);
    const parsed = parseJsonExact(json.stdout) as {
      active: { unavailable?: string; rule?: string };
    };
    deepEqual(Object.keys(parsed), ["active"]);
    const text = await runCli("scx");
    equal(text.code, 0, text.stderr);
    match(text.stdout, /^sched_ext on live kernel\n-- active scheduler --\n/);
    if (sysfsRootOps() === null) {
      match(parsed.active.unavailable ?? "", /no sched_ext scheduler attached/);
      match(text.stdout, /^ {2}unavailable: no sched_ext scheduler attached/m);
    } else {
      equal(parsed.active.rule, "struct_ops");
    }
    const extra = await runCli("scx", "extra");
    equal(extra.code, 2);
    match(extra.stderr, /bpfmap scx --help/);
    const help = await runCli("scx", "--help");
    equal(help.code, 0);
    match(help.stdout, /^Usage: bpfmap scx \[--json\]/);
  },
});
