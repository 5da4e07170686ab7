/**
 * Host-side cost of reading an aarch64 guest next to an x86-64 one: boots the
 * 6.12 test guests of both architectures (4K pages) with the same agent,
 * freezes each, and times opening the RAM file (VMCOREINFO scan, kallsyms,
 * BTF) plus reading every map's contents, best of `BENCH_ROUNDS` (default 5:
 * the cores are shared and only the floor says what the code costs).
 *
 * Prints both figures and the ratio aarch64/x86-64 (target: at most 1.5x).
 * Usage: `deno task bench-guest-arch` (root; after `sh tools/vm/setup.sh`).
 *
 * @module
 */
// deno-lint-ignore-file no-console

import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import { bootUntil, ROOT } from "../tests/vm/harness.ts";
import { readEverything } from "../tests/vm/mutate.ts";

const AGENT = `${ROOT}/tests/vm/guest_agent.ts`;
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 5);

async function bestReadMs(
  kernel: string,
  arch: "x86_64" | "aarch64",
): Promise<{ ms: number; release: string; values: number }> {
  await using guest = await bootUntil(
    { kernel, agent: AGENT, arch },
    /BPFMAP-AGENT-(READY|ERROR)/,
    300_000,
  );
  if (guest.console().includes("BPFMAP-AGENT-ERROR")) {
    throw new Error(`${kernel}: the guest agent failed`);
  }
  await guest.qmp.stop();
  let best = Infinity;
  let release = "";
  let values = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
    values = readEverything(memory);
    best = Math.min(best, performance.now() - t0);
    release = memory.release;
  }
  return { ms: best, release, values };
}

const arm = await bestReadMs("a612", "aarch64");
const x86 = await bestReadMs("k612", "x86_64");
const ratio = arm.ms / x86.ms;
console.log(
  `open + read every map (best of ${ROUNDS}): aarch64 ${arm.release} ${
    arm.ms.toFixed(0)
  } ms (${arm.values} values), x86-64 ${x86.release} ${
    x86.ms.toFixed(0)
  } ms (${x86.values} values): ${ratio.toFixed(2)}x (target <= 1.5x)`,
);
