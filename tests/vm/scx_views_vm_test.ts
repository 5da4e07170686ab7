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
  type ScxDsqsView,
  type ScxDsqView,
  scxRootExitKindAddress,
  type ScxSchedulerView,
  type ScxViews,
} from "../../src/accessor/scx.ts";
import { parseEventsFile } from "../../src/accessor/scx_live.ts";
import { parseJsonExact } from "../../src/btf/json.ts";
import { Btf } from "../../src/btf/mod.ts";
import { scxLayoutFromBtf } from "../../src/guest/scx/layout.ts";
import { writeKernelBytes } from "../../src/guest/write.ts";
import { scxViewsToJson, scxViewsToText } from "../../src/dump/scx_format.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { runCli } from "../_support/cli.ts";
import { agentLine } from "./compare.ts";
import { bootUntil, ROOT, schedulersReady, SCX_BIN } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/scx_views_agent.ts`;
const ignore = ignoreUnlessCommands("qemu-system-x86_64") ||
  (!REQUIRE_ALL && !schedulersReady(["simple", "qmap"]));

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

/**
 * Corrupts the frozen guest's own sched_ext structures in place (a DSQ list
 * made a cycle or pointed nowhere, an absurd hash table size, a wild
 * scx_root, random words over the scheduler and its DSQs), reads the views
 * after each, and restores the bytes: every read ends in data or a note,
 * quickly, and the restored guest reads as before.
 */
function hostileBytes(memory: GuestMemMapAccessor, before: ScxViews): void {
  const space = memory.kernel.space;
  const layout = scxLayoutFromBtf(Btf.parse(memory.kernel.btfBytes()));
  assert.ok(typeof layout !== "string", String(layout));
  const sched = (before.root as { scheduler: { address: bigint } }).scheduler
    .address;
  const dsqs = before.dsqs as ScxDsqsView;
  const busiest = [...dsqs.user, ...dsqs.global].sort((a, b) =>
    b.tasks.length - a.tasks.length
  )[0]!;
  assert.ok(busiest.tasks.length >= 1, "no queued task to corrupt a list at");
  const firstNode = busiest.tasks[0]!.address +
    BigInt(layout.task.dsqListNode);
  let slowest = 0;
  const withWord = (
    va: bigint,
    value: bigint,
    check: (views: ScxViews) => void,
  ): void => {
    const saved = space.mustRead(va, 8, "word to corrupt").slice();
    const word = new Uint8Array(8);
    new DataView(word.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
    writeKernelBytes(space, va, word, "corruption");
    try {
      const started = performance.now();
      const views = guestScxViews(memory, { tasksPerDsq: 1000 });
      slowest = Math.max(slowest, performance.now() - started);
      check(views);
    } finally {
      writeKernelBytes(space, va, saved, "restore");
    }
  };
  const notesOf = (views: ScxViews): string =>
    [
      ...(views.dsqs as ScxDsqsView).user,
      ...(views.dsqs as ScxDsqsView).global,
    ].flatMap((d) => d.notes).join("; ");
  // a cycle: the first task's list node points at itself
  withWord(firstNode + BigInt(layout.listNext), firstNode, (views) => {
    assert.match(notesOf(views), /seen twice \(a cycle\)/);
  });
  // a pointer into nothing
  withWord(firstNode + BigInt(layout.listNext), 0xdead00000000f000n, (v) => {
    assert.match(notesOf(v), /unreadable/);
  });
  withWord(firstNode + BigInt(layout.listNext), 0x1234n, (views) => {
    assert.match(notesOf(views), /next pointer 0x0*1234/);
  });
  // a bucket table that claims four billion buckets
  const tbl = space.mustU64(
    sched + BigInt(layout.dsqHash + layout.rhtTbl),
    "dsq_hash.tbl",
  );
  withWord(tbl + BigInt(layout.tblSize), 0xffffffffn, (views) => {
    assert.match(
      (views.dsqs as { unavailable: string }).unavailable ?? notesOf(views),
      /claims 4294967295 buckets/,
    );
  });
  // a wild scx_root: no scheduler, no throw
  withWord(memory.kernel.symbol("scx_root"), 0x4141n, (views) => {
    assert.match(
      (views.events as { unavailable: string }).unavailable,
      /scx_root holds 0x0*4141, not a kernel address/,
    );
  });
  // random words over the scheduler, the busiest DSQ and its first task
  let state = 12345;
  const next = (): number => (state = (state * 1103515245 + 12345) >>> 0);
  const targets: [bigint, number][] = [
    [sched, 1224],
    [busiest.tasks[0]!.address + BigInt(layout.task.dsqListNode - 64), 256],
  ];
  for (let run = 0; run < 60; run++) {
    const [base, span] = targets[run % targets.length]!;
    const at = base + BigInt((next() % (span / 8)) * 8);
    const value = (BigInt(next()) << 32n) | BigInt(next());
    const wild = run % 3 === 0 ? value | (0xffffn << 48n) : value;
    withWord(at, wild, () => {});
  }
  assert.ok(slowest < 2000, `a corrupted read took ${slowest} ms`);
  // restored: reads as before
  assert.equal(
    scxViewsToJson(guestScxViews(memory, { tasksPerDsq: 64 })),
    scxViewsToJson(before),
  );
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
      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath, {
        writable: true, // for the hostile-bytes checks at the end, undone before resuming
      });
      const views = guestScxViews(memory, { tasksPerDsq: 64 });
      const text = scxViewsToText(views);
      const root = available(views.root, "root");
      assert.equal(root.state, running.state);
      assert.equal(root.enableSeq, BigInt(running.enableSeq));
      assert.equal(root.switchAll, running.switchAll !== "0");
      const sched = available(root.scheduler, "root scheduler");
      assert.equal(sched.ops, running.ops);
      assert.equal(sched.foundVia, "scx_root");
      assert.equal(sched.opsStruct, "sched_ext_ops");
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
        ...dsqs.bypass.map((b) => b.dsq),
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
      assert.deepEqual(
        dsqs.bypass.map((b) => [b.cpu, b.dsq.idName]),
        cpus.map((c) => [c.cpu, "SCX_DSQ_BYPASS"]),
      );
      const queued = all.flatMap((d) => d.tasks);
      const busyQueued = queued.filter((t) => running.busy.includes(t.pid));
      // 4 loops on 2 CPUs: at least 2 wait on a DSQ at any instant
      assert.ok(busyQueued.length >= 2, `busy ${running.busy}:\n${text}`);
      // and each loop is running or queued, but for one caught in between
      // (enqueue's insert and dispatch's move happen under locks, briefly)
      const busyRunning = cpus.map((c) => c.current).filter((t) =>
        t !== null && running.busy.includes(t.pid)
      );
      const seen = new Set([...busyQueued, ...busyRunning].map((t) => t!.pid));
      assert.equal(seen.size, busyQueued.length + busyRunning.length, text);
      assert.ok(seen.size >= running.busy.length - 1, text);
      for (const task of [...busyQueued, ...busyRunning]) {
        assert.equal(task!.comm, "sh");
        assert.equal(task!.weight, 100); // nice 0
        // runnable since a moment before the freeze (jiffies), not from the future
        assert.ok(task!.runnableAt <= root.jiffies!, text);
        assert.ok(root.jiffies! - task!.runnableAt < 30_000n, text);
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
      hostileBytes(memory, views);
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
    // the CLI: the same views as sections of `bpfmap scx`, JSON and text
    const json = await runCli("scx", "--guest-mem", guest.ramPath, "--json");
    assert.equal(json.code, 0, json.stderr);
    const report = parseJsonExact(json.stdout) as {
      root: { state: string; scheduler: ScxSchedulerView };
      events: { counters: unknown[] };
      cpus: { cpus: unknown[] };
      dsqs: { user: unknown[] };
    };
    assert.equal(report.root.state, "disabled");
    assert.equal(report.root.scheduler.exit?.kind.name, "SCX_EXIT_SYSRQ");
    assert.equal(report.root.scheduler.exitKindAddress, exitKindAddress);
    assert.equal(report.cpus.cpus.length, 2);
    const text = await runCli("scx", "--guest-mem", guest.ramPath);
    assert.equal(text.code, 0, text.stderr);
    const headings = text.stdout.split("\n").filter((l) => l.startsWith("-- "));
    assert.deepEqual(headings, [
      "-- active scheduler --",
      "-- root scheduler --",
      "-- events --",
      "-- cpus (rq->scx) --",
      "-- dsqs --",
    ]);
    assert.match(
      text.stdout,
      new RegExp(`exit: SCX_EXIT_SYSRQ \\(${reason}\\), exit_code 0`),
    );
    await guest.qmp.cont();
  },
});

Deno.test({
  name:
    "a scheduler that fails (scx_qmap's scx_bpf_error) shows its exit kind, reason and message from frozen RAM as dmesg prints them",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert.ok(
      schedulersReady(["qmap"]),
      "7.3 kernel or scx_qmap missing: run `sh tools/vm/setup.sh` first",
    );
    await using guest = await bootUntil(
      {
        kernel: "k73",
        agent: AGENT,
        agentArgs: ["error"],
        binaries: [`${SCX_BIN}/scx_qmap`],
        singleThreadTcg: true,
      },
      /BPFMAP-SCXV-ERRORED [^\n]*\n|BPFMAP-AGENT-ERROR [^\n]*\n/,
      240_000,
    );
    await guest.qmp.stop();
    const consoleText = guest.console();
    assert.ok(
      !consoleText.includes("BPFMAP-AGENT-ERROR"),
      consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
    );
    const errored = agentLine(consoleText, "SCXV-ERRORED") as {
      state: string;
      dmesg: string[];
    };
    assert.equal(errored.state, "disabled");
    // pr_err("sched_ext: BPF scheduler \"qmap\" disabled (%s)", ei->reason),
    // then pr_err("sched_ext: qmap: %s", ei->msg)
    const reason = errored.dmesg.map((l) =>
      /BPF scheduler "qmap" disabled \((.*)\)\s*$/.exec(l)?.[1]
    ).find((r) => r !== undefined);
    const msg = errored.dmesg.map((l) =>
      /sched_ext: qmap: (.*?)\s*$/.exec(l)?.[1]
    )
      .find((m) => m !== undefined);
    assert.ok(reason && msg, errored.dmesg.join("\n"));
    using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
    const views = guestScxViews(memory);
    const text = scxViewsToText(views);
    const root = available(views.root, "root");
    assert.equal(root.state, "disabled");
    const sched = available(root.scheduler, "failed scheduler");
    assert.equal(sched.ops, "qmap");
    assert.equal(sched.opsStruct, "sched_ext_ops_cid"); // qmap_ops is cid-form
    assert.match(sched.foundVia, /^struct_ops map \d+ \(qmap_ops\) ops\.priv$/);
    assert.equal(sched.exit?.kind.name, "SCX_EXIT_ERROR_BPF", text);
    assert.equal(sched.exit?.reason, reason);
    assert.equal(sched.exit?.msg, msg);
    assert.match(msg, /test triggering error$/); // scx_bpf_error() prefixes file:line
    assert.equal(sched.timeoutMs, 5000); // qmap_ops.timeout_ms
    assert.ok(text.includes(`\n  msg: ${msg}\n`), text);
    await guest.qmp.cont();
  },
});
