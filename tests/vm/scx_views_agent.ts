/**
 * Runs inside a 7.3 test guest for scx_views_vm_test.ts: starts scx_simple
 * (the kernel's own, with its C loader) under load, then reports what the
 * guest itself says about sched_ext, in two phases the host freezes after:
 *
 * 1. `BPFMAP-SCXV-RUNNING {...}`: state, ops, the raw `root/events` text, the
 *    live backend's views (readLiveScxViews, JSON), and the busy pids — read
 *    just before the host freezes the guest (counters only grow after it).
 * 2. The loader is stopped (SIGSTOP: it keeps its struct_ops link, so the
 *    exited scheduler stays allocated), sysrq `S` disables the scheduler;
 *    once `state` is `disabled`: `BPFMAP-SCXV-EXITED {...}` with dmesg's
 *    `disabled (...)` line.
 *
 * With the argument `error` it runs scx_qmap with `-e 1500` instead (the
 * scheduler calls `scx_bpf_error("test triggering error")` after 1500
 * enqueues): the loader is stopped as soon as it has armed the count, busy
 * loops make the enqueues, and once the kernel has disabled the scheduler
 * `BPFMAP-SCXV-ERRORED {...}` carries dmesg's lines about it.
 *
 * @module
 */
// deno-lint-ignore-file no-console

import { readLiveScxViews } from "../../src/accessor/scx_live.ts";
import { scxViewsToJson } from "../../src/dump/scx_format.ts";

const SCX = "/sys/kernel/sched_ext";
const read = (path: string): string => {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return "missing";
  }
};

async function waitState(want: string, timeoutMs: number): Promise<void> {
  const started = performance.now();
  while (read(`${SCX}/state`) !== want) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `${SCX}/state is "${read(`${SCX}/state`)}", not "${want}"`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function dmesg(): string {
  const out = new Deno.Command("/bin/dmesg", { stdout: "piped" }).outputSync();
  return new TextDecoder().decode(out.stdout);
}

async function main(): Promise<void> {
  console.log(
    `BPFMAP-AGENT kernel=${Deno.osRelease()} state=${read(`${SCX}/state`)}`,
  );
  const loader = new Deno.Command("/scx/scx_simple", {
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitState("enabled", 60_000);
  // more busy loops than CPUs: some are always waiting on a DSQ
  const busy = Array.from(
    { length: 4 },
    () =>
      new Deno.Command("/bin/sh", {
        args: ["-c", "while :; do :; done"],
        stdout: "null",
        stderr: "null",
      }).spawn(),
  );
  await new Promise((r) => setTimeout(r, 1500));
  const live = readLiveScxViews();
  console.log(
    "BPFMAP-SCXV-RUNNING " + JSON.stringify({
      state: read(`${SCX}/state`),
      ops: read(`${SCX}/root/ops`),
      events: read(`${SCX}/root/events`),
      enableSeq: read(`${SCX}/enable_seq`),
      switchAll: read(`${SCX}/switch_all`),
      busy: busy.map((b) => b.pid),
      loaderPid: loader.pid,
      live: scxViewsToJson(live),
    }),
  );
  // the host freezes, reads and resumes the guest now (its clock stands still meanwhile)
  await new Promise((r) => setTimeout(r, 3000));

  Deno.kill(loader.pid, "SIGSTOP");
  Deno.writeTextFileSync("/proc/sysrq-trigger", "S");
  await waitState("disabled", 20_000);
  for (const b of busy) Deno.kill(b.pid, "SIGKILL");
  const line =
    dmesg().split("\n").find((l) =>
      /sched_ext: BPF scheduler "simple" disabled/.test(l)
    ) ?? "";
  console.log(
    "BPFMAP-SCXV-EXITED " + JSON.stringify({
      state: read(`${SCX}/state`),
      dmesg: line,
      live: scxViewsToJson(readLiveScxViews()),
    }),
  );
}

async function errorRun(): Promise<void> {
  console.log(`BPFMAP-AGENT kernel=${Deno.osRelease()} mode=error`);
  const loader = new Deno.Command("/scx/scx_qmap", {
    args: ["-e", "1500"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  // "scx_qmap started" comes after the loader armed the error count
  let printed = "";
  const reader = loader.stdout.getReader();
  const deadline = performance.now() + 90_000;
  while (!printed.includes("scx_qmap started")) {
    const { value, done } = await reader.read();
    if (done || performance.now() > deadline) {
      throw new Error(`scx_qmap did not start: ${printed}`);
    }
    printed += new TextDecoder().decode(value);
  }
  // stopped, the loader keeps its struct_ops link: the failed scheduler stays allocated
  Deno.kill(loader.pid, "SIGSTOP");
  const busy = Array.from(
    { length: 4 },
    () =>
      new Deno.Command("/bin/sh", {
        args: ["-c", "while :; do :; done"],
        stdout: "null",
        stderr: "null",
      }).spawn(),
  );
  await waitState("disabled", 90_000);
  for (const b of busy) Deno.kill(b.pid, "SIGKILL");
  const lines = dmesg().split("\n").filter((l) =>
    /sched_ext: (BPF scheduler "qmap" disabled|qmap: )/.test(l)
  );
  console.log(
    "BPFMAP-SCXV-ERRORED " + JSON.stringify({
      state: read(`${SCX}/state`),
      dmesg: lines,
    }),
  );
}

try {
  if (Deno.args.includes("error")) await errorRun();
  else await main();
} catch (error) {
  console.log("BPFMAP-AGENT-ERROR " + String((error as Error)?.stack ?? error));
}
setInterval(() => {}, 1 << 30);
