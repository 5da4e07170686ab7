/**
 * The proof for aarch64 guests, and for the live backend on an arm64 host:
 * boot Debian's arm64 6.12 kernels (4K pages, and 16K pages) and 7.3 (4K) under
 * `qemu-system-aarch64 -machine virt -cpu max -accel tcg`, let bpfmap's live
 * backend (running on arm64 inside) create and read maps of every type, freeze
 * the VM, and read the same maps from its RAM file on the x86-64 host. Every
 * map, key and CPU must match byte for byte. Then the host-side read time is
 * printed (`deno task bench-guest-arch` sets it against an x86-64 guest).
 *
 * Needs `sh tools/vm/setup.sh` (root; it calls `tools/vm/setup_arm64.sh`).
 */

import assert from "node:assert/strict";
import { runCli as cli } from "../_support/cli.ts";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { ignoreUnless, REQUIRE_ALL } from "../_support/env.ts";
import { agentMaps, compareGuest } from "./compare.ts";
import {
  ARM64_CACHE,
  ARM64_ROOT,
  bootUntil,
  type Guest,
  ROOT,
} from "./harness.ts";
import { mutationSweep, readEverything } from "./mutate.ts";

const AGENT = `${ROOT}/tests/vm/guest_agent.ts`;
// `full`: also the mutation sweep and the ELF core (once per page size is enough)
const ARM_KERNELS = [
  { dir: "a612", release: "6.12", pageSize: 4096, levels: 5, full: true },
  { dir: "a612k16", release: "6.12", pageSize: 16384, levels: 4, full: true },
  // 7.x: kallsyms without kallsyms_relative_base, on arm64
  { dir: "a73", release: "7.3", pageSize: 4096, levels: 5, full: false },
] as const;

function arm64Ready(): boolean {
  try {
    return ARM_KERNELS.every((k) =>
      Deno.statSync(`${ARM64_CACHE}/${k.dir}/vmlinuz`).isFile
    ) && Deno.statSync(`${ARM64_ROOT}/bin/deno`).isFile;
  } catch {
    return false;
  }
}

const ignore = ignoreUnless("qemu-aarch64") ||
  (!REQUIRE_ALL && !arm64Ready());

/**
 * Host-side work alone: open the frozen RAM file (VMCOREINFO scan, kallsyms,
 * BTF) and read every map's contents; the fastest of `runs`, since the
 * cores are shared and only the floor says what the code costs.
 */
function hostReadMs(ramPath: string, runs = 5): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    using memory = GuestMemMapAccessor.openRamFile(ramPath);
    assert.ok(readEverything(memory) > 0);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Boots `kernel`, waits for the agent, freezes the guest. */
async function frozenGuest(
  kernel: string,
  arch: "x86_64" | "aarch64",
): Promise<{ guest: Guest; bootMs: number }> {
  const started = performance.now();
  const guest = await bootUntil(
    { kernel, agent: AGENT, arch },
    /BPFMAP-AGENT-(READY|ERROR)/,
    300_000,
  );
  const bootMs = performance.now() - started;
  try {
    const text = guest.console();
    assert.ok(
      !text.includes("BPFMAP-AGENT-ERROR"),
      text.slice(text.indexOf("BPFMAP-AGENT")),
    );
    await guest.qmp.stop();
    assert.equal(await guest.qmp.status(), "paused");
  } catch (error) {
    // Until the caller holds it, the guest (and the host-wide VM lock it
    // holds) is ours to release: a leak here blocks every later VM test.
    await guest[Symbol.asyncDispose]();
    throw error;
  }
  return { guest, bootMs };
}

