/**
 * Reading every map of the VM test's guest through `--guest-pid`
 * (/proc/PID/mem) next to the same read from its RAM file, in one run:
 *
 * 1. boots the 6.12 test guest with RAM in a `/dev/shm` file, freezes it,
 *    and times `bpfmap dump --json` (in-process CLI: open, find the kernel,
 *    read every map) with `--guest-mem FILE` and with `--guest-pid PID`,
 *    alternating, the outputs checked identical;
 * 2. boots the same guest on QEMU's anonymous memory (no file) and times
 *    `--guest-pid` there.
 *
 * Prints medians and the ratio pid/file. Usage: `deno run -A
 * bench/guest_sources_bench.ts` (root; after `sh tools/vm/setup.sh`).
 * `BENCH_ROUNDS` sets the rounds (default 7).
 *
 * @module
 */
// deno-lint-ignore-file no-console

import { runCli } from "../tests/_support/cli.ts";
import { bootUntil, ROOT } from "../tests/vm/harness.ts";

const AGENT = `${ROOT}/tests/vm/guest_agent.ts`;

async function timed(args: string[]): Promise<{ ms: number; out: string }> {
  const started = performance.now();
  const run = await runCli(...args);
  const ms = performance.now() - started;
  if (run.code !== 0) {
    throw new Error(`bpfmap ${args.join(" ")}: ${run.stderr}`);
  }
  // the report names its source and time: the rest must agree
  const out = run.stdout.replace(/"takenAt":"[^"]*","source":"[^"]*",/, "");
  return { ms, out };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Runs the benchmark and prints one line per source. */
export async function main(rounds: number): Promise<void> {
  const file: number[] = [];
  const pid: number[] = [];
  let bytes = 0;
  {
    await using guest = await bootUntil(
      { kernel: "k612", agent: AGENT },
      /BPFMAP-AGENT-(READY|ERROR)/,
      180_000,
    );
    await guest.qmp.stop();
    for (let i = 0; i < rounds; i++) {
      const a = await timed(["dump", "--json", "--guest-mem", guest.ramPath]);
      const b = await timed([
        "dump",
        "--json",
        "--guest-pid",
        String(guest.pid),
      ]);
      if (a.out !== b.out) {
        throw new Error("--guest-pid and --guest-mem differ");
      }
      bytes = a.out.length;
      file.push(a.ms);
      pid.push(b.ms);
    }
  }
  const anonymous: number[] = [];
  {
    await using guest = await bootUntil(
      { kernel: "k612", agent: AGENT, ramFile: false },
      /BPFMAP-AGENT-(READY|ERROR)/,
      180_000,
    );
    await guest.qmp.stop();
    for (let i = 0; i < rounds; i++) {
      anonymous.push(
        (await timed(["dump", "--json", "--guest-pid", String(guest.pid)])).ms,
      );
    }
  }
  const f = median(file);
  const p = median(pid);
  const q = median(anonymous);
  console.log(
    `dump --json of every map (${bytes} bytes of JSON), median of ${rounds}:`,
  );
  console.log(`  --guest-mem (RAM file)                 ${f.toFixed(0)} ms`);
  console.log(
    `  --guest-pid (same guest, /proc/PID/mem) ${p.toFixed(0)} ms  ratio ${
      (p / f).toFixed(2)
    }x`,
  );
  console.log(
    `  --guest-pid (anonymous RAM, no file)    ${q.toFixed(0)} ms  ratio ${
      (q / f).toFixed(2)
    }x`,
  );
}

if (import.meta.main) {
  await main(Number(Deno.env.get("BENCH_ROUNDS") ?? 7));
}
