/**
 * Which sched_ext scheduler is attached, and which of its maps are its own:
 * {@linkcode activeScheduler}. Decided from facts every backend gives (map
 * list, struct_ops values, programs' `used_maps`), so the live kernel and a
 * frozen guest answer alike.
 *
 * Why this is needed: while one instance of a scheduler stops and the next
 * starts (the swap window), or while a test harness holds the old
 * instance's `.bss` open, two maps named `scx_simp.bss` exist at once.
 * Only the kernel's chain root ops → the attached programs → their maps
 * tells which copy the running scheduler writes.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import type { StructOpsDump } from "./maptypes/struct_ops.ts";
import { BpfSyscallAccessor } from "./syscall.ts";
import type { BpfMapAccessor, BpfMapInfo, BpfProgramInfo } from "./types.ts";

/**
 * Which rule decided:
 * - `struct_ops`: an attached sched_ext struct_ops map was found; its
 *   programs' `used_maps` are the active maps.
 * - `name`: struct_ops could not decide (sched_ext ops maps exist but none
 *   is attached, or struct_ops values / programs are unreadable); same-named maps grouped by
 *   object prefix, the newest copy (highest id) of each taken as active.
 * - `none`: no sched_ext scheduler is attached and no same-named maps
 *   suggest one; nothing is active or outgoing.
 */
export type ActiveSchedulerRule = "struct_ops" | "name" | "none";

/** The active-scheduler decision (see {@linkcode activeScheduler}). */
export interface ActiveScheduler {
  /**
   * The scheduler's name: `sched_ext_ops.name` of the attached ops map (what
   * `/sys/kernel/sched_ext/root/ops` shows), or sysfs's when struct_ops
   * could not decide; null when neither knows one.
   */
  opsName: string | null;
  /**
   * sched_ext's enable state as `/sys/kernel/sched_ext/state` names it
   * (`enabled`, `enabling`, `disabling`, `disabled`) when the backend can
   * see it (the live kernel); null otherwise (a guest's memory: the
   * attached ops map is then the evidence).
   */
  enableState: string | null;
  /** The ops struct the attached map implements: `sched_ext_ops`, `sched_ext_ops_cid`...; null without one. */
  opsStruct: string | null;
  /** Id of the attached sched_ext struct_ops map (the root ops); null when none was found. */
  structOpsMapId: number | null;
  /** That map's `common.state` by name (`BPF_STRUCT_OPS_STATE_READY` for a link-attached scheduler); null without one. */
  structOpsState: string | null;
  /** Ids of the programs the attached ops map's callbacks point at, ascending. */
  attachedProgramIds: number[];
  /**
   * Ids of the scheduler's maps, ascending: every map the attached programs
   * use (`used_maps`) plus the ops map itself (rule `struct_ops`), or the
   * newest copy of each same-named map (rule `name`).
   */
  activeMapIds: number[];
  /**
   * Ids of maps named like an active map but not used by the attached
   * scheduler, ascending: a previous instance's maps still held open (the
   * swap window).
   */
  outgoingMapIds: number[];
  /** Which rule decided. */
  rule: ActiveSchedulerRule;
  /** One line: why the rule decided as it did. */
  reason: string;
}

/** Options for {@linkcode activeScheduler}. */
export interface ActiveSchedulerOptions {
  /**
   * sched_ext's sysfs directory, read for the enable state and root ops
   * name; `null` to read none. Default: `/sys/kernel/sched_ext` for the
   * live backend, none for any other (a guest's sysfs is not the host's).
   */
  sysfsDir?: string | null;
}

/** `BPF_STRUCT_OPS_STATE_INUSE`: attached without a link. */
const STATE_INUSE = "BPF_STRUCT_OPS_STATE_INUSE";
/** `BPF_STRUCT_OPS_STATE_READY`: registered; attached when a link holds it. */
const STATE_READY = "BPF_STRUCT_OPS_STATE_READY";

