/**
 * The accessor contract on a real guest, from both sides. A Debian kernel
 * (6.12, 7.3) boots under QEMU with `contract_agent.ts`, which first runs
 * `tests/contract/live_contract_test.ts` inside the guest (its kernel read
 * through bpf()), then creates the contract fixture and holds it. The host
 * freezes the VM and runs the same contract against its RAM file with
 * `GuestMemMapAccessor`: every check, no known gaps.
 *
 * 6.1 is not booted: it predates BPF arenas (6.9), and the fixture holds one.
 *
 * Needs `sh tools/vm/setup.sh` (root). About 35 s per kernel on 2 cores.
 */

import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { Btf } from "../../src/btf/mod.ts";
import { hex } from "../../src/guest/errors.ts";
import { ignoreUnless, REQUIRE_ALL } from "../_support/env.ts";
import {
  checkIds,
  type ContractSubject,
  runAccessorContract,
} from "../contract/accessor_contract.ts";
import type { ProgramRole } from "../contract/program_spec.ts";
import type { Role } from "../contract/spec.ts";
import { agentJson, bootUntil, CACHE, ROOT } from "./harness.ts";

const AGENT = `${ROOT}/tests/vm/contract_agent.ts`;
const CONTRACT_KERNELS = ["k612", "k73"] as const;

function kernelCached(kernel: string): boolean {
  try {
    return Deno.statSync(`${CACHE}/${kernel}/vmlinuz`).isFile;
  } catch {
    return false;
  }
}

/** What the agent printed about the fixture it holds. */
interface AgentFixture {
  release: string;
  pid: number;
  cpus: number;
  names: Record<Role, string>;
  arenaName: string;
  programNames: Record<ProgramRole, string>;
  taskBtf: string;
}

/** What the agent's in-guest `deno test` run of the live contract reported. */
interface LiveRun {
  code: number;
  steps: { name: string; result: string }[];
  summary: string | null;
  ms: number;
  stdout?: string;
  stderr?: string;
}

function fromHex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/**
 * The kernel address of the thread group leader `pid`, found by walking
 * `init_task.tasks` with the guest's BTF offsets: a path independent of the
 * local-storage walk whose owners the contract compares against it.
 */
function taskAddress(guest: GuestMemMapAccessor, pid: number): bigint {
  const btf = Btf.parse(guest.kernel.btfBytes());
  const tasks = BigInt(btf.memberOffset("task_struct", "tasks").offset);
  const pidAt = BigInt(btf.memberOffset("task_struct", "pid").offset);
  const space = guest.kernel.space;
  const head = guest.kernel.symbol("init_task") + tasks;
  const found: bigint[] = [];
  let node = space.mustU64(head, "init_task.tasks.next");
  for (let n = 0; node !== head; n++) {
    assert.ok(n < 100_000, "init_task.tasks does not come back to its head");
    const task = node - tasks;
    if (space.mustU32(task + pidAt, "task_struct.pid") === pid) {
      found.push(task);
    }
    node = space.mustU64(node, "task_struct.tasks.next");
  }
  assert.equal(found.length, 1, `one task with pid ${pid}`);
  return found[0]!;
}

for (const kernel of CONTRACT_KERNELS) {
  Deno.test({
    name:
      `a real frozen ${kernel} guest meets the BpfMapAccessor contract, live inside and from its RAM`,
    // Shared with the other VM tests: QEMU must boot the cached kernel.
    ignore: ignoreUnless("qemu") || (!REQUIRE_ALL && !kernelCached(kernel)),
    sanitizeResources: false,
    sanitizeOps: false,
    async fn(t): Promise<void> {
      assert.ok(
        kernelCached(kernel),
        `${kernel} missing: run \`sh tools/vm/setup.sh\` first`,
      );
      const started = performance.now();
      await using guest = await bootUntil(
        { kernel, agent: AGENT },
        /BPFMAP-AGENT-(READY|ERROR)/,
        240_000,
      );
      const ready = performance.now() - started;
      const consoleText = guest.console();
      assert.ok(
        !consoleText.includes("BPFMAP-AGENT-ERROR"),
        consoleText.slice(consoleText.indexOf("BPFMAP-AGENT")),
      );

      // Inside: the guest's kernel through bpf(), by the host's own test file.
      const live = agentJson(consoleText, "live-contract") as LiveRun;
      await t.step("live backend inside the guest", () => {
        assert.equal(live.code, 0, `${live.stdout}\n${live.stderr}`);
        assert.match(
          live.summary ?? "",
          /^ok \| 1 passed \(\d+ steps\) \| 0 failed/,
        );
        // Every check ran and passed: none ignored, none missing, none renamed as a gap.
        assert.deepEqual(
          live.steps,
          checkIds().map((name) => ({ name, result: "ok" })),
        );
      });

      // Outside: the same fixture, held by the agent, read from the frozen RAM.
      const fixture = agentJson(
        consoleText,
        "contract-fixture",
      ) as AgentFixture;
      await guest.qmp.stop();
      assert.equal(await guest.qmp.status(), "paused");
      const frozenAt = performance.now();
      let owner: bigint | null = null;
      let missingId = 0;
      const openFrozen = (): ContractSubject => {
        const accessor = GuestMemMapAccessor.openRamFile(guest.ramPath);
        try {
          assert.equal(accessor.kernelRelease, fixture.release);
          if (owner === null) {
            owner = taskAddress(accessor, fixture.pid);
            missingId = 0x7ffffff0;
            while (
              accessor.mapById(missingId) !== null ||
              accessor.programById(missingId) !== null
            ) missingId--;
          }
          const key = new Uint8Array(8);
          new DataView(key.buffer).setBigUint64(0, owner, true);
          return {
            accessor,
            names: fixture.names,
            cpus: fixture.cpus,
            // A guest's task-storage key is the owner's task_struct address,
            // meaningful after the read: the exact bytes are checked.
            taskEntries: [{ owner: hex(owner), keyLength: 8, key }],
            // A real 6.9+ kernel has struct bpf_arena, and the agent touched
            // the spec's pages through its mapping: the arena is checked.
            arenaName: fixture.arenaName,
            taskBtf: fromHex(fixture.taskBtf),
            missingId,
            programNames: fixture.programNames,
            knownGaps: new Map(),
            [Symbol.dispose](): void {
              accessor.close();
            },
          };
        } catch (error) {
          accessor.close();
          throw error;
        }
      };
      await t.step("guest-memory backend on the frozen RAM", async (t) => {
        await runAccessorContract(t, openFrozen);
      });
      console.log(
        `${fixture.release}: contract ${checkIds().length} checks live in the guest (deno test ${live.ms} ms) ` +
          `and on its frozen RAM (${
            Math.round(performance.now() - frozenAt)
          } ms); boot to ready ${Math.round(ready)} ms`,
      );
    },
  });
}
