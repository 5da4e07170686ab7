/**
 * The proof for the guest-memory backend: boot real Debian 6.1, 6.12 and 7.3
 * kernels under QEMU, let bpfmap's live backend create and read maps of
 * every type inside, freeze the VM, and read the same maps from its RAM file
 * with GuestMemMapAccessor. Every map, key and CPU must match byte for byte.
 *
 * Needs `sh tools/vm/setup.sh` (root). About 10 s per kernel on 2 cores.
 */

import assert from "node:assert/strict";
import { runCli as cli } from "../_support/cli.ts";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { parseJsonExact } from "../../src/btf/json.ts";
import { Btf } from "../../src/btf/mod.ts";
import { specialFieldRulesFor } from "../../src/btf/special_fields.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { agentLine, agentMaps, compareGuest } from "./compare.ts";
import { compareTypedGuest } from "./compare_types.ts";
import { bootUntil, KERNELS, kernelsReady, ROOT } from "./harness.ts";
import { mutationSweep } from "./mutate.ts";

const AGENT = `${ROOT}/tests/vm/guest_agent.ts`;

const ignore = ignoreUnlessCommands("qemu-system-x86_64") ||
  (!REQUIRE_ALL && !kernelsReady());

for (const kernel of KERNELS) {
  Deno.test({
    name:
      `GuestMemMapAccessor reads every map of a frozen ${kernel} guest exactly as bpf() does`,
    ignore,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      assert.ok(
        kernelsReady(),
        "Guest kernels missing: run `sh tools/vm/setup.sh` first",
      );
      await using guest = await bootUntil(
        { kernel, agent: AGENT },
        /BPFMAP-AGENT-(READY|ERROR)/,
        120_000,
      );
      const booted = guest.elapsedMs(); // from QEMU spawn: not the wait for another test's guest
      const consoleText = guest.console();
      assert.ok(
        !consoleText.includes("BPFMAP-AGENT-ERROR"),
        consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
      );
      // The CLI freezes a running guest through QMP for its read and resumes it.
      assert.equal(await guest.qmp.status(), "running");
      const live = await cli(
        "list",
        "--json",
        "--guest-mem",
        guest.ramPath,
        "--qmp",
        guest.spareQmpPath,
      );
      assert.equal(live.code, 0, live.stderr);
      assert.equal(
        await guest.qmp.status(),
        "running",
        "resumed after the read",
      );
      const listedWhileRunning = JSON.parse(live.stdout) as {
        id: number;
        name: string;
      }[];

      await guest.qmp.stop();
      assert.equal(await guest.qmp.status(), "paused");

      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
      const t0 = performance.now();
      const result = compareGuest(consoleText, memory);
      const readMs = performance.now() - t0;
      assert.deepEqual(result.mismatches, []);
      // maps with a type reader: bpf() in the guest vs the frozen RAM
      const typed = compareTypedGuest(consoleText, memory);
      console.log(
        `${kernel}: typed maps ${typed.maps} (${
          typed.kinds.join(", ")
        }), ${typed.items} items compared`,
      );
      assert.deepEqual(typed.mismatches, []);
      assert.equal(typed.maps, 19, "every typed map the agent made");
      // contains from guest memory answers as the guest kernel did
      const bloom = memory.maps().find((m) => m.name === "t_bloom4")!;
      const bloomLine = consoleText.split("\n").find((l) =>
        l.includes(`"kind":"bloom","id":${bloom.id},`)
      )!;
      const { candidates, answers } = JSON.parse(
        bloomLine.slice(bloomLine.indexOf("{")),
      ).extra as { candidates: string[]; answers: boolean[] };
      for (const index of [0, answers.indexOf(false)]) {
        const run = await cli(
          "contains",
          "--guest-mem",
          guest.ramPath,
          "--id",
          String(bloom.id),
          "--hex",
          candidates[index]!,
        );
        assert.equal(run.code, answers[index] ? 0 : 1, run.stderr);
      }
      const agent = agentMaps(consoleText);
      const arena = kernel !== "k61";
      assert.equal(result.maps, agent.length);
      assert.equal(
        agent.length,
        arena ? 12 : 11,
        "the agent should have reported every map kind",
      );
      assert.ok(result.keys >= 490, `only ${result.keys} keys compared`);
      assert.ok(
        result.cpuValues >= 350,
        `only ${result.cpuValues} per-CPU values compared`,
      );
      assert.equal(result.pages, arena ? 3 : 0);
      assert.equal(memory.cpuCount, 2);
      // The kallsyms layout and the special-field rules of each kernel generation.
      assert.equal(
        memory.kernel.kallsymsMode,
        kernel === "k73" ? "pc-relative" : "absolute-percpu",
      );
      const rules = specialFieldRulesFor(
        Btf.parse(memory.kernel.btfBytes()),
        memory.release,
      );
      assert.deepEqual(
        [...rules.kinds].sort(),
        {
          k61: ["kptr", "spin_lock", "timer"],
          k612: [
            "kptr",
            "list_head",
            "rb_root",
            "refcount",
            "spin_lock",
            "timer",
            "wq",
          ],
          k73: [
            "kptr",
            "list_head",
            "rb_root",
            "refcount",
            "res_spin_lock",
            "spin_lock",
            "task_work",
            "timer",
            "uptr",
            "wq",
          ],
        }[kernel],
      );
      assert.equal(rules.nested, kernel !== "k61");

      // The pin helper's swap window: both same-named maps alive, lowest id wins.
      const swap = agentLine(consoleText, "SWAP") as {
        outgoing: number;
        incoming: number;
        heldId: number;
        byNameId: number;
        alive: number[];
        values: string[];
      };
      assert.deepEqual(swap.alive, [swap.outgoing, swap.incoming]);
      assert.equal(swap.heldId, swap.outgoing);
      assert.equal(swap.byNameId, swap.outgoing);
      const inMemory = memory.maps().filter((m) => m.name === "swapobj.bss");
      assert.deepEqual(inMemory.map((m) => m.id), swap.alive);
      assert.equal(memory.findMap("swapobj.bss")?.id, swap.outgoing);
      assert.deepEqual(
        inMemory.map((m) =>
          Array.from(
            memory.readArray(m, 0)!,
            (b) => b.toString(16).padStart(2, "0"),
          ).join("")
        ),
        swap.values,
      );
      assert.deepEqual(memory.problems(), []);

      // The CLI over the same image: list as bpftool shapes it, a typed dump, the failure dump.
      const listed = await cli("list", "--json", "--guest-mem", guest.ramPath);
      assert.equal(listed.code, 0, listed.stderr);
      const listedMaps = JSON.parse(listed.stdout) as {
        id: number;
        name: string;
        bytes_value: number;
      }[];
      assert.deepEqual(
        listedMaps.map((m) => [m.id, m.name, m.bytes_value]),
        memory.maps().map((m) => [m.id, m.name, m.valueSize]),
      );
      assert.deepEqual(
        listedWhileRunning.map((m) => m.id),
        listedMaps.map((m) => m.id),
      );
      const swapDump = await cli(
        "dump",
        "--name",
        "swapobj.bss",
        "--json",
        "--guest-mem",
        guest.ramPath,
      );
      assert.equal(swapDump.code, 0, swapDump.stderr);
      const swapElements = parseJsonExact(swapDump.stdout) as {
        id: number;
        elements: { value: string[] }[];
      }[];
      assert.deepEqual(swapElements.map((m) => m.id), swap.alive);
      assert.deepEqual(
        swapElements.map((m) =>
          m.elements[0]!.value.map((h) => h.slice(2)).join("")
        ),
        swap.values,
      );
      const everything = await cli(
        "dump",
        "--json",
        "--max-entries",
        "4",
        "--guest-mem",
        guest.ramPath,
      );
      assert.equal(everything.code, 0, everything.stderr);
      const report = parseJsonExact(everything.stdout) as {
        source: string;
        maps: { errors?: unknown[] }[];
      };
      assert.match(report.source, /^guest memory /);
      assert.equal(report.maps.length, listedMaps.length);
      // the failure dump shows what only memory holds: every queue element, bloom fill
      const byName = (name: string): {
        entries?: { key: unknown }[];
        omittedEntries?: number;
        notes?: string[];
      } =>
        (report.maps as unknown as {
          name: string;
          entries?: { key: unknown }[];
        }[]).find((m) => m.name === name)!;
      assert.deepEqual(
        byName("t_queue").entries?.map((e) => e.key),
        ["head", 1, 2, 3],
      );
      assert.equal(byName("t_queue").omittedEntries, 4);
      assert.ok(
        byName("t_bloom4").notes?.some((n) => / of \d+ bits set \(/.test(n)),
        JSON.stringify(byName("t_bloom4").notes),
      );
      const found = await cli(
        "find",
        "swapobj.bss",
        "--json",
        "--guest-mem",
        guest.ramPath,
      );
      assert.equal(
        (JSON.parse(found.stdout) as { id: number }).id,
        swap.outgoing,
      );
      console.log(
        `${memory.release}: ${result.maps} maps, ${result.keys} keys, ${result.cpuValues} per-CPU values, ` +
          `${result.pages} arena pages, ${result.bytes} bytes identical; boot+agent ${
            Math.round(booted)
          } ms, ` +
          `memory read ${Math.round(readMs)} ms`,
      );

      // Caller-supplied symbols (System.map / vmlinux style, link-time addresses) instead of kallsyms.
      const slide = memory.kernel.vmcoreinfo.kernelOffset;
      const linkTime = new Map(
        [
          "map_idr",
          "__per_cpu_offset",
          "nr_cpu_ids",
          "page_offset_base",
          "__start_BTF",
          "__stop_BTF",
        ].map((
          name,
        ) => [name, memory.kernel.symbol(name) - slide]),
      );
      using withSymbols = GuestMemMapAccessor.openRamFile(guest.ramPath, {
        symbols: linkTime,
      });
      assert.deepEqual(withSymbols.maps(), memory.maps());
      assert.equal(
        withSymbols.kernel.kallsymsMode,
        null,
        "kallsyms should not have been needed",
      );

      // Corrupted copies of this real image: errors or partial data, never a hang.
      const sweep = mutationSweep(guest.ramPath, 300, kernel.length);
      assert.equal(sweep.runs, 300);
      assert.ok(
        sweep.maxMs < 5000,
        `slowest mutated read took ${Math.round(sweep.maxMs)} ms`,
      );
      console.log(
        `${memory.release}: ${sweep.runs} mutated images: ${sweep.errors} clean errors, ` +
          `${sweep.completed} complete reads, slowest ${
            Math.round(sweep.maxMs)
          } ms`,
      );

      if (kernel === "k612") {
        // The same through an ELF core written by QEMU (`dump-guest-memory`).
        const core = `${
          Deno.makeTempDirSync({ prefix: "bpfmap-core-" })
        }/guest.core`;
        try {
          await guest.qmp.execute("dump-guest-memory", {
            paging: false,
            protocol: `file:${core}`,
          }, { timeoutMs: 120_000 });
          using fromCore = GuestMemMapAccessor.openCore(core);
          // Debian's kernel has no fw_cfg driver built in, so QEMU writes no
          // VMCOREINFO note: the kernel is found by scanning the core's RAM.
          assert.equal(fromCore.kernel.vmcoreinfo.osRelease, memory.release);
          const again = compareGuest(consoleText, fromCore);
          assert.deepEqual(again.mismatches, []);
          assert.equal(again.keys, result.keys);
          assert.deepEqual(
            fromCore.maps().map((m) => [m.id, m.kernelAddress]),
            memory.maps().map((m) => [m.id, m.kernelAddress]),
          );
          console.log(
            `${memory.release}: ELF core: ${again.maps} maps, ${again.keys} keys identical`,
          );
        } finally {
          Deno.removeSync(core.replace(/\/guest\.core$/, ""), {
            recursive: true,
          });
        }
      }
    },
  });
}