/** A struct_ops map read for the decision. */
interface OpsCandidate {
  map: BpfMapInfo;
  ops: StructOpsDump;
  name: string | null;
  attached: boolean;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function readSysfs(dir: string, file: string): string | null {
  try {
    return Deno.readTextFileSync(`${dir}/${file}`).trim();
  } catch {
    return null; // no sched_ext in this kernel, or no scheduler (root/ is gone)
  }
}

/** `sched_ext_ops.name` (a char array, rendered as text). */
function opsNameOf(ops: StructOpsDump): string | null {
  const member = ops.members.find((m) => m.name === "name");
  return typeof member?.value === "string" ? member.value : null;
}

/**
 * Whether the kernel holds the ops map attached. A map registered without a
 * link is `INUSE`; sched_ext's loaders attach through a link
 * (`BPF_F_LINK`), which leaves the state `READY` and holds a kernel
 * reference instead: bpf() shows it as `refcnt` (`map->refcnt -
 * map->usercnt`), 0 once the link is gone.
 */
function isAttached(ops: StructOpsDump): boolean {
  return ops.state === STATE_INUSE ||
    (ops.state === STATE_READY && ops.refcnt > 0);
}

/** A sched_ext ops struct: `sched_ext_ops` and its variants (`sched_ext_ops_cid`). */
function isSchedExtOps(structName: string): boolean {
  return /^sched_ext_ops(_\w+)?$/.test(structName);
}

/** `scx_simp.` for `scx_simp.bss`; null for names without an object prefix. */
function objectPrefix(name: string): string | null {
  const dot = name.indexOf(".");
  return dot > 0 ? name.slice(0, dot + 1) : null;
}

const ascending = (a: number, b: number): number => a - b;

/**
 * Which sched_ext scheduler is attached and which maps are its own.
 *
 * Rule `struct_ops` first: among the STRUCT_OPS maps whose value is a
 * sched_ext ops struct, the attached one (state `INUSE`, or `READY` held by
 * a link) is the root ops; its callbacks name the attached programs, and
 * their `used_maps` are the active maps. Any other map with the same name
 * as an active one is `outgoing`. When several are attached, sysfs's root
 * ops name (live) picks the root, else the newest. Rule `name` when that
 * cannot decide, rule `none` when nothing suggests a scheduler. Reads only
 * the {@linkcode BpfMapAccessor} interface (and sysfs, live), so every
 * backend decides alike.
 *
 * @param accessor the maps and programs to decide from
 * @param options where sched_ext's sysfs is, if anywhere
 * @returns the decision, with the rule and a one-line reason
 *
 * @example Which `.bss` belongs to the running scheduler
 * ```ts ignore
 * import { activeScheduler, BpfSyscallAccessor } from "@bpfmap/bpfmap";
 * const decision = activeScheduler(new BpfSyscallAccessor());
 * console.log(decision.rule, decision.opsName, decision.activeMapIds, decision.reason);
 * ```
 */
export function activeScheduler(
  accessor: BpfMapAccessor,
  options: ActiveSchedulerOptions = {},
): ActiveScheduler {
  const sysfsDir = options.sysfsDir !== undefined
    ? options.sysfsDir
    : accessor instanceof BpfSyscallAccessor
    ? "/sys/kernel/sched_ext"
    : null;
  const enableState = sysfsDir === null ? null : readSysfs(sysfsDir, "state");
  const sysfsOps = sysfsDir === null ? null : readSysfs(sysfsDir, "root/ops");
  const maps = accessor.maps();
  const byId = new Map(maps.map((map) => [map.id, map]));

  const candidates: OpsCandidate[] = [];
  const unreadable: string[] = [];
  for (const map of maps) {
    if (map.type !== MapType.STRUCT_OPS) continue;
    let ops: StructOpsDump;
    try {
      const typed = accessor.readTypeDump(map);
      if (typed?.reader !== "struct_ops") {
        unreadable.push(
          `map ${map.id} "${map.name}": ${
            typed?.reader === "unreadable"
              ? typed.unreadable.reason
              : "this backend does not type struct_ops values"
          }`,
        );
        continue;
      }
      ops = typed.structOps;
    } catch (error) {
      unreadable.push(`map ${map.id} "${map.name}": ${message(error)}`);
      continue;
    }
    if (!isSchedExtOps(ops.structName)) continue;
    candidates.push({
      map,
      ops,
      name: opsNameOf(ops),
      attached: isAttached(ops),
    });
  }

  const decided: Omit<ActiveScheduler, "rule" | "reason"> = {
    opsName: sysfsOps,
    enableState,
    opsStruct: null,
    structOpsMapId: null,
    structOpsState: null,
    attachedProgramIds: [],
    activeMapIds: [],
    outgoingMapIds: [],
  };
  const attached = candidates.filter((c) => c.attached);
  let why: string;
  if (attached.length === 0) {
    why = candidates.length > 0
      ? `${candidates.length} sched_ext struct_ops map(s) (${
        candidates.map((c) => `id ${c.map.id} ${c.ops.state}`).join(", ")
      }) but none attached`
      : unreadable.length > 0
      ? `struct_ops values unreadable (${unreadable.join("; ")})`
      : "no sched_ext scheduler attached (no struct_ops map of a sched_ext_ops type)";
    // Name grouping only where a scheduler was seen: elsewhere same-named
    // maps (two tests' `x.bss`) say nothing about sched_ext.
    return candidates.length > 0 || unreadable.length > 0
      ? byName(maps, decided, why)
      : { ...decided, rule: "none", reason: why };
  }
  // Sub-schedulers (7.3) attach several; the root is the one sysfs names.
  const named = sysfsOps === null
    ? attached
    : attached.filter((c) => c.name === sysfsOps);
  const pool = named.length > 0 ? named : attached;
  const root = pool.reduce((a, b) => (b.map.id > a.map.id ? b : a));

  let programs: BpfProgramInfo[];
  try {
    programs = accessor.programs();
  } catch (error) {
    return byName(
      maps,
      { ...decided, opsName: root.name ?? sysfsOps },
      `the attached ops map ${root.map.id} was found but programs are unreadable (${
        message(error)
      })`,
    );
  }
  const programById = new Map(programs.map((p) => [p.id, p]));
  const attachedProgramIds = new Set<number>();
  const active = new Set<number>([root.map.id]);
  for (const candidate of attached) {
    active.add(candidate.map.id);
    for (const member of candidate.ops.members) {
      if (member.kind !== "prog" || !member.progId) continue;
      attachedProgramIds.add(member.progId);
      for (const id of programById.get(member.progId)?.mapIds ?? []) {
        if (byId.has(id)) active.add(id);
      }
    }
  }
  const missing = [...attachedProgramIds].filter((id) => !programById.has(id));
  const activeNames = new Set([...active].map((id) => byId.get(id)!.name));
  const outgoing = maps
    .filter((map) => !active.has(map.id) && activeNames.has(map.name))
    .map((map) => map.id);
  const parts = [
    `ops map ${root.map.id} "${root.map.name}" (${root.ops.structName} "${
      root.name ?? "?"
    }") is attached (${root.ops.state}, refcnt ${root.ops.refcnt})`,
    `${attachedProgramIds.size} attached programs use ${active.size - 1} maps`,
  ];
  if (attached.length > 1) {
    parts.push(
      `${attached.length} ops maps attached (${
        attached.map((c) => c.map.id).join(", ")
      }): root chosen ${
        named.length > 0 && sysfsOps !== null
          ? `by sysfs root ops "${sysfsOps}"`
          : "as the newest"
      }`,
    );
  }
  if (missing.length > 0) {
    parts.push(`programs ${missing.join(", ")} are gone`);
  }
  if (outgoing.length > 0) {
    parts.push(
      `${outgoing.length} same-named maps not used by them are outgoing`,
    );
  }
  if (enableState !== null && enableState !== "enabled") {
    parts.push(`but sched_ext is ${enableState}`);
  }
  return {
    ...decided,
    opsName: root.name ?? sysfsOps,
    opsStruct: root.ops.structName,
    structOpsMapId: root.map.id,
    structOpsState: root.ops.state,
    attachedProgramIds: [...attachedProgramIds].sort(ascending),
    activeMapIds: [...active].sort(ascending),
    outgoingMapIds: outgoing.sort(ascending),
    rule: "struct_ops",
    reason: parts.join("; "),
  };
}

/**
 * Rule `name`: same-named maps grouped by object prefix (`scx_simp.`), the
 * newest copy (highest id: ids only grow) of each active, older copies
 * outgoing. Rule `none` when no prefixed name occurs twice.
 */
function byName(
  maps: readonly BpfMapInfo[],
  decided: Omit<ActiveScheduler, "rule" | "reason">,
  why: string,
): ActiveScheduler {
  const copies = new Map<string, number[]>();
  for (const map of maps) {
    if (objectPrefix(map.name) === null) continue;
    copies.set(map.name, [...(copies.get(map.name) ?? []), map.id]);
  }
  const duplicated = [...copies].filter(([, ids]) => ids.length > 1);
  if (duplicated.length === 0) {
    return { ...decided, rule: "none", reason: why };
  }
  const active: number[] = [];
  const outgoing: number[] = [];
  for (const [, ids] of duplicated) {
    const newest = Math.max(...ids);
    active.push(newest);
    outgoing.push(...ids.filter((id) => id !== newest));
  }
  const prefixes = [
    ...new Set(duplicated.map(([name]) => objectPrefix(name))),
  ];
  return {
    ...decided,
    activeMapIds: active.sort(ascending),
    outgoingMapIds: outgoing.sort(ascending),
    rule: "name",
    reason: `${why}; struct_ops cannot decide, so same-named maps of ${
      prefixes.join(", ")
    } are grouped by name and the newest copy of each is taken as active`,
  };
}
