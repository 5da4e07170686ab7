/**
 * The `scheduler` part of a failure report and of `bpfmap scx`: named
 * sections, each gathered on its own so one that fails becomes
 * `{ unavailable: "reason" }` instead of failing the rest. Adding a section
 * is one entry in {@linkcode SCHEDULER_SECTIONS} (its key in
 * {@linkcode SchedulerReport}, how to gather it, how to print it): the
 * report's JSON and text and `bpfmap scx` all pick it up.
 *
 * @module
 */

import {
  type ActiveScheduler,
  activeScheduler,
  type ActiveSchedulerOptions,
} from "../accessor/active_scheduler.ts";
import type { BpfMapAccessor } from "../accessor/types.ts";
import { scxViews, type ScxViewsOptions } from "../accessor/scx.ts";
import type {
  ScxCpusView,
  ScxDsqsView,
  ScxEventsView,
  ScxRootView,
  ScxViews,
} from "../guest/scx/types.ts";
import {
  scxCpuLines,
  scxDsqLines,
  scxEventLines,
  scxRootLines,
} from "./scx_format.ts";

/** A section that could not be gathered, and why (one line). */
export interface SectionUnavailable {
  /** Why the section has no data. */
  unavailable: string;
}

/**
 * The scheduler's state, one member per section; each is the section's
 * data or {@linkcode SectionUnavailable}.
 */
export interface SchedulerReport {
  /**
   * Which sched_ext scheduler is attached and which maps are its own
   * ({@linkcode activeScheduler}); unavailable, with the decision's reason,
   * when no scheduler is attached.
   */
  active: ActiveScheduler | SectionUnavailable;
  /**
   * sched_ext's state and the root scheduler: enable state, ops name, exit
   * kind, exit reason and message, watchdog timeout ({@linkcode scxViews};
   * the live backend has what sysfs shows).
   */
  root: ScxRootView | SectionUnavailable;
  /** The root scheduler's `SCX_EV_*` counters, summed over CPUs, named as sysfs names them. */
  events: ScxEventsView | SectionUnavailable;
  /** Each possible CPU's `rq->scx`: running task, local DSQ and its first tasks (guest only). */
  cpus: ScxCpusView | SectionUnavailable;
  /** The global, user and bypass DSQs and their first tasks (guest only). */
  dsqs: ScxDsqsView | SectionUnavailable;
}

/** What a section's gatherer is given. */
export interface SchedulerGatherOptions {
  /** Passed to {@linkcode activeScheduler} (where sched_ext's sysfs is). */
  active?: ActiveSchedulerOptions;
  /**
   * For the root/events/cpus/dsqs sections ({@linkcode scxViews}): tasks
   * listed per DSQ, and the sysfs directory (default: `active.sysfsDir`,
   * else `/sys/kernel/sched_ext` for the live backend only).
   */
  views?: ScxViewsOptions;
}

/** One section: its key, heading, gatherer and text form. */
export interface SchedulerSection<K extends keyof SchedulerReport> {
  /** The member of {@linkcode SchedulerReport} (and of `bpfmap scx --json`). */
  key: K;
  /** The heading in text output. */
  title: string;
  /** Gathers the section; a throw becomes `{ unavailable }` with its message. */
  gather(
    accessor: BpfMapAccessor,
    options: SchedulerGatherOptions,
  ): SchedulerReport[K];
  /** Text lines for people (without the heading). */
  lines(data: Exclude<SchedulerReport[K], SectionUnavailable>): string[];
}

/** A section of any key (the registry's element type). */
// deno-lint-ignore no-explicit-any
export type AnySchedulerSection = SchedulerSection<any>;

/** Whether a section's value is the unavailable marker. */
export function isUnavailable(value: unknown): value is SectionUnavailable {
  return typeof value === "object" && value !== null &&
    "unavailable" in value &&
    typeof (value as SectionUnavailable).unavailable === "string";
}

function ids(list: readonly number[]): string {
  return list.length === 0 ? "none" : list.join(", ");
}

const activeSection: SchedulerSection<"active"> = {
  key: "active",
  title: "active scheduler",
  gather(accessor, options): ActiveScheduler | SectionUnavailable {
    const decision = activeScheduler(accessor, options.active ?? {});
    return decision.rule === "none"
      ? { unavailable: decision.reason }
      : decision;
  },
  lines(active): string[] {
    return [
      `ops:       ${active.opsName ?? "(unknown)"}${
        active.opsStruct ? ` (${active.opsStruct})` : ""
      }${active.enableState !== null ? `, ${active.enableState}` : ""}`,
      `rule:      ${active.rule}: ${active.reason}`,
      `ops map:   ${
        active.structOpsMapId === null
          ? "none"
          : `${active.structOpsMapId} ${active.structOpsState ?? ""}`.trim()
      }`,
      `programs:  ${ids(active.attachedProgramIds)}`,
      `active:    ${ids(active.activeMapIds)}`,
      `outgoing:  ${ids(active.outgoingMapIds)}`,
    ];
  },
};

