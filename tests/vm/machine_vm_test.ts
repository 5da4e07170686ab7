/**
 * QEMU machine types and a locked-down guest:
 *
 * - A RAM file of a `q35` guest with 3 GiB (2 GiB low, 1 GiB at 4 GiB) and
 *   of a `pc` guest with 3.25 GiB (all of it low): QEMU's two x86 machines
 *   place RAM of such sizes differently, and a RAM file does not say which
 *   one wrote it. `--guest-mem` must pick the layout that holds the RAM the
 *   guest kernel itself lists (`iomem_resource`), and read every map as bpf()
 *   does inside; `--guest-pid` (machine type from QEMU's command line) too.
 * - A kernel booted with `lockdown=confidentiality`: `bpfmap dump --kcore`
 *   inside says in one line that lockdown closes /proc/kcore, with and
 *   without securityfs mounted, while bpf() still reads every map.
 *
 * Needs `sh tools/vm/setup.sh` (root).
 */

import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { runCli as cli } from "../_support/cli.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "../_support/env.ts";
import { agentLine, agentMaps, compareGuest } from "./compare.ts";
import { bootUntil, kernelsReady, ROOT } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/guest_agent.ts`;
const ignore = ignoreUnlessCommands("qemu-system-x86_64") ||
  (!REQUIRE_ALL && !kernelsReady());
const GIB = 1n << 30n;

const MACHINES = [
  { machine: "q35", memoryMiB: 3072, highAt4G: GIB },
  { machine: "pc", memoryMiB: 3328, highAt4G: 0n },
] as const;

for (const { machine, memoryMiB, highAt4G } of MACHINES) {
  Deno.test({
    name:
      `a ${memoryMiB} MiB ${machine} guest's RAM file is laid out by the guest's own System RAM list, and every map reads as bpf() does`,
    ignore,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      await using guest = await bootUntil(
        { kernel: "k612", agent: AGENT, machine, memoryMiB },
        /BPFMAP-AGENT-(READY|ERROR)/,
        180_000,
      );
      const consoleText = guest.console();
      assert.ok(
        !consoleText.includes("BPFMAP-AGENT-ERROR"),
        consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
      );
      await guest.qmp.stop();

      using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
      const high = memory.kernel.space.memory;
      // the chosen layout: RAM above 4 GiB exactly when this machine puts it there
      assert.equal(
        high.readInto(4n * GIB, new Uint8Array(8)),
        highAt4G > 0n,
        `${machine}: RAM at 4 GiB`,
      );
      const result = compareGuest(consoleText, memory);
      assert.deepEqual(result.mismatches, []);
      assert.equal(result.maps, agentMaps(consoleText).length);
      assert.deepEqual(memory.problems(), []);

      const fromFile = await cli(
        "dump",
        "--json",
        "--guest-mem",
        guest.ramPath,
      );
      assert.equal(fromFile.code, 0, fromFile.stderr);
      const fromPid = await cli(
        "dump",
        "--json",
        "--guest-pid",
        String(guest.pid),
      );
      assert.equal(fromPid.code, 0, fromPid.stderr);
      const body = (text: string) =>
        text.replace(/"takenAt":"[^"]*","source":"[^"]*",/, "");
      assert.equal(body(fromPid.stdout), body(fromFile.stdout));
      console.log(
        `${memory.release} ${machine} ${memoryMiB} MiB: ${result.maps} maps, ${result.keys} keys, ${result.bytes} bytes identical through the RAM file; --guest-pid dump identical (${fromFile.stdout.length} bytes)`,
      );
    },
  });
}

Deno.test({
  name:
    "on a lockdown=confidentiality guest, --kcore says lockdown closes /proc/kcore (with and without securityfs) while bpf() reads on",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using guest = await bootUntil(
      {
        kernel: "k612",
        agent: AGENT,
        agentArgs: ["kcore=locked"],
        kernelArgs: ["lockdown=confidentiality"],
      },
      /BPFMAP-AGENT-(READY|ERROR)/,
      180_000,
    );
    const consoleText = guest.console();
    assert.ok(
      !consoleText.includes("BPFMAP-AGENT-ERROR"),
      consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
    );
    type Run = { code: number; stdout: string; stderr: string };
    const locked = agentLine(consoleText, "KCORE-LOCKED") as {
      mode: string;
      mounted: boolean;
      withoutSecurityfs: Run;
      withSecurityfs: Run;
      liveCode: number;
      liveMaps: number;
    };
    assert.match(locked.mode, /\[confidentiality\]/);
    assert.ok(locked.mounted, "securityfs did not mount in the guest");
    for (const run of [locked.withoutSecurityfs, locked.withSecurityfs]) {
      assert.notEqual(run.code, 0);
      assert.equal(run.stdout, "", "nothing on stdout when kcore is closed");
      assert.match(
        run.stderr,
        /^bpfmap: error: \/proc\/kcore is closed by kernel lockdown \(lockdown=confidentiality\)/,
      );
      assert.equal(run.stderr.trim().split("\n").length <= 2, true, run.stderr);
    }
    assert.equal(locked.liveCode, 0);
    assert.ok(locked.liveMaps >= agentMaps(consoleText).length);
    console.log(
      `lockdown=confidentiality: ${
        locked.withSecurityfs.stderr.trim().split("\n")[0]
      }; live dump still reads ${locked.liveMaps} maps`,
    );
  },
});
