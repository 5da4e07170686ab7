/**
 * Runs inside a 7.3 test guest: reproduces the sched_ext swap window with
 * two instances of the kernel's own scx_simple (`/scx/scx_simple`).
 *
 * 1. Starts instance A, waits for `enabled`, prints `BPFMAP-SWAP-A` (the
 *    live decision while A runs) and holds A's `scx_simp.bss` with
 *    `openBpfMapFdByName` (the lowest id: A's).
 * 2. Stops A with SIGINT (its loader destroys the link and exits), waits for
 *    `disabled` and for A's programs and ops map to be freed; A's `.bss`
 *    stays, held by this process.
 * 3. Starts instance B, waits for `enabled`, and prints `BPFMAP-SWAP-LIVE`:
 *    `activeScheduler` on bpf(), the struct_ops map typed by the live
 *    reader, both `.bss` copies as bpf() reads them; then
 *    `BPFMAP-SWAP-READY` and sleeps 2 s of guest time, B still running, for
 *    the host to freeze the guest and read its RAM.
 * 4. Stops B too while holding its ops map (registered, attached by no
 *    link: struct_ops cannot decide), prints `BPFMAP-SWAP-DETACHED` with the
 *    live decision (rule `name`) and `BPFMAP-SWAP-DONE`.
 *
 * @module
 */
// deno-lint-ignore-file no-console

import {
  activeScheduler,
  BpfSyscallAccessor,
  MapType,
  openBpfMapFdByName,
} from "../../mod.ts";
import { mapGetFdById, mapGetInfo } from "../../src/sys/bpf.ts";

const STATE = "/sys/kernel/sched_ext/state";
const accessor = new BpfSyscallAccessor();

const readState = (): string => {
  try {
    return Deno.readTextFileSync(STATE).trim();
  } catch {
    return "missing";
  }
};

const hexOf = (b: Uint8Array | null): string | null =>
  b === null ? null : Array.from(b, (x) => x.toString(16).padStart(2, "0"))
    .join("");

/** u64 as text: the host parses these lines with JSON.parse. */
const json = (value: unknown): string =>
  JSON.stringify(value, (_, v) => typeof v === "bigint" ? v.toString() : v);

async function until(
  what: string,
  done: () => boolean,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  while (!done()) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `${what} not reached after ${timeoutMs} ms (${STATE}: ${readState()})`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - started;
}

function startSimple(): { child: Deno.ChildProcess; errors: Promise<string> } {
  const child = new Deno.Command("/scx/scx_simple", {
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const errors = (async () => {
    let text = "";
    for await (const chunk of child.stderr) {
      text += new TextDecoder().decode(chunk);
    }
    return text;
  })();
  return { child, errors };
}

async function enabled(
  instance: { child: Deno.ChildProcess; errors: Promise<string> },
): Promise<number> {
  try {
    return await until("enabled", () => readState() === "enabled", 60_000);
  } catch (error) {
    instance.child.kill("SIGKILL");
    throw new Error(
      `${(error as Error).message}; loader: ${await instance.errors}`,
    );
  }
}

/** The struct_ops map as the live reader types it, in a comparable shape. */
function typedOps(id: number): unknown {
  const map = accessor.mapById(id);
  if (map === null || map.type !== MapType.STRUCT_OPS) return null;
  const typed = accessor.readTypeDump(map);
  if (typed?.reader !== "struct_ops") return typed;
  const { structName, state, refcnt, members } = typed.structOps;
  return { structName, state, refcnt, members };
}

async function main(): Promise<void> {
  console.log(`BPFMAP-AGENT kernel=${Deno.osRelease()} state=${readState()}`);
  const a = startSimple();
  const aEnabledMs = await enabled(a);
  const whileA = activeScheduler(accessor);
  using held = openBpfMapFdByName("scx_simp.bss");
  const aBssId = mapGetInfo(held.fd).id;
  console.log(
    "BPFMAP-SWAP-A " +
      json({ enabledMs: Math.round(aEnabledMs), decision: whileA, aBssId }),
  );

  Deno.kill(a.child.pid, "SIGINT");
  const aExit = await a.child.status;
  await until("disabled", () => readState() === "disabled", 10_000);
  // The ops map and programs are freed after an RCU grace period.
  await until(
    "A's programs and ops map freed",
    () =>
      whileA.attachedProgramIds.every((id) =>
        accessor.programById(id) === null
      ) && accessor.mapById(whileA.structOpsMapId ?? 0) === null,
    10_000,
  );

  const b = startSimple();
  const bEnabledMs = await enabled(b);
  await new Promise((r) => setTimeout(r, 300)); // B schedules a little
  const decision = activeScheduler(accessor);
  const copies = accessor.maps().filter((m) => m.name === "scx_simp.bss");
  console.log(
    "BPFMAP-SWAP-LIVE " + json({
      enabledMs: Math.round(bEnabledMs),
      aExitCode: aExit.code,
      aBssId,
      decision,
      ops: decision.structOpsMapId === null
        ? null
        : typedOps(decision.structOpsMapId),
      bss: copies.map((m) => ({
        id: m.id,
        value: hexOf(accessor.readArray(m, 0)),
      })),
      aProgramsGone: whileA.attachedProgramIds.filter((id) =>
        accessor.programById(id) === null
      ).length,
      state: readState(),
      ops_name: Deno.readTextFileSync("/sys/kernel/sched_ext/root/ops").trim(),
    }),
  );
  // Held like the .bss: an fd counts in both refcnt and usercnt, so it does
  // not make the map look attached, but keeps it (and B's programs) after B.
  using bOps = mapGetFdById(decision.structOpsMapId!);
  console.log("BPFMAP-SWAP-READY");
  // The host freezes the guest now and reads it; B keeps running, A's .bss
  // stays held. The guest clock stands still while it is frozen.
  await new Promise((r) => setTimeout(r, 2000));

  // Phase 2: B stops too, its ops map held: registered but attached by no
  // link, so struct_ops cannot decide and the name rule does.
  Deno.kill(b.child.pid, "SIGINT");
  const bExit = await b.child.status;
  await until("disabled", () => readState() === "disabled", 10_000);
  let fallback = activeScheduler(accessor);
  await until("B's ops map detached", () => {
    fallback = activeScheduler(accessor);
    return fallback.rule !== "struct_ops";
  }, 10_000);
  console.log(
    "BPFMAP-SWAP-DETACHED " + json({
      bExitCode: bExit.code,
      heldOps: mapGetInfo(bOps.fd).id,
      decision: fallback,
      state: readState(),
    }),
  );
  console.log("BPFMAP-SWAP-DONE");
  await new Promise((r) => setTimeout(r, 1 << 30));
}

try {
  await main();
} catch (error) {
  console.log("BPFMAP-AGENT-ERROR " + String((error as Error)?.stack ?? error));
}
setInterval(() => {}, 1 << 30);
