/**
 * sched_ext views as text, the way a person debugging a stall reads them:
 * the root scheduler and why it exited first, then the event counters that
 * are not zero, then each CPU's runqueue, then the DSQs; and as JSON with
 * every u64 exact.
 *
 * @module
 */

import { toJson } from "../btf/json.ts";
import {
  scxAvailable,
  type ScxCpusView,
  type ScxDsqsView,
  type ScxDsqView,
  type ScxEventsView,
  type ScxRootView,
  type ScxSection,
  type ScxTaskView,
  type ScxViews,
} from "../guest/scx/types.ts";

const hex = (v: bigint): string => `0x${v.toString(16)}`;

function section<T extends object>(
  title: string,
  section: ScxSection<T>,
  out: string[],
): section is T {
  if (scxAvailable(section)) return true;
  out.push(`${title}: unavailable (${section.unavailable})`);
  return false;
}

function taskLine(task: ScxTaskView): string {
  const flags = task.flagNames.length > 0 ? task.flagNames.join("|") : "-";
  return `pid ${task.pid} ${task.comm} weight ${task.weight} dsq_vtime ${task.dsqVtime} slice ${task.slice} runnable_at ${task.runnableAt} dsq ${
    task.dsqId === null ? "-" : hex(task.dsqId)
  } flags ${hex(BigInt(task.flags))} ${flags}`;
}

/** A DSQ's line and its tasks' (indented under it), each prefixed by `indent`. */
function dsqLines(
  label: string,
  dsq: ScxDsqView,
  indent: string,
  out: string[],
): void {
  const name = dsq.idName ?? hex(dsq.id);
  const shown = dsq.tasks.length < dsq.nr ? ` (first ${dsq.tasks.length})` : "";
  out.push(`${indent}${label} ${name}: nr ${dsq.nr}${shown}`);
  for (const task of dsq.tasks) out.push(`${indent}  ${taskLine(task)}`);
  for (const note of dsq.notes) out.push(`${indent}  note: ${note}`);
}

/** Text lines of the root section (state, scheduler, exit), without a heading. */
export function scxRootLines(root: ScxRootView): string[] {
  const out: string[] = [];
  const globals = [
    root.switchAll === null ? null : `switch_all ${root.switchAll ? 1 : 0}`,
    root.enableSeq === null ? null : `enable_seq ${root.enableSeq}`,
    root.nrRejected === null ? null : `nr_rejected ${root.nrRejected}`,
    root.hotplugSeq === null ? null : `hotplug_seq ${root.hotplugSeq}`,
    root.jiffies === null ? null : `jiffies ${root.jiffies}`,
  ].filter((s) => s !== null);
  out.push(`sched_ext: ${root.state} (${globals.join(", ")})`);
  const sched = root.scheduler;
  if (!scxAvailable(sched)) {
    out.push(`root scheduler: none (${sched.unavailable})`);
    return out;
  }
  out.push(
    `root scheduler: ${sched.ops}${
      sched.opsStruct === null ? "" : ` (${sched.opsStruct})`
    }${
      sched.foundVia === "scx_root" || sched.foundVia === "sysfs"
        ? ""
        : `, found via ${sched.foundVia} (scx_root is already cleared)`
    }`,
  );
  if (sched.exitKind !== null) {
    out.push(
      `  exit_kind: ${sched.exitKind.name ?? sched.exitKind.value}${
        sched.exitKindAddress === null
          ? ""
          : ` at ${hex(sched.exitKindAddress)}`
      }`,
    );
  }
  const exit = sched.exit;
  if (exit && exit.kind.value !== 0) {
    out.push(
      `  exit: ${exit.kind.name ?? exit.kind.value} (${
        exit.reason ?? "?"
      }), exit_code ${exit.exitCode}, cpu ${exit.exitCpu}`,
    );
    if (exit.msg) out.push(`  msg: ${exit.msg}`);
  }
  if (sched.watchdogTimeoutJiffies !== null) {
    out.push(
      `  watchdog_timeout: ${sched.watchdogTimeoutJiffies} jiffies (ops.timeout_ms ${
        sched.timeoutMs ?? "?"
      })`,
    );
  }
  return out;
}

/** Text lines of the event counters that are not zero. */
export function scxEventLines(events: ScxEventsView): string[] {
  const nonZero = events.counters.filter((c) => c.value !== 0n);
  return [
    `${nonZero.length} of ${events.counters.length} counters non-zero`,
    ...nonZero.map((c) => `  ${c.name} ${c.value}`),
  ];
}

/** Text lines of each CPU's `rq->scx`: running task, local DSQ and its tasks. */
export function scxCpuLines(cpus: ScxCpusView): string[] {
  const out: string[] = [];
  for (const cpu of cpus.cpus) {
    out.push(
      `cpu ${cpu.cpu}: nr_running ${cpu.nrRunning} flags ${
        hex(BigInt(cpu.flags))
      } ${cpu.flagNames.join("|") || "-"}`,
    );
    if (cpu.current) {
      out.push(`  running: pid ${cpu.current.pid} ${cpu.current.comm}`);
    }
    dsqLines("local", cpu.localDsq, "  ", out);
  }
  return out;
}

/** Text lines of the global, user and (busy) bypass DSQs. */
export function scxDsqLines(dsqs: ScxDsqsView): string[] {
  const out: string[] = [];
  for (const dsq of dsqs.global) dsqLines("global", dsq, "", out);
  for (const dsq of dsqs.user) dsqLines("user", dsq, "", out);
  if (dsqs.user.length === 0) out.push("no user DSQs");
  // bypass DSQs matter only while the scheduler is bypassed: the busy ones
  for (const { cpu, dsq } of dsqs.bypass) {
    if (dsq.nr > 0 || dsq.notes.length > 0) {
      dsqLines(`bypass (cpu ${cpu})`, dsq, "", out);
    }
  }
  return out;
}

/**
 * The views as text: root first, then the non-zero events, each CPU, the
 * DSQs; a section that is unavailable says why on one line.
 *
 * @example
 * ```ts ignore
 * import { readLiveScxViews } from "../accessor/scx_live.ts";
 * console.log(scxViewsToText(readLiveScxViews()));
 * ```
 */
export function scxViewsToText(views: ScxViews): string {
  const out: string[] = [];
  if (section("sched_ext", views.root, out)) {
    out.push(...scxRootLines(views.root));
  }
  if (section("events", views.events, out)) {
    out.push("events:", ...scxEventLines(views.events).map((l) => `  ${l}`));
  }
  if (section("cpus", views.cpus, out)) {
    out.push("cpus:", ...scxCpuLines(views.cpus).map((l) => `  ${l}`));
  }
  if (section("dsqs", views.dsqs, out)) {
    out.push("dsqs:", ...scxDsqLines(views.dsqs).map((l) => `  ${l}`));
  }
  return out.join("\n") + "\n";
}

/** The views as JSON text, every u64 exact (bare digits). */
export function scxViewsToJson(views: ScxViews, indent?: number): string {
  return toJson(
    views as unknown as Parameters<typeof toJson>[0],
    indent === undefined ? {} : { indent },
  );
}
