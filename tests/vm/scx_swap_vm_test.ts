/**
 * The sched_ext swap window, reproduced in a 7.3 guest with the kernel's
 * own scx_simple (see scx_swap_agent.ts): instance A runs, a holder keeps
 * A's `scx_simp.bss`, A stops and instance B starts. The host freezes the
 * guest and reads its RAM: both `.bss` copies are there and readable, the
 * active one is B's by rule struct_ops, A's is outgoing and still reads as
 * bpf() read it after A's programs are gone; the decision from RAM is the
 * one the live backend made in the guest, the struct_ops map is typed alike
 * by both backends, the failure report marks the roles, and
 * `bpfmap scx --guest-mem` (and `--guest-pid --qmp`) prints the same
 * decision. Then B stops with its ops map held (registered, no link): both
 * backends fall back to the name rule, and agree.
 *
 * Needs `sh tools/vm/setup.sh` (root). About 30 s on 2 cores.
 */

import assert from "node:assert/strict";
import { activeScheduler } from "../../src/accessor/active_scheduler.ts";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { parseJsonExact } from "../../src/btf/mod.ts";
import { dumpState, isUnavailable, reportToText } from "../../src/dump/mod.ts";
import { MapType } from "../../src/sys/constants.ts";
import { runCli } from "../_support/cli.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { agentLine } from "./compare.ts";
import { bootUntil, ROOT, schedulersReady, SCX_BIN } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/scx_swap_agent.ts`;

const ignore = ignoreUnlessCommands("qemu-system-x86_64") ||
  (!REQUIRE_ALL && !schedulersReady(["simple"]));

interface Decision {
  opsName: string | null;
  enableState: string | null;
  opsStruct: string | null;
  structOpsMapId: number | null;
  structOpsState: string | null;
  attachedProgramIds: number[];
  activeMapIds: number[];
  outgoingMapIds: number[];
  rule: string;
  reason: string;
}

interface SwapLive {
  enabledMs: number;
  aExitCode: number;
  aBssId: number;
  decision: Decision;
  ops: unknown;
  bss: { id: number; value: string }[];
  aProgramsGone: number;
  state: string;
  "ops_name": string;
}

const hexOf = (b: Uint8Array | null): string | null =>
  b === null ? null : Array.from(b, (x) => x.toString(16).padStart(2, "0"))
    .join("");

/** The decision without what only one backend can know (sysfs's state) or words. */
function facts(decision: Decision): Omit<Decision, "enableState" | "reason"> {
  const { enableState: _state, reason: _reason, ...rest } = decision;
  return rest;
}

Deno.test({
  name:
    "scx_simple swap window on 7.3: both .bss copies read from RAM, the active one by struct_ops, the held one outgoing, live and RAM agree",
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
      /BPFMAP-SWAP-READY|BPFMAP-AGENT-ERROR [^\n]*\n/,
      180_000,
    );
    const consoleText = guest.console();
    assert.ok(
      !consoleText.includes("BPFMAP-AGENT-ERROR"),
      consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
    );
    const whileA = agentLine(consoleText, "SWAP-A") as unknown as {
      decision: Decision;
      aBssId: number;
    };
    const live = agentLine(consoleText, "SWAP-LIVE") as unknown as SwapLive;
    // In the guest, while A ran: A is the scheduler, its .bss is active.
    assert.equal(whileA.decision.rule, "struct_ops", whileA.decision.reason);
    assert.ok(whileA.decision.activeMapIds.includes(whileA.aBssId));
    assert.equal(live.aExitCode, 0, "A's loader exited cleanly on SIGINT");
    assert.equal(live.state, "enabled");
    assert.equal(live.aProgramsGone, whileA.decision.attachedProgramIds.length);
    assert.equal(
      live.bss.length,
      2,
      "two scx_simp.bss maps in the swap window",
    );
    const bBssId = live.bss.find((copy) => copy.id !== live.aBssId)!.id;
    // The live backend's decision in the guest, with B running.
    assert.equal(live.decision.rule, "struct_ops", live.decision.reason);
    assert.equal(live.decision.opsName, "simple");
    assert.equal(live.decision.opsName, live.ops_name);
    assert.equal(live.decision.enableState, "enabled");
    assert.equal(live.decision.opsStruct, "sched_ext_ops");
    assert.equal(live.decision.structOpsState, "BPF_STRUCT_OPS_STATE_READY");
    assert.ok(live.decision.activeMapIds.includes(bBssId));
    assert.deepEqual(live.decision.outgoingMapIds, [live.aBssId]);
    assert.ok(live.decision.attachedProgramIds.length > 0);
    for (const id of live.decision.attachedProgramIds) {
      assert.ok(
        !whileA.decision.attachedProgramIds.includes(id),
        `program ${id} is B's, not A's`,
      );
    }

    await guest.qmp.stop();
    const frozenAt = performance.now();
    using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
    const copies = memory.maps().filter((m) => m.name === "scx_simp.bss");
    assert.deepEqual(
      copies.map((m) => m.id).sort((x, y) => x - y),
      live.bss.map((c) => c.id).sort((x, y) => x - y),
      "both .bss copies visible from RAM",
    );
    for (const copy of copies) {
      const value = memory.readArray(copy, 0);
      assert.ok(value, `.bss ${copy.id} readable from RAM`);
      if (copy.id === live.aBssId) {
        // Nothing writes A's copy any more: RAM holds what bpf() read.
        assert.equal(
          hexOf(value),
          live.bss.find((c) => c.id === copy.id)!.value,
          "A's .bss reads from RAM as bpf() read it, after A's programs are gone",
        );
      }
    }
    const ramPrograms = new Set(memory.programs().map((p) => p.id));
    for (const id of whileA.decision.attachedProgramIds) {
      assert.ok(!ramPrograms.has(id), `A's program ${id} is gone from RAM`);
    }

    // The decision from RAM is the one bpf() made in the guest.
    const fromRam = activeScheduler(memory) as Decision;
    assert.equal(fromRam.enableState, null, "a guest's sysfs is not read");
    assert.deepEqual(facts(fromRam), facts(live.decision), fromRam.reason);
    assert.deepEqual(fromRam.outgoingMapIds, [live.aBssId]);
    assert.ok(fromRam.activeMapIds.includes(bBssId));

    // The struct_ops map, typed by the guest backend exactly as the live one.
    const opsMap = memory.mapById(fromRam.structOpsMapId!)!;
    assert.equal(opsMap.type, MapType.STRUCT_OPS);
    const typed = memory.readTypeDump(opsMap);
    assert.equal(typed?.reader, "struct_ops");
    if (typed?.reader !== "struct_ops") return;
    const { structName, state, refcnt, members } = typed.structOps;
    assert.deepEqual(
      JSON.parse(
        JSON.stringify(
          { structName, state, refcnt, members },
          (_, v) => typeof v === "bigint" ? v.toString() : v,
        ),
      ),
      live.ops,
    );

    // The failure report marks the roles; text shows the scheduler first.
    const report = dumpState(memory, {
      filter: (m) => m.name === "scx_simp.bss",
      source: "frozen guest",
    });
    const roles = new Map(report.maps.map((m) => [m.id, m.role]));
    assert.equal(roles.get(bBssId), "active");
    assert.equal(roles.get(live.aBssId), "outgoing");
    assert.ok(!isUnavailable(report.scheduler.active));
    assert.ok(!isUnavailable(report.programs));
    const text = reportToText(report);
    assert.match(
      text,
      new RegExp(
        `== map ${live.aBssId} scx_simp\\.bss \\(array, global data\\) \\[outgoing\\] ==`,
      ),
    );
    assert.ok(
      text.indexOf("== sched_ext scheduler ==") < text.indexOf("== map "),
    );
    const hostMs = performance.now() - frozenAt;

    // The CLI on the frozen guest's RAM file.
    const cli = await runCli("scx", "--guest-mem", guest.ramPath, "--json");
    assert.equal(cli.code, 0, cli.stderr);
    const printed = parseJsonExact(cli.stdout) as { active: Decision };
    assert.deepEqual(printed.active, fromRam);
    const cliText = await runCli("scx", "--guest-mem", guest.ramPath);
    assert.equal(cliText.code, 0, cliText.stderr);
    assert.match(cliText.stdout, /^ {2}ops: {7}simple \(sched_ext_ops\)$/m);
    assert.match(cliText.stdout, /^ {2}rule: {6}struct_ops: /m);
    assert.match(
      cliText.stdout,
      new RegExp(`^ {2}outgoing: {2}${live.aBssId}$`, "m"),
    );
    // Through QEMU's own memory (/proc/PID/mem), frozen and resumed by the CLI.
    const viaPid = await runCli(
      "scx",
      "--guest-pid",
      String(guest.pid),
      "--qmp",
      guest.spareQmpPath,
      "--json",
    );
    assert.equal(viaPid.code, 0, viaPid.stderr);
    assert.deepEqual(
      (parseJsonExact(viaPid.stdout) as { active: Decision }).active,
      fromRam,
    );
    await guest.qmp.cont();

    // Phase 2: B stopped, its ops map held but attached by no link. Both
    // backends fall back to the name rule and agree.
    await guest.waitFor(/BPFMAP-SWAP-DONE|BPFMAP-AGENT-ERROR/, 60_000);
    const after = guest.console();
    assert.ok(
      !after.includes("BPFMAP-AGENT-ERROR"),
      after.slice(after.indexOf("BPFMAP-SWAP-READY")),
    );
    const detached = agentLine(after, "SWAP-DETACHED") as unknown as {
      bExitCode: number;
      heldOps: number;
      decision: Decision;
      state: string;
    };
    assert.equal(detached.bExitCode, 0);
    assert.equal(detached.state, "disabled");
    assert.equal(detached.heldOps, fromRam.structOpsMapId);
    assert.equal(detached.decision.rule, "name", detached.decision.reason);
    assert.match(detached.decision.reason, /but none attached/);
    assert.deepEqual(detached.decision.activeMapIds, [bBssId]);
    assert.deepEqual(detached.decision.outgoingMapIds, [live.aBssId]);
    await guest.qmp.stop();
    let byName: Decision;
    {
      using later = GuestMemMapAccessor.openRamFile(guest.ramPath);
      byName = activeScheduler(later) as Decision;
    }
    assert.deepEqual(facts(byName), facts(detached.decision), byName.reason);

    console.log(
      `${memory.release} swap window: A's .bss ${live.aBssId} held and outgoing, B's ${bBssId} active ` +
        `(ops map ${fromRam.structOpsMapId}, ${fromRam.attachedProgramIds.length} programs, ${fromRam.activeMapIds.length} active maps); ` +
        `B enabled ${live.enabledMs} ms after start; RAM read, decision and report ${
          Math.round(hostMs)
        } ms of host time; reason: ${fromRam.reason}; B stopped with its ops map held: rule ${byName.rule} (${byName.reason})`,
    );
  },
});
