/**
 * Runs inside the contract VM test's guest (see tools/vm/build_initramfs.sh).
 *
 * First it runs `tests/contract/live_contract_test.ts` with `deno test`: the
 * guest's own kernel held to the contract through `BpfSyscallAccessor`, by
 * the same file the host runs. It prints each step's result as
 * `BPFMAP-JSON-BEGIN live-contract ... END`.
 *
 * Then it creates the contract fixture once more with
 * `createContractFixture()`, holds it (maps, task storage of this process,
 * the arena mapping, programs), prints what the host's frozen-RAM subject
 * needs as `BPFMAP-JSON-BEGIN contract-fixture ... END`, prints
 * `BPFMAP-AGENT-READY`, and waits for the host to freeze the VM.
 *
 * @module
 */
// deno-lint-ignore-file no-console

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import { createContractFixture } from "../contract/live_fixture.ts";

const LIVE_TEST = new URL("../contract/live_contract_test.ts", import.meta.url)
  .pathname;

function block(tag: string, value: unknown): void {
  console.log(`BPFMAP-JSON-BEGIN ${tag}`);
  console.log(JSON.stringify(value));
  console.log(`BPFMAP-JSON-END ${tag}`);
}

/** One `deno test` step line of the pretty reporter: `  name ... ok (3ms)`. */
const STEP = /^ {2}(\S.*?) \.\.\. (ok|FAILED|ignored)\b/;

async function runLiveContract(): Promise<void> {
  const started = performance.now();
  // --no-check: type-checking under TCG would take minutes, and the host's
  // `deno task ok` has already checked this file.
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--no-check", "-A", "--no-config", LIVE_TEST],
    // A skip must not pass for a run: the guest is root, so nothing may be ignored.
    env: { BPFMAP_REQUIRE_PRIVILEGED: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  const steps = text.split("\n").flatMap((line) => {
    const m = STEP.exec(line.replace(/\r$/, ""));
    return m ? [{ name: m[1]!, result: m[2]! }] : [];
  });
  block("live-contract", {
    code: output.code,
    steps,
    summary: text.split("\n").find((l) => /^(ok|FAILED) \|/.test(l)) ?? null,
    ms: Math.round(performance.now() - started),
    // The whole report only when something went wrong, to keep the console short.
    ...(output.code === 0 ? {} : {
      stdout: text.slice(-6000),
      stderr: new TextDecoder().decode(output.stderr).slice(-3000),
    }),
  });
}

async function main(): Promise<void> {
  console.log(`BPFMAP-AGENT contract kernel=${Deno.osRelease()}`);
  // Before the held fixture exists, so the two runs cannot see each other's maps.
  await runLiveContract();
  const accessor = new BpfSyscallAccessor();
  const fixture = createContractFixture(accessor.possibleCpus);
  (globalThis as { heldFixture?: unknown }).heldFixture = fixture;
  block("contract-fixture", {
    release: accessor.kernelRelease,
    pid: fixture.taskOwnerPid,
    cpus: fixture.cpus,
    names: fixture.names,
    arenaName: fixture.arenaName,
    programNames: fixture.programNames,
    taskBtf: Array.from(
      fixture.taskBtf,
      (b) => b.toString(16).padStart(2, "0"),
    ).join(""),
  });
  console.log("BPFMAP-AGENT-READY");
}

try {
  await main();
} catch (error) {
  console.log("BPFMAP-AGENT-ERROR " + String((error as Error)?.stack ?? error));
}
setInterval(() => {}, 1 << 30);
