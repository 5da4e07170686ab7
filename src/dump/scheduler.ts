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
}

/** What a section's gatherer is given. */
export interface SchedulerGatherOptions {
  /** Passed to {@linkcode activeScheduler} (where sched_ext's sysfs is). */
  active?: ActiveSchedulerOptions;
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

/** Every section, in the order reports and `bpfmap scx` show them. */
export const SCHEDULER_SECTIONS: readonly AnySchedulerSection[] = [
  activeSection,
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
  for (const section of SCHEDULER_SECTIONS) {
    try {
      report[section.key] = section.gather(accessor, options);
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
