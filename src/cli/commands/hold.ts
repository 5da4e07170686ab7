/**
 * `bpfmap hold NAME... [-- CMD]`: keep maps alive while CMD runs, or until a
 * signal.
 *
 * @module
 */

import { openBpfMapFdByName } from "../../accessor/pin.ts";
import { mapInfoFromFd } from "../../accessor/syscall.ts";
import { checkName, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { signalExitStatus } from "../signals.ts";

/** Signals passed on to the command: what a terminal or a supervisor sends. */
const FORWARDED: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** The shell's exit status for a child that ended with `status`. */
export function exitStatusOf(status: Deno.CommandStatus): number {
  if (status.signal !== null) {
    return signalExitStatus(status.signal);
  }
  return status.code;
}

/** Runs `bpfmap hold ARGS` (live kernel only). */
export async function hold(context: Context, args: string[]): Promise<number> {
  const separator = args.indexOf("--");
  const names = separator < 0 ? args : args.slice(0, separator);
  const command = separator < 0 ? [] : args.slice(separator + 1);
  if (names.includes("-h") || names.includes("--help")) {
    return context.help("hold");
  }
  const unknown = names.find((n) => n.startsWith("-"));
  if (unknown) throw new UsageError(`unknown option "${unknown}"`, "hold");
  if (names.length === 0) {
    throw new UsageError("hold needs at least one map NAME", "hold");
  }
  for (const name of names) checkName(name, "NAME", "hold");
  if (separator >= 0 && command.length === 0) {
    throw new UsageError("nothing after --: give the COMMAND to run", "hold");
  }
  // Listen before announcing, so a signal sent on seeing "holding" is ours
  // to handle (forward, or end the wait), never a silent death.
  let received: Deno.Signal | undefined;
  let child: Deno.ChildProcess | undefined;
  let wake = (): void => {};
  const woken = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const listeners = FORWARDED.map((signal) => {
    const listener = (): void => {
      received ??= signal;
      if (child) {
        try {
          child.kill(signal);
        } catch {
          // already exited: its status is on its way
        }
      } else {
        wake();
      }
    };
    Deno.addSignalListener(signal, listener);
    return { signal, listener };
  });
  // One owner for every held fd: disposing the stack closes them all.
  using held = new DisposableStack();
  try {
    const fds = names.map((name) => held.use(openBpfMapFdByName(name)));
    const ids = fds.map((fd) => mapInfoFromFd(fd.fd).id);
    context.line(
      `holding ${names.map((n, i) => `"${n}" (id ${ids[i]})`).join(", ")}`,
    );
    if (command.length === 0) {
      await woken;
      return 0;
    }
    if (received) return signalExitStatus(received);
    child = new Deno.Command(command[0]!, {
      args: command.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    // The maps stay held until the command has really exited.
    return exitStatusOf(await child.status);
  } finally {
    for (const { signal, listener } of listeners) {
      Deno.removeSignalListener(signal, listener);
    }
  }
}
