/**
 * scx_sdt's per-task data, rendered from a frozen 7.3 guest: the real
 * scheduler (built by setup.sh from linux-source-7.3) runs under its C
 * loader; the host freezes the guest and takes the failure dump of
 * `scx_task_map` with arena pointers followed. Every task's storage value
 * points at its `sdt_alloc` element in the arena, and the element must be
 * that task's: the element's header repeats the value's `tid`, and the
 * payload is the scheduler's `struct scx_stats` (`pid` set once in
 * `sdt_init_task`, `init` counted once). About 30 s on 2 cores.
 */

import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { dumpState } from "../../src/dump/dump_state.ts";
import { reportToText } from "../../src/dump/format.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { agentLine } from "./compare.ts";
import { bootUntil, ROOT, schedulersReady, SCX_BIN } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/scx_agent.ts`;

interface Tid {
  val: bigint;
  idx: number;
  genn: number;
}

Deno.test({
  name:
    "scx_sdt on 7.3, frozen: each task's sdt_alloc element is followed from scx_task_map into the arena and is that task's",
  ignore: ignoreUnlessCommands("qemu-system-x86_64") ||
    (!REQUIRE_ALL && !schedulersReady(["sdt"])),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert.ok(
      schedulersReady(["sdt"]),
      "7.3 kernel or scx_sdt missing: run `sh tools/vm/setup.sh` first",
    );
    await using guest = await bootUntil(
      {
        kernel: "k73",
        agent: AGENT,
        agentArgs: ["scx=sdt"],
        binaries: [`${SCX_BIN}/scx_sdt`],
        singleThreadTcg: true,
      },
      /BPFMAP-SCX-RUNNING [^\n]*\n|BPFMAP-AGENT-ERROR [^\n]*\n/,
      180_000,
    );
    const consoleText = guest.console();
    assert.ok(
      !consoleText.includes("BPFMAP-AGENT-ERROR"),
      consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
    );
    const running = agentLine(consoleText, "SCX-RUNNING") as unknown as {
      state: string;
      ops: string;
    };
    assert.equal(running.state, "enabled");
    await guest.qmp.stop();
    using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
    const plainStart = performance.now();
    const plain = dumpState(memory, {
      entryLimit: 4096,
      filter: (m) => m.name === "scx_task_map",
    });
    const plainMs = performance.now() - plainStart;
    assert.ok(plain.maps[0]!.entries!.every((e) => e.arena === undefined));
    const arenaStart = performance.now();
    const arenaPages = memory.readArenaPages(
      memory.maps().find((m) => m.name === "arena")!,
    ).pages.length;
    const arenaMs = performance.now() - arenaStart;
    const started = performance.now();
    const report = dumpState(memory, {
      followArena: true,
      entryLimit: 4096,
      filter: (m) => m.name === "scx_task_map",
    });
    const tookMs = performance.now() - started;
    assert.equal(report.maps.length, 1, "one scx_task_map");
    const entries = report.maps[0]!.entries!;
    assert.ok(entries.length >= 10, `${entries.length} tasks`);
    const pids = new Set<number>();
    for (const entry of entries) {
      const value = entry.value as unknown as { tid: Tid; data: bigint };
      const data = entry.arena?.pointees.find((p) => p.path === "data");
      assert.ok(data, `task ${entry.owner}: data not followed`);
      assert.equal(data.type, "struct sdt_data (declared only)");
      assert.ok(data.value, `task ${entry.owner}: ${data.note}`);
      assert.match(data.note!, /^scx_sdt element of \d+ bytes/);
      const element = data.value as unknown as { tid: Tid; payload: bigint[] };
      assert.deepEqual(element.tid, value.tid, "the element is this task's");
      // struct scx_stats: {int seq; pid_t pid; u64 enqueue, exit, init, ...}
      assert.ok(element.payload.length >= 5, "scx_stats fits the element");
      const pid = Number(element.payload[0]! >> 32n);
      assert.ok(pid >= 0, `pid ${pid}`);
      pids.add(pid);
      assert.equal(element.payload[3], 1n, `pid ${pid}: init counted once`);
    }
    assert.equal(pids.size, entries.length, "one element per task");
    assert.ok(pids.has(1), "init's element is there");
    assert.ok(reportToText(report).includes("-> data: struct sdt_data"));
    console.log(
      `scx_sdt: ${entries.length} tasks' sdt_alloc elements followed in ${
        tookMs.toFixed(0)
      } ms (arena read included); the same dump without following ${
        plainMs.toFixed(0)
      } ms; reading the arena alone (${arenaPages} pages) ${
        arenaMs.toFixed(0)
      } ms`,
    );
  },
});