for (const { dir, release, pageSize, levels, full } of ARM_KERNELS) {
  Deno.test({
    name:
      `GuestMemMapAccessor reads every map of a frozen aarch64 ${dir} guest (${
        pageSize / 1024
      }K pages) exactly as bpf() does inside it`,
    ignore,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      assert.ok(
        arm64Ready(),
        "arm64 kernels or userland missing: run `sh tools/vm/setup.sh` first",
      );
      const { guest, bootMs } = await frozenGuest(dir, "aarch64");
      await using _guest = guest;
      const consoleText = guest.console();
      // the agent ran bpfmap's live backend on arm64 (bpf() is syscall 280 there)
      assert.match(
        consoleText,
        new RegExp(
          `BPFMAP-AGENT cpus=2 kernel=${
            release.replace(".", "\\.")
          }\\.\\S+-arm64`,
        ),
      );

      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
      assert.equal(memory.kernel.arch.name, "aarch64");
      assert.equal(memory.kernel.space.addressing.pageSize, pageSize);
      // QEMU -cpu max has LPA2: the 52-bit build runs 52-bit tables
      assert.equal(
        memory.kernel.vmcoreinfo.numbers.get("TCR_EL1_T1SZ"),
        12n,
        `T1SZ 12 means ${levels} levels of ${pageSize / 1024}K tables`,
      );
      const t0 = performance.now();
      const result = compareGuest(consoleText, memory);
      const readMs = performance.now() - t0;
      assert.deepEqual(result.mismatches, []);
      const agent = agentMaps(consoleText);
      assert.equal(result.maps, agent.length);
      assert.equal(agent.length, 12, "every map kind, the arena included");
      assert.ok(result.keys >= 490, `only ${result.keys} keys compared`);
      assert.ok(
        result.cpuValues >= 350,
        `only ${result.cpuValues} per-CPU values compared`,
      );
      assert.equal(result.pages, 3, "arena pages");
      // the live backend found the arena's pages in the kernel's page size
      // (through /proc/PID/pagemap), so they were compared too
      const arena = agent.find((m) => m.kind === "arena")!.data as {
        pageSize: number;
        live: [number, string, string][];
      };
      assert.equal(arena.pageSize, pageSize);
      assert.deepEqual(arena.live.map(([index]) => index), [0, 3, 9]);
      assert.equal(memory.cpuCount, 2);
      assert.deepEqual(memory.problems(), []);

      // The CLI finds the arm64 layout (RAM at 1 GiB) from VMCOREINFO alone.
      const listed = await cli("list", "--json", "--guest-mem", guest.ramPath);
      assert.equal(listed.code, 0, listed.stderr);
      assert.deepEqual(
        (JSON.parse(listed.stdout) as { id: number }[]).map((m) => m.id),
        memory.maps().map((m) => m.id),
      );

      const hostMs = hostReadMs(guest.ramPath);
      console.log(
        `${memory.release}: ${result.maps} maps, ${result.keys} keys, ${result.cpuValues} per-CPU values, ` +
          `${result.pages} arena pages, ${result.bytes} bytes identical; boot+agent ${
            Math.round(bootMs)
          } ms, compare ${Math.round(readMs)} ms, open+read everything ${
            hostMs.toFixed(0)
          } ms (best of 5)`,
      );

      if (!full) return;
      // Corrupted copies of this arm64 image: errors or data, never a hang.
      const sweep = mutationSweep(guest.ramPath, 300, pageSize);
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

      if (pageSize === 4096) {
        // The same through an ELF core QEMU writes (PT_LOADs at 1 GiB).
        const dirPath = Deno.makeTempDirSync({ prefix: "bpfmap-core-" });
        try {
          await guest.qmp.execute("dump-guest-memory", {
            paging: false,
            protocol: `file:${dirPath}/guest.core`,
          }, { timeoutMs: 120_000 });
          using fromCore = GuestMemMapAccessor.openCore(
            `${dirPath}/guest.core`,
          );
          const again = compareGuest(consoleText, fromCore);
          assert.deepEqual(again.mismatches, []);
          assert.equal(again.keys, result.keys);
          console.log(
            `${memory.release}: ELF core: ${again.maps} maps, ${again.keys} keys identical`,
          );
        } finally {
          Deno.removeSync(dirPath, { recursive: true });
        }
      }
    },
  });
}
