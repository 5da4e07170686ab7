/**
 * sched_ext views from a frozen 7.3 guest's RAM, checked against what the
 * guest itself says: scx_simple (the kernel's own, started by its C loader)
 * runs with busy loops; the agent reads `/sys/kernel/sched_ext` and the host
 * freezes the guest right after. The RAM views must name the same state and
 * ops, the same event counters (in the same order, each at least the
 * agent's: they only grow), and show the busy loops on the runqueues and
 * DSQs with their pid and comm. Then the guest disables the scheduler with
 * sysrq-S while its loader is stopped: the frozen RAM must show the exit as
 * the guest's dmesg line names it.
 *
 * Needs `sh tools/vm/setup.sh` (root). About 30 s on 2 cores.
 */

import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import {
  guestScxViews,
  type ScxDsqView,
  scxRootExitKindAddress,
  type ScxViews,
} from "../../src/accessor/scx.ts";
import { parseEventsFile } from "../../src/accessor/scx_live.ts";
import { parseJsonExact } from "../../src/btf/json.ts";
import { scxViewsToJson, scxViewsToText } from "../../src/dump/scx_format.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { agentLine } from "./compare.ts";
import { bootUntil, ROOT, schedulersReady, SCX_BIN } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/scx_views_agent.ts`;
const ignore = ignoreUnlessCommands("qemu-system-x86_64") ||
  (!REQUIRE_ALL && !schedulersReady(["simple"]));

function available<T extends object>(
  section: T | { unavailable: string },
  what: string,
): T {
  assert.ok(
    !("unavailable" in section),
    `${what} unavailable: ${(section as { unavailable: string }).unavailable}`,
  );
  return section as T;
}

Deno.test({
  name:
    "scx views from a frozen 7.3 guest match its sysfs while scx_simple runs, and name its sysrq-S exit as dmesg does",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert.ok(
      schedulersReady(["simple"]),
      "7.3 kernel or scx_simple missing: run `sh tools/vm/setup.sh` first",
    );
    await using guest = await bootUntil(
      {
        kernel: "k73",
        agent: AGENT,
        binaries: [`${SCX_BIN}/scx_simple`],
        singleThreadTcg: true,
      },
      /BPFMAP-SCXV-RUNNING [^\n]*\n|BPFMAP-AGENT-ERROR [^\n]*\n/,
      180_000,
    );
    let consoleText = guest.console();
    assert.ok(
      !consoleText.includes("BPFMAP-AGENT-ERROR"),
      consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
    );
    await guest.qmp.stop();
    const running = agentLine(consoleText, "SCXV-RUNNING") as {
      state: string;
      ops: string;
      events: string;
      enableSeq: string;
      switchAll: string;
      busy: number[];
      live: string;
    };
    assert.equal(running.state, "enabled");
    assert.equal(running.ops, "simple");
    let exitKindAddress: bigint;
    {
      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
      const views = guestScxViews(memory, { tasksPerDsq: 64 });
      const text = scxViewsToText(views);
      const root = available(views.root, "root");
      assert.equal(root.state, running.state);
      assert.equal(root.enableSeq, BigInt(running.enableSeq));
      assert.equal(root.switchAll, running.switchAll !== "0");
      const sched = available(root.scheduler, "root scheduler");
      assert.equal(sched.ops, running.ops);
      assert.equal(sched.foundVia, "scx_root");
      assert.equal(sched.exitKind?.name, "SCX_EXIT_NONE");
      // scx_simple sets no timeout_ms: the kernel's SCX_WATCHDOG_MAX_TIMEOUT (30 s) applies
      assert.equal(sched.timeoutMs, 0);
      assert.ok((sched.watchdogTimeoutJiffies ?? 0n) >= 30n * 100n, text);
      exitKindAddress = scxRootExitKindAddress(memory);
      assert.equal(exitKindAddress, sched.exitKindAddress);

      // the events file's names, in its order; RAM counts are at least the agent's
      const sysfs = parseEventsFile(running.events);
      const events = available(views.events, "events").counters;
      assert.ok(sysfs.length >= 10, running.events);
      assert.deepEqual(events.map((c) => c.name), sysfs.map((c) => c.name));
      for (const [i, c] of sysfs.entries()) {
        assert.ok(
          events[i]!.value >= c.value,
          `${c.name}: RAM ${events[i]!.value} < sysfs ${c.value} read earlier`,
        );
      }
      // and the live backend, run in the guest, read the same file the same way
      const live = parseJsonExact(running.live) as ScxViews;
      assert.equal(live.source, "live");
      assert.deepEqual(
        available(live.events, "live events").counters.map((c) => c.name),
        sysfs.map((c) => c.name),
      );
      assert.equal(
        available(available(live.root, "live root").scheduler, "live sched")
          .ops,
        "simple",
      );
      assert.match(
        (live.cpus as { unavailable: string }).unavailable,
        /does not expose it in sysfs/,
      );

      // every busy loop is running or waiting; the waiting ones are on a DSQ
      const cpus = available(views.cpus, "cpus").cpus;
      assert.equal(cpus.length, 2);
      const dsqs = available(views.dsqs, "dsqs");
      const shared = dsqs.user.find((d) => d.id === 0n);
      assert.ok(shared, `scx_simple's SHARED_DSQ (id 0) missing:\n${text}`);
      assert.equal(dsqs.global.length >= 1, true);
      assert.equal(dsqs.global[0]!.idName, "SCX_DSQ_GLOBAL");
      const all: ScxDsqView[] = [
        ...cpus.map((c) => c.localDsq),
        ...dsqs.global,
        ...dsqs.user,
      ];
      for (const dsq of all) {
        assert.equal(dsq.notes.length, 0, `${dsq.id}: ${dsq.notes}`);
        assert.equal(dsq.tasks.length, Math.min(dsq.nr, 64), text);
        for (const task of dsq.tasks) {
          assert.equal(task.dsqId, dsq.id, text);
          assert.ok(task.flagNames.includes("SCX_TASK_QUEUED"), text);
        }
      }
      for (const cpu of cpus) {
        assert.equal(cpu.localDsq.idName, "SCX_DSQ_LOCAL");
        assert.ok(cpu.nrRunning >= cpu.localDsq.nr, text);
      }
      const queued = all.flatMap((d) => d.tasks);
      const busyQueued = queued.filter((t) => running.busy.includes(t.pid));
      // 4 loops on 2 CPUs: at least 2 wait on a DSQ at any instant
      assert.ok(busyQueued.length >= 2, `busy ${running.busy}:\n${text}`);
      for (const task of busyQueued) {
        assert.equal(task.comm, "sh");
        assert.equal(task.weight, 100); // nice 0
      }
      // scx_simple's vtime mode queues the shared DSQ by dsq_vtime
      const vtimes = shared.tasks.map((t) => t.dsqVtime);
      assert.deepEqual(vtimes, [...vtimes].sort((a, b) => (a < b ? -1 : 1)));
      // JSON: u64 exact
      const json = parseJsonExact(scxViewsToJson(views)) as ScxViews;
      assert.equal(
        (json.root as { scheduler: { exitKindAddress: bigint } }).scheduler
          .exitKindAddress,
        exitKindAddress,
      );
      assert.match(text, /^sched_ext: enabled/);
      assert.match(text, /root scheduler: simple/);
    }
    await guest.qmp.cont();

    // Phase 2: sysrq-S while the loader is stopped; freeze once it is disabled.
    await guest.waitFor(
      /BPFMAP-SCXV-EXITED [^\n]*\n|BPFMAP-AGENT-ERROR [^\n]*\n/,
      60_000,
    );
    await guest.qmp.stop();
    consoleText = guest.console();
    assert.ok(
      !consoleText.includes("BPFMAP-AGENT-ERROR"),
      consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
    );
    const exited = agentLine(consoleText, "SCXV-EXITED") as {
      state: string;
      dmesg: string;
      live: string;
    };
    assert.equal(exited.state, "disabled");
    const reason = /disabled \((.*)\)\s*$/.exec(exited.dmesg)?.[1];
    assert.ok(reason, `no disable line in dmesg: ${exited.dmesg}`);
    const liveAfter = parseJsonExact(exited.live) as ScxViews;
    assert.match(
      (available(liveAfter.root, "live root").scheduler as {
        unavailable: string;
      }).unavailable,
      /no scheduler attached/,
    );
    {
      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
      const views = guestScxViews(memory);
      const text = scxViewsToText(views);
      const root = available(views.root, "root");
      assert.equal(root.state, "disabled");
      const sched = available(root.scheduler, "exited scheduler");
      assert.match(
        sched.foundVia,
        /^struct_ops map \d+ \(simple_ops\) ops\.priv$/,
      );
      assert.equal(sched.ops, "simple");
      assert.equal(sched.exitKindAddress, exitKindAddress);
      // scx_disable_workfn() moves exit_kind to DONE and records the kind in exit_info
      assert.equal(sched.exitKind?.name, "SCX_EXIT_DONE");
      assert.equal(sched.exit?.kind.name, "SCX_EXIT_SYSRQ", text);
      assert.equal(sched.exit?.reason, reason);
      assert.match(text, /exit: SCX_EXIT_SYSRQ \(disabled by sysrq-S\)/);
      assert.throws(
        () => scxRootExitKindAddress(memory),
        /no scheduler attached \(scx_root is NULL\)/,
      );
    }
    await guest.qmp.cont();
  },
});
