/**
 * Real sched_ext schedulers in a 7.3 guest, read by both backends: the
 * kernel's own scx_simple, scx_qmap and scx_sdt (built by setup.sh from
 * linux-source-7.3) run under load inside QEMU with their C loaders. While a
 * scheduler is enabled, the host freezes the guest and reads every map it
 * created from RAM; then the guest quiesces it (loader stopped, scheduler
 * disabled, maps held) and every map is compared byte for byte between
 * bpf() in the guest and the host's RAM read.
 *
 * Needs `sh tools/vm/setup.sh` (root). About 25 s per scheduler on 2 cores.
 */

import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import type { BpfMapInfo } from "../../src/accessor/types.ts";
import {
  CURRENT_SPECIAL_FIELD_RULES,
  findSpecialFields,
  type SpecialField,
} from "../../src/btf/special_fields.ts";
import type { GuestMapRecord } from "../../src/guest/maps.ts";
import { MapType } from "../../src/sys/constants.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { runCli } from "../_support/cli.ts";
import { agentLine, agentMaps, compareGuest } from "./compare.ts";
import { comparePrograms } from "./compare_programs.ts";
import { bootUntil, ROOT, schedulersReady, SCX_BIN } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/scx_agent.ts`;
// Far above any vtime a few seconds of guest time reach: scx_simple only
// ever raises vtime_now, so once this is written its later values sit just
// above it, and a write that did not land cannot pass.
const VTIME_WRITTEN = 1n << 60n;
// Then `bpfmap write` raises it again: the guest must carry on from this one.
const VTIME_CLI = VTIME_WRITTEN + (1n << 40n);
const SCHEDULERS = ["simple", "qmap", "sdt"] as const;

const ignore = ignoreUnlessCommands("qemu-system-x86_64") ||
  (!REQUIRE_ALL && !schedulersReady(SCHEDULERS));

function specialFieldsOf(
  memory: GuestMemMapAccessor,
  map: BpfMapInfo,
): SpecialField[] {
  const btf = memory.loadProgramBtf(map);
  return btf
    ? findSpecialFields(btf, map.btfValueTypeId, CURRENT_SPECIAL_FIELD_RULES)
    : [];
}

function recordOf(
  memory: GuestMemMapAccessor,
  map: BpfMapInfo,
): GuestMapRecord {
  return memory.reader.maps().find((r) => r.id === map.id)!;
}

interface RunningReport {
  ops: string;
  state: string;
  enabledMs: number;
  maps: { id: number; name: string; type: number; valueSize: number }[];
}

for (const scheduler of SCHEDULERS) {
  Deno.test({
    name:
      `scx_${scheduler} on 7.3: every map of the running scheduler reads from RAM, and matches bpf() byte for byte`,
    ignore,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      assert.ok(
        schedulersReady(SCHEDULERS),
        "7.3 kernel or sched_ext loaders missing: run `sh tools/vm/setup.sh` first",
      );
      await using guest = await bootUntil(
        {
          kernel: "k73",
          agent: AGENT,
          agentArgs: [`scx=${scheduler}`],
          binaries: [`${SCX_BIN}/scx_${scheduler}`],
          singleThreadTcg: true,
        },
        /BPFMAP-SCX-RUNNING [^\n]*\n|BPFMAP-AGENT-ERROR [^\n]*\n/,
        180_000,
      );
      const enabledAt = guest.elapsedMs(); // from QEMU spawn
      let consoleText = guest.console();
      assert.ok(
        !consoleText.includes("BPFMAP-AGENT-ERROR"),
        consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
      );
      const running = agentLine(
        consoleText,
        "SCX-RUNNING",
      ) as unknown as RunningReport;
      assert.equal(running.state, "enabled");
      assert.equal(running.ops, scheduler);

      // Phase 1: the scheduler is running. Freeze, read every map it made, resume.
      await guest.qmp.stop();
      let runningKeys = 0;
      let hiddenPointers = 0;
      let specialFields = 0;
      const changedWhileRunning = new Set<string>();
      let identicalWhileRunning = 0;
      let storageIdenticalWhileRunning = 0;
      let runningDifferences: string[] = [];
      let pagesIdenticalWhileRunning = 0;
      let programsCompared = 0;
      {
        using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
        const byId = new Map(memory.maps().map((m) => [m.id, m]));
        for (const want of running.maps) {
          const map = byId.get(want.id);
          assert.ok(map, `map ${want.id} ${want.name} not in guest memory`);
          assert.equal(map.name, want.name);
          assert.equal(map.type, want.type);
          switch (map.type) {
            case MapType.ARRAY:
              for (let i = 0; i < map.maxEntries; i++) {
                const value = memory.readArray(map, i);
                assert.ok(value);
                runningKeys++;
                // kernel-owned fields (qmap's armed timers, locks): raw RAM has
                // kernel pointers there; the accessor must return bpf()'s zeros
                for (const field of specialFieldsOf(memory, map)) {
                  const raw = memory.reader.readArray(
                    recordOf(memory, map),
                    i,
                  )!;
                  const span = (b: Uint8Array): Uint8Array =>
                    b.subarray(field.offset, field.offset + field.size);
                  assert.ok(
                    span(value).every((b) => b === 0),
                    `${map.name}: ${field.kind} at +${field.offset} leaked`,
                  );
                  specialFields++;
                  if (span(raw).some((b) => b !== 0)) hiddenPointers++;
                }
              }
              break;
            case MapType.PERCPU_ARRAY:
              for (let i = 0; i < map.maxEntries; i++) {
                assert.ok(memory.readPercpuArray(map, i, memory.cpuCount));
                runningKeys++;
              }
              break;
            case MapType.TASK_STORAGE:
              runningKeys += [...memory.iterTaskStorage(map)].length;
              break;
            case MapType.ARENA:
              runningKeys += memory.readArenaPages(map).pages.length;
              break;
            case MapType.STRUCT_OPS:
              assert.ok(memory.readValue(map, 0, map.valueSize));
              runningKeys++;
              break;
            default:
              assert.fail(`${map.name}: unexpected map type ${map.type}`);
          }
        }
        assert.deepEqual(memory.problems(), []);
        // Programs: the scheduler's, listed alike by bpf() in the guest and from RAM.
        const programs = comparePrograms(consoleText, memory);
        assert.deepEqual(programs.mismatches, []);
        assert.ok(
          memory.programs().some((p) => p.typeName === "struct_ops"),
          "the scheduler's struct_ops programs are listed",
        );
        assert.deepEqual(memory.problems(), []);
        programsCompared = programs.programs;
        // Compared with bpf()'s read just before the freeze: maps the running
        // scheduler writes may differ, but never rodata or the ops map.
        const live = compareGuest(consoleText, memory, "RUNMAP");
        assert.equal(live.maps, running.maps.length);
        for (const mismatch of live.mismatches) {
          const id = Number(/^map (\d+) /.exec(mismatch)?.[1]);
          changedWhileRunning.add(byId.get(id)?.name ?? mismatch);
          const map = byId.get(id);
          assert.ok(
            map && !map.frozen && map.type !== MapType.STRUCT_OPS,
            `static map differs while running: ${mismatch}`,
          );
          assert.ok(
            !/: (name|type|keySize|valueSize|maxEntries|flags|btf\w*) live/
              .test(mismatch),
            mismatch,
          );
        }
        const differing = new Set(
          live.mismatches.map((m) => Number(/^map (\d+) /.exec(m)?.[1])),
        );
        identicalWhileRunning = running.maps.length - differing.size;
        runningDifferences = live.mismatches;
        for (const m of agentMaps(consoleText, "RUNMAP")) {
          if (differing.has(m.meta.id as number)) continue;
          if (m.kind === "task_storage_all") {
            storageIdenticalWhileRunning += (m.data as unknown[]).length;
          }
          if (m.kind === "arena_live") {
            pagesIdenticalWhileRunning +=
              (m.data as { pages: unknown[] }).pages.length;
          }
        }
      }
      // A host write while frozen: scx_simple's vtime_now, set through the RAM
      // file; the scheduler must carry on from it (read by bpf() in phase 2).
      let vtimeWrite: { id: number; offset: number; old: string } | null = null;
      if (scheduler === "simple") {
        using writable = GuestMemMapAccessor.openRamFile(guest.ramPath, {
          writable: true,
        });
        const bss = writable.findMap("scx_simp.bss");
        assert.ok(bss, "scx_simp.bss not in guest memory");
        const written = writable.writeField(
          bss,
          "vtime_now",
          VTIME_WRITTEN,
        );
        const change = written.changes[0]!;
        assert.equal(change.new, String(VTIME_WRITTEN));
        vtimeWrite = { id: bss.id, offset: change.byteOffset, old: change.old };
      }
      if (vtimeWrite !== null) {
        const cli = await runCli(
          "write",
          "--guest-mem",
          guest.ramPath,
          "--name",
          "scx_simp.bss",
          `vtime_now=${VTIME_CLI}`,
        );
        assert.equal(cli.code, 0, cli.stderr);
        assert.equal(
          cli.stdout,
          `map "scx_simp.bss" (id ${vtimeWrite.id}), element 0:\n  vtime_now: ${VTIME_WRITTEN} -> ${VTIME_CLI}\n`,
        );
      }
      await guest.qmp.cont();

      // Phase 2: quiesced, compared with bpf() byte for byte.
      await guest.waitFor(/BPFMAP-AGENT-READY|BPFMAP-AGENT-ERROR/, 120_000);
      consoleText = guest.console();
      assert.ok(
        !consoleText.includes("BPFMAP-AGENT-ERROR"),
        consoleText.slice(consoleText.indexOf("BPFMAP-SCX-RUNNING")),
      );
      const quiet = agentLine(consoleText, "SCX-QUIET") as {
        stable: boolean;
        rounds: number;
        moved: string[];
        lastMoves: string[];
        agentPid: number;
        state: string;
      };
      assert.equal(quiet.state, "disabled");
      assert.ok(
        quiet.stable,
        `two successive bpf() reads never agreed; each round moved: ${
          quiet.moved.join(" | ")
        }`,
      );
      await guest.qmp.stop();
      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
      const result = compareGuest(consoleText, memory, "MAP", {
        threadsMayExit: quiet.agentPid,
      });
      assert.deepEqual(result.mismatches, []);
      const agent = agentMaps(consoleText);
      assert.deepEqual(
        agent.map((m) => m.meta.id).sort(),
        running.maps.map((m) => m.id).sort(),
        "the quiesced read covers every map the scheduler created",
      );
      assert.equal(result.maps, running.maps.length);
      let vtimeAfter = 0n;
      if (vtimeWrite !== null) {
        const bss = agent.find((m) => m.meta.id === vtimeWrite.id);
        assert.ok(bss, "the agent did not read scx_simp.bss");
        const hex = (bss.data as string[])[0]!.slice(
          vtimeWrite.offset * 2,
          vtimeWrite.offset * 2 + 16,
        );
        vtimeAfter = BigInt(`0x${hex.match(/../g)!.reverse().join("")}`);
        assert.ok(
          vtimeAfter >= VTIME_CLI && vtimeAfter < VTIME_CLI + (1n << 40n),
          `vtime_now read by bpf() in the guest is ${vtimeAfter}, not just above the ${VTIME_CLI} written from the host (was ${vtimeWrite.old})`,
        );
      }

      // Same-named maps (qmap's five .data.qa_q_lock<N>): told apart only by their BTF.
      const sections = new Map<string, string[]>();
      for (const info of memory.maps()) {
        if (!agent.some((m) => m.meta.id === info.id)) continue;
        const btf = memory.loadProgramBtf(info);
        const section = btf && info.btfValueTypeId
          ? btf.type(info.btfValueTypeId).name
          : "";
        sections.set(info.name, [...(sections.get(info.name) ?? []), section]);
      }
      const duplicated = [...sections].filter(([, s]) => s.length > 1);
      for (const [name, list] of duplicated) {
        assert.equal(new Set(list).size, list.length, `${name}: ${list}`);
      }
      if (scheduler === "qmap") {
        assert.deepEqual(sections.get(".data.qa_q_lock")?.sort(), [
          ".data.qa_q_lock0",
          ".data.qa_q_lock1",
          ".data.qa_q_lock2",
          ".data.qa_q_lock3",
          ".data.qa_q_lock4",
        ]);
        // its three timers are armed: RAM holds kernel pointers bpf() hides
        assert.ok(
          hiddenPointers >= 3,
          `only ${hiddenPointers} special fields held kernel data`,
        );
        // its loader reads the arena (skel->arena->qa), so bpf() sees pages
        assert.ok(result.pages > 0, "no arena page visible to both backends");
        assert.ok(result.storageElements > 0, "no task storage compared");
      }
      const kinds = [...new Set(agent.map((m) => m.kind))].sort();
      console.log(
        `${memory.release} scx_${scheduler}: enabled ${running.enabledMs} ms after start (${
          Math.round(enabledAt)
        } ms from QEMU spawn); running: ${running.maps.length} maps, ${programsCompared} programs identical, ${runningKeys} values read from RAM, ` +
          `${specialFields} special fields (${hiddenPointers} non-zero in RAM) returned as bpf() does, ` +
          `${identicalWhileRunning} maps already identical to bpf() (with ${storageIdenticalWhileRunning} task storage elements, ` +
          `${pagesIdenticalWhileRunning} arena pages; changing: ${
            [...changedWhileRunning].join(" ") || "none"
          }); quiesced (bpf() reads settled after ${quiet.rounds + 1}${
            quiet.moved.length ? `; moving: ${quiet.moved.join(" | ")}` : ""
          }${
            quiet.lastMoves.length
              ? `; then only threads exited or renamed: ${
                quiet.lastMoves.join(" ")
              }`
              : ""
          }${
            result.exitedThreads
              ? `; ${result.exitedThreads} agent threads exited before the freeze`
              : ""
          }): ${result.maps} maps (${kinds.join(", ")}), ` +
          `${result.keys} keys (${result.storageElements} task storage elements), ${result.cpuValues} per-CPU values, ${result.pages} arena pages ` +
          `(+${result.pagesOnlyInMemory} only in RAM), ${result.bytes} bytes identical` +
          (duplicated.length
            ? `; same-named: ${
              duplicated.map(([n, l]) => `${l.length}x ${n}`).join(", ")
            }`
            : "") +
          (vtimeWrite
            ? `; host wrote vtime_now ${vtimeWrite.old} -> ${VTIME_WRITTEN} (library) -> ${VTIME_CLI} (bpfmap write) while frozen, bpf() in the guest then read ${vtimeAfter}`
            : "") +
          (runningDifferences.length
            ? `\n  while running, e.g. ${
              runningDifferences.slice(0, 3).join("; ")
            }`
            : ""),
      );
    },
  });
}
