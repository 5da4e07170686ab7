/**
 * The sources with no RAM file: a guest booted on QEMU's anonymous memory
 * (no memory-backend-file) read through `/proc/PID/mem` (`--guest-pid`),
 * and inside that guest `bpfmap dump --kcore` against the live dump.
 *
 * Needs `sh tools/vm/setup.sh` (root). About 20 s per kernel on 2 cores.
 */

import assert from "node:assert/strict";
import { runCli as cli } from "../_support/cli.ts";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { qemuRamLayout } from "../../src/guest/qemu_process.ts";
import { parseKcore } from "../../src/guest/kcore.ts";
import { GuestSourceError } from "../../src/guest/errors.ts";
import { BpfmapError } from "../../src/errors.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { agentLine, agentMaps, compareGuest } from "./compare.ts";
import { bootUntil, KERNELS, kernelsReady, ROOT } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/guest_agent.ts`;

/**
 * The guest's real kcore header bytes, parsed as they are and then 500
 * times with random bytes changed: a layout or one BpfmapError line each,
 * never another exception, a hang or a huge allocation.
 */
function kcoreHeaderSweep(consoleText: string, kernel: string): void {
  const line = consoleText.split("\n").find((l) =>
    l.startsWith("BPFMAP-KCORE-HEAD ")
  );
  assert.ok(line, "the agent printed no kcore header");
  const pieces = (JSON.parse(line.slice(18).trim()) as [string, string][])
    .map(([offset, hex]) => ({
      offset: BigInt(offset),
      bytes: Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16)),
    }));
  const reader = (set: typeof pieces) => (offset: bigint, len: number) => {
    const piece = set.find((p) =>
      offset >= p.offset &&
      offset + BigInt(len) <= p.offset + BigInt(p.bytes.length)
    );
    // past the captured bytes: what openKcore says of a short read
    if (!piece) {
      throw new GuestSourceError(
        "/proc/kcore",
        `has no ${len} bytes at ${offset}`,
      );
    }
    const at = Number(offset - piece.offset);
    return piece.bytes.slice(at, at + len);
  };
  const clean = parseKcore(reader(pieces));
  assert.ok(clean.vmcoreinfo?.startsWith("OSRELEASE="));
  assert.ok(clean.regions.length >= 2, `${clean.regions.length} RAM regions`);
  let seed = kernel.length * 7919;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  let errors = 0;
  let slowest = 0;
  for (let run = 0; run < 500; run++) {
    const mutated = pieces.map((p) => ({ ...p, bytes: p.bytes.slice() }));
    for (let k = 0; k < 1 + random(8); k++) {
      // most changes land in the ELF and program headers, where they matter
      const which = random(3) === 0
        ? random(mutated.length)
        : random(Math.min(2, mutated.length));
      const piece = mutated[which]!;
      piece.bytes[random(piece.bytes.length)] = random(256);
    }
    const t0 = performance.now();
    try {
      parseKcore(reader(mutated));
    } catch (error) {
      assert.ok(error instanceof BpfmapError, String(error));
      assert.ok(!error.message.includes("\n"), error.message);
      errors++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  assert.ok(slowest < 500, `slowest corrupted kcore header took ${slowest} ms`);
  console.log(
    `${kernel} kcore header: ${clean.regions.length} RAM regions; 500 corrupted copies: ${errors} clean errors, slowest ${
      slowest.toFixed(1)
    } ms`,
  );
}

for (const kernel of KERNELS) {
  Deno.test({
    name:
      `a running ${kernel} QEMU with no RAM file is read through /proc/PID/mem, and the guest's own kcore matches bpf()`,
    ignore: ignoreUnlessCommands("qemu-system-x86_64") ||
      (!REQUIRE_ALL && !kernelsReady()),
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      await using guest = await bootUntil(
        { kernel, agent: AGENT, ramFile: false, agentArgs: ["kcore=1"] },
        /BPFMAP-AGENT-(READY|ERROR)/,
        180_000,
      );
      const consoleText = guest.console();
      assert.ok(
        !consoleText.includes("BPFMAP-AGENT-ERROR"),
        consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
      );
      assert.equal(guest.ramPath, "");

      // Inside the guest: every map through /proc/kcore as through bpf().
      const kcore = agentLine(consoleText, "KCORE") as {
        maps: number;
        jsonBytes: number;
        differences: string[];
        liveCode: number;
        kcoreCode: number;
        kcoreStderr: string;
        liveMs: number;
        kcoreMs: number;
      };
      assert.equal(kcore.liveCode, 0);
      assert.equal(kcore.kcoreCode, 0, kcore.kcoreStderr);
      assert.deepEqual(kcore.differences, []);
      // the agent's 12 maps, the swap window's second swapobj.bss, and the
      // task-storage map's BTF owner are all there: nothing missing
      assert.ok(kcore.maps >= agentMaps(consoleText).length, `${kcore.maps}`);
      assert.match(
        kcore.kcoreStderr,
        /^bpfmap: note: \/proc\/kcore is the running kernel's memory/,
      );
      kcoreHeaderSweep(consoleText, kernel);

      // From the host, running: found without QMP, noted as possibly torn.
      const running = await cli(
        "list",
        "--json",
        "--guest-pid",
        String(guest.pid),
      );
      assert.equal(running.code, 0, running.stderr);
      assert.match(running.stderr, /read while the guest ran .* may be torn/);
      assert.equal(await guest.qmp.status(), "running");
      // With --qmp: stopped for the read, resumed after, no note.
      const frozen = await cli(
        "list",
        "--json",
        "--guest-pid",
        String(guest.pid),
        "--qmp",
        guest.spareQmpPath,
      );
      assert.equal(frozen.code, 0, frozen.stderr);
      assert.equal(frozen.stderr, "");
      assert.equal(
        await guest.qmp.status(),
        "running",
        "resumed after the read",
      );
      assert.deepEqual(
        (JSON.parse(frozen.stdout) as { id: number }[]).map((m) => m.id),
        (JSON.parse(running.stdout) as { id: number }[]).map((m) => m.id),
      );

      // Frozen: byte for byte against what the agent read through bpf(), with
      // the layout from QMP and with the one from QEMU's command line.
      await guest.qmp.stop();
      const ram = await qemuRamLayout(guest.qmp);
      assert.equal(ram.ramSize, 1n << 30n);
      for (const options of [{ ram, frozen: true }, { frozen: true }]) {
        using memory = GuestMemMapAccessor.openQemuProcess(guest.pid, options);
        const t0 = performance.now();
        const result = compareGuest(consoleText, memory);
        const readMs = performance.now() - t0;
        assert.deepEqual(result.mismatches, []);
        const arena = kernel !== "k61";
        assert.equal(result.maps, arena ? 12 : 11);
        assert.ok(result.keys >= 490, `only ${result.keys} keys compared`);
        assert.ok(
          result.cpuValues >= 350,
          `${result.cpuValues} per-CPU values`,
        );
        assert.equal(result.pages, arena ? 3 : 0);
        assert.deepEqual(memory.problems(), []);
        assert.deepEqual(memory.notes, []);
        console.log(
          `${memory.release} via /proc/${guest.pid}/mem (${
            "ram" in options ? "QMP layout" : "command-line layout"
          }): ${result.maps} maps, ${result.keys} keys, ${result.bytes} bytes identical, read ${
            Math.round(readMs)
          } ms`,
        );
      }
      console.log(
        `${kernel} in-guest kcore: ${kcore.maps} maps, ${kcore.jsonBytes} JSON bytes identical to bpf(); ` +
          `dump live ${kcore.liveMs} ms, kcore ${kcore.kcoreMs} ms (TCG)`,
      );
      await guest.qmp.cont();
    },
  });
}
