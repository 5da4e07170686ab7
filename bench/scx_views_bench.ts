/**
 * What the sched_ext views cost on a frozen guest: boots the 7.3 test guest
 * with scx_simple under load (the scx_views VM test's agent), freezes it at
 * `BPFMAP-SCXV-RUNNING`, and times, from the RAM file:
 *
 * - `guestScxViews()` on a freshly opened accessor (vmlinux BTF already
 *   parsed by the open, as every reader shares it): the first read, which
 *   also takes the sched_ext layout from BTF;
 * - the same call again on that accessor (memory walks only);
 * - `gatherScheduler()` (active decision + the four view sections), as
 *   `dumpState` and `bpfmap scx` run it.
 *
 * Prints medians over `BENCH_ROUNDS` rounds (default 9) and the tasks seen.
 * Usage: `deno task bench-scx-views` (root; after `sh tools/vm/setup.sh`).
 *
 * @module
 */
// deno-lint-ignore-file no-console

import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import { guestScxViews } from "../src/accessor/scx.ts";
import { gatherScheduler } from "../src/dump/scheduler.ts";
import type { ScxCpusView, ScxDsqsView } from "../src/guest/scx/types.ts";
import { bootUntil, ROOT, SCX_BIN } from "../tests/vm/harness.ts";

const AGENT = `${ROOT}/tests/vm/scx_views_agent.ts`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(rounds: number): Promise<void> {
  await using guest = await bootUntil(
    {
      kernel: "k73",
      agent: AGENT,
      binaries: [`${SCX_BIN}/scx_simple`],
      singleThreadTcg: true,
    },
    /BPFMAP-SCXV-RUNNING [^\n]*\n|BPFMAP-AGENT-ERROR [^\n]*\n/,
    180_000,
  );
  if (guest.console().includes("BPFMAP-AGENT-ERROR")) {
    throw new Error(
      guest.console().slice(guest.console().indexOf("BPFMAP-AGENT")),
    );
  }
  await guest.qmp.stop();
  const first: number[] = [];
  const again: number[] = [];
  const gathered: number[] = [];
  let tasks = 0;
  for (let round = 0; round < rounds; round++) {
    using memory = GuestMemMapAccessor.openRamFile(guest.ramPath);
    let started = performance.now();
    const views = guestScxViews(memory);
    first.push(performance.now() - started);
    started = performance.now();
    guestScxViews(memory);
    again.push(performance.now() - started);
    started = performance.now();
    gatherScheduler(memory);
    gathered.push(performance.now() - started);
    const cpus = (views.cpus as ScxCpusView).cpus;
    const dsqs = views.dsqs as ScxDsqsView;
    tasks = [...cpus.map((c) => c.localDsq), ...dsqs.global, ...dsqs.user]
      .reduce((n, d) => n + d.tasks.length, 0);
  }
  const ms = (v: number[]): string => `${median(v).toFixed(2)} ms`;
  console.log(
    `scx views, 7.3 guest running scx_simple (2 CPUs, ${tasks} queued tasks), median of ${rounds}:`,
  );
  console.log(`  guestScxViews, first on an accessor: ${ms(first)}`);
  console.log(`  guestScxViews, again:                ${ms(again)}`);
  console.log(`  gatherScheduler (active + views):    ${ms(gathered)}`);
  await guest.qmp.cont();
}

await main(Number(Deno.env.get("BENCH_ROUNDS") ?? 9));
