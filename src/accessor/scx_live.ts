/**
 * The sched_ext views of the running kernel, from what it exposes in sysfs
 * (`kernel/sched/ext/ext.c`: `/sys/kernel/sched_ext/{state,switch_all,
 * nr_rejected,hotplug_seq,enable_seq}` and `root/{ops,events}`). The kernel
 * exposes no per-CPU runqueue or DSQ state there: those sections say so.
 *
 * @module
 */

import type {
  ScxEventCounter,
  ScxRootView,
  ScxSection,
  ScxViews,
} from "../guest/scx/types.ts";

/** Where the kernel puts sched_ext's sysfs directory. */
export const SCX_SYSFS = "/sys/kernel/sched_ext";

/** Options for {@linkcode readLiveScxViews}. */
export interface LiveScxOptions {
  /** The sysfs directory (default {@linkcode SCX_SYSFS}). */
  sysfs?: string;
}

const NOT_IN_SYSFS =
  "the live kernel does not expose it in sysfs (read a frozen guest's memory with --guest-mem for it)";

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

function readBigint(path: string): bigint | null {
  const text = readText(path);
  return text !== null && /^-?\d+$/.test(text) ? BigInt(text) : null;
}

/** `root/events` lines (`SCX_EV_NAME value`), in the file's order. */
export function parseEventsFile(text: string): ScxEventCounter[] {
  const counters: ScxEventCounter[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\S+)\s+(\d+)$/.exec(line.trim());
    if (match) counters.push({ name: match[1]!, value: BigInt(match[2]!) });
  }
  return counters;
}

function rootView(dir: string): ScxSection<ScxRootView> {
  const state = readText(`${dir}/state`);
  if (state === null) return { unavailable: `${dir}/state is missing` };
  const switchAll = readText(`${dir}/switch_all`);
  const ops = readText(`${dir}/root/ops`);
  return {
    state,
    switchAll: switchAll === null ? null : switchAll !== "0",
    nrRejected: readBigint(`${dir}/nr_rejected`),
    hotplugSeq: readBigint(`${dir}/hotplug_seq`),
    enableSeq: readBigint(`${dir}/enable_seq`),
    jiffies: null,
    scheduler: ops === null
      ? { unavailable: `no scheduler attached (${dir}/root/ops is absent)` }
      : {
        ops,
        opsStruct: null,
        foundVia: "sysfs",
        address: null,
        instanceId: null,
        exitKind: null,
        exitKindAddress: null,
        exit: null,
        watchdogTimeoutJiffies: null,
        timeoutMs: null,
      },
  };
}

/**
 * The views the live kernel's sysfs can give: root state, the scheduler's
 * ops name and its event counters. Never throws for a kernel without
 * sched_ext or without a scheduler: the sections say so.
 *
 * @example
 * ```ts ignore
 * import { readLiveScxViews } from "./scx_live.ts";
 * const views = readLiveScxViews();
 * if ("state" in views.root) console.log(views.root.state);
 * ```
 */
export function readLiveScxViews(options: LiveScxOptions = {}): ScxViews {
  const dir = options.sysfs ?? SCX_SYSFS;
  const guarded = <T>(read: () => ScxSection<T>): ScxSection<T> => {
    try {
      return read();
    } catch (error) {
      return { unavailable: `reading ${dir}: ${(error as Error).message}` };
    }
  };
  let present: boolean;
  try {
    present = Deno.statSync(dir).isDirectory;
  } catch {
    present = false;
  }
  if (!present) {
    const none = {
      unavailable:
        `this kernel has no ${dir} (built without CONFIG_SCHED_CLASS_EXT)`,
    };
    return { source: "live", root: none, events: none, cpus: none, dsqs: none };
  }
  return {
    source: "live",
    root: guarded(() => rootView(dir)),
    events: guarded(() => {
      const text = readText(`${dir}/root/events`);
      return text === null
        ? {
          unavailable: `no scheduler attached (${dir}/root/events is absent)`,
        }
        : { counters: parseEventsFile(text) };
    }),
    cpus: { unavailable: `per-CPU rq->scx: ${NOT_IN_SYSFS}` },
    dsqs: { unavailable: `DSQs: ${NOT_IN_SYSFS}` },
  };
}