/**
 * The views are read once per {@linkcode gatherScheduler} call (it hands
 * every section the same fresh options object) and shared by the four
 * sections below.
 */
const viewsOfPass = new WeakMap<SchedulerGatherOptions, ScxViews>();

function views(
  accessor: BpfMapAccessor,
  options: SchedulerGatherOptions,
): ScxViews {
  let read = viewsOfPass.get(options);
  if (!read) {
    const sysfs = options.views?.sysfs !== undefined
      ? options.views.sysfs
      : options.active?.sysfsDir;
    read = scxViews(accessor, {
      ...options.views,
      ...(sysfs !== undefined ? { sysfs } : {}),
    });
    viewsOfPass.set(options, read);
  }
  return read;
}

const rootSection: SchedulerSection<"root"> = {
  key: "root",
  title: "root scheduler",
  gather: (accessor, options) => views(accessor, options).root,
  lines: scxRootLines,
};

const eventsSection: SchedulerSection<"events"> = {
  key: "events",
  title: "events",
  gather: (accessor, options) => views(accessor, options).events,
  lines: scxEventLines,
};

const cpusSection: SchedulerSection<"cpus"> = {
  key: "cpus",
  title: "cpus (rq->scx)",
  gather: (accessor, options) => views(accessor, options).cpus,
  lines: scxCpuLines,
};

const dsqsSection: SchedulerSection<"dsqs"> = {
  key: "dsqs",
  title: "dsqs",
  gather: (accessor, options) => views(accessor, options).dsqs,
  lines: scxDsqLines,
};

/**
 * Every section, in the order reports and `bpfmap scx` show them: the
 * active decision, then the way a person debugging a stall reads the
 * scheduler (root and its exit, non-zero events, each CPU, the DSQs).
 */
export const SCHEDULER_SECTIONS: readonly AnySchedulerSection[] = [
  activeSection,
  rootSection,
  eventsSection,
  cpusSection,
  dsqsSection,
];

function message(error: unknown): string {
  return error instanceof Error
    ? `${error.name}: ${error.message}`
    : String(error);
}

/**
 * Gathers every section through `accessor`; a section that throws is
 * `{ unavailable }` with the error's message, the others unaffected.
 *
 * @param accessor the data source (any backend)
 * @param options per-section options
 * @returns one member per section
 */
export function gatherScheduler(
  accessor: BpfMapAccessor,
  options: SchedulerGatherOptions = {},
): SchedulerReport {
  const report: Record<string, unknown> = {};
  const pass = { ...options }; // one object per call: sections share what they read
  for (const section of SCHEDULER_SECTIONS) {
    try {
      report[section.key] = section.gather(accessor, pass);
    } catch (error) {
      report[section.key] = { unavailable: message(error) };
    }
  }
  return report as unknown as SchedulerReport;
}

/**
 * The scheduler sections as text: a `-- title --` heading per section, then
 * its lines (or `unavailable: reason`), each indented by `indent`.
 *
 * @param report from {@linkcode gatherScheduler}
 * @param indent prefix of every line under a heading
 * @returns the lines, without trailing newlines
 */
export function schedulerLines(
  report: SchedulerReport,
  indent = "  ",
): string[] {
  const out: string[] = [];
  const members = report as unknown as Record<string, unknown>;
  for (const section of SCHEDULER_SECTIONS) {
    const value = members[section.key];
    if (value === undefined) continue; // a report written before the section existed
    out.push(`-- ${section.title} --`);
    if (isUnavailable(value)) {
      out.push(`${indent}unavailable: ${value.unavailable}`);
      continue;
    }
    try {
      for (const line of section.lines(value)) out.push(`${indent}${line}`);
    } catch (error) {
      out.push(`${indent}unprintable: ${message(error)}`);
    }
  }
  return out;
}

/**
 * The role each map plays in the scheduler's group, by id: `active` for the
 * attached scheduler's maps, `outgoing` for same-named maps it does not
 * use. Empty when the active section is unavailable.
 */
export function mapRoles(
  report: SchedulerReport,
): Map<number, "active" | "outgoing"> {
  const roles = new Map<number, "active" | "outgoing">();
  if (isUnavailable(report.active)) return roles;
  for (const id of report.active.activeMapIds) roles.set(id, "active");
  for (const id of report.active.outgoingMapIds) roles.set(id, "outgoing");
  return roles;
}
