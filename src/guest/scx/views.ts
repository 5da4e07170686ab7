/**
 * Every sched_ext view of a guest kernel, from its memory: the root
 * scheduler, its `SCX_EV_*` counters summed over CPUs (as
 * `scx_read_events()` sums them for `/sys/kernel/sched_ext/root/events`),
 * each possible CPU's `rq->scx` with its local DSQ, and the scheduler's
 * global and user DSQs. A section that cannot be read says why instead.
 *
 * @module
 */

import type { Btf } from "../../btf/mod.ts";
import { hex } from "../errors.ts";
import type { GuestKernel } from "../kernel.ts";
import type { GuestMapRecord } from "../map_records.ts";
import { MAX_USER_DSQS, readDsq, readTask, walkRhashtable } from "./dsq.ts";
import { type ScxLayout, scxLayoutFromBtf } from "./layout.ts";
import {
  findRootScheduler,
  isKernelPointer,
  readRootView,
  type RootLocation,
} from "./root.ts";
import {
  DEFAULT_TASKS_PER_DSQ,
  type ScxCpusView,
  type ScxDsqsView,
  type ScxDsqView,
  type ScxEventsView,
  type ScxSection,
  type ScxViewOptions,
  type ScxViews,
} from "./types.ts";

/** NUMA nodes read at most (`nr_node_ids` beyond this is corrupt). */
const MAX_NODES = 1024;

/**
 * The possible CPUs (`for_each_possible_cpu`): the bits of
 * `__cpu_possible_mask` below `nr_cpu_ids`, or every CPU below it when the
 * mask cannot be read.
 */
export function possibleCpus(kernel: GuestKernel): number[] {
  const count = kernel.perCpuOffsets().length;
  const all = Array.from({ length: count }, (_, cpu) => cpu);
  const mask = kernel.findSymbol("__cpu_possible_mask");
  const bits = mask === undefined
    ? null
    : kernel.space.read(mask, Math.ceil(count / 64) * 8);
  if (bits === null) return all;
  const possible = all.filter((cpu) => (bits[cpu >> 3]! >> (cpu & 7)) & 1);
  // an empty mask is not a kernel that runs: trust nr_cpu_ids instead
  return possible.length > 0 ? possible : all;
}

/** The counters summed over every possible CPU's `sch->pcpu->event_stats`. */
export function readEvents(
  kernel: GuestKernel,
  layout: ScxLayout,
  sched: bigint,
): ScxSection<ScxEventsView> {
  if (layout.events.length === 0) {
    return { unavailable: "the kernel's BTF has no struct scx_event_stats" };
  }
  const pcpu = kernel.space.u64(sched + BigInt(layout.pcpu));
  if (pcpu === null) {
    return { unavailable: `scx_sched.pcpu at ${hex(sched)} is not mapped` };
  }
  const sums = layout.events.map(() => 0n);
  const offsets = kernel.perCpuOffsets();
  for (const cpu of possibleCpus(kernel)) {
    const stats = BigInt.asUintN(
      64,
      pcpu + offsets[cpu]! + BigInt(layout.pcpuEventStats),
    );
    for (let i = 0; i < layout.events.length; i++) {
      const value = kernel.space.u64(stats + BigInt(layout.events[i]!.offset));
      if (value === null) {
        return {
          unavailable: `CPU ${cpu}'s event_stats at ${
            hex(stats)
          } are not mapped`,
        };
      }
      // s64 counters, summed and printed %llu by the kernel: wrap as u64
      sums[i] = BigInt.asUintN(64, sums[i]! + value);
    }
  }
  return {
    counters: layout.events.map((e, i) => ({ name: e.name, value: sums[i]! })),
  };
}

/** Each possible CPU's `rq->scx` (`runqueues` is a per-CPU variable). */
export function readCpus(
  kernel: GuestKernel,
  layout: ScxLayout,
  limit: number,
): ScxSection<ScxCpusView> {
  const runqueues = kernel.findSymbol("runqueues");
  if (runqueues === undefined) {
    return { unavailable: "the kernel has no runqueues symbol" };
  }
  const space = kernel.space;
  const cpus: ScxCpusView["cpus"] = [];
  const offsets = kernel.perCpuOffsets();
  for (const cpu of possibleCpus(kernel)) {
    const rq = BigInt.asUintN(64, runqueues + offsets[cpu]!);
    const nrRunning = space.u32(rq + BigInt(layout.rqNrRunning));
    const flags = space.u32(rq + BigInt(layout.rqFlags));
    const localDsq = readDsq(
      space,
      layout,
      rq + BigInt(layout.rqLocalDsq),
      limit,
    );
    if (nrRunning === null || flags === null || localDsq === null) {
      return {
        unavailable: `CPU ${cpu}'s runqueue at ${hex(rq)} is not mapped`,
      };
    }
    const curr = layout.rqCurr === null
      ? null
      : space.u64(rq + BigInt(layout.rqCurr));
    cpus.push({
      cpu,
      current: isKernelPointer(curr) ? readTask(space, layout, curr) : null,
      nrRunning,
      flags,
      flagNames: layout.rqFlagBits.filter(([bit]) => (flags & bit) !== 0)
        .map(([, name]) => name),
      localDsq,
    });
  }
  return { cpus };
}

/** The scheduler's per-node global DSQs and the user DSQs in `dsq_hash`. */
export function readDsqs(
  kernel: GuestKernel,
  layout: ScxLayout,
  sched: bigint,
  limit: number,
): ScxSection<ScxDsqsView> {
  const space = kernel.space;
  const global: ScxDsqView[] = [];
  if (layout.pnode !== null) {
    const pnode = space.u64(sched + BigInt(layout.pnode));
    const nodesAt = kernel.findSymbol("nr_node_ids");
    const nodes = nodesAt === undefined ? 1 : space.u32(nodesAt) ?? 1;
    if (isKernelPointer(pnode)) {
      for (let node = 0; node < Math.min(nodes, MAX_NODES); node++) {
        const entry = space.u64(pnode + BigInt(node * 8));
        if (!isKernelPointer(entry)) continue; // not a possible node
        const dsq = readDsq(
          space,
          layout,
          entry + BigInt(layout.pnodeGlobalDsq),
          limit,
        );
        if (dsq) global.push(dsq);
      }
    }
  }
  const notes: string[] = [];
  const user: ScxDsqView[] = [];
  for (
    const dsq of walkRhashtable(
      space,
      layout,
      sched + BigInt(layout.dsqHash),
      layout.dsq.hashNode,
      MAX_USER_DSQS,
      notes,
    )
  ) {
    const view = readDsq(space, layout, dsq, limit);
    if (view) user.push(view);
    else notes.push(`DSQ at ${hex(dsq)} is unreadable`);
  }
  user.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const bypass: ScxDsqsView["bypass"] = [];
  const pcpu = space.u64(sched + BigInt(layout.pcpu));
  if (layout.pcpuBypassDsq !== null && pcpu !== null) {
    const offsets = kernel.perCpuOffsets();
    for (const cpu of possibleCpus(kernel)) {
      const at = BigInt.asUintN(
        64,
        pcpu + offsets[cpu]! + BigInt(layout.pcpuBypassDsq),
      );
      const dsq = readDsq(space, layout, at, limit);
      if (dsq === null) {
        notes.push(`CPU ${cpu}'s bypass DSQ at ${hex(at)} is unreadable`);
        break;
      }
      bypass.push({ cpu, dsq });
    }
  }
  // what the hash walk skipped belongs to the first user DSQ's notes, or a placeholder
  if (notes.length > 0) {
    if (user[0]) user[0].notes.push(...notes);
    else return { unavailable: `dsq_hash: ${notes.join("; ")}` };
  }
  return { global, user, bypass };
}

/**
 * Reads every view. Never throws for what the guest holds: each section
 * carries `unavailable` instead.
 *
 * @param btf the guest kernel's vmlinux BTF
 * @param maps the guest's map records, so an exited scheduler is still found through its struct_ops map
 */
export function readGuestScxViews(
  kernel: GuestKernel,
  btf: Btf,
  maps: readonly GuestMapRecord[],
  options: ScxViewOptions = {},
): ScxViews {
  const limit = Math.max(0, options.tasksPerDsq ?? DEFAULT_TASKS_PER_DSQ);
  const layout = scxLayoutFromBtf(btf);
  if (typeof layout === "string") {
    const none = { unavailable: layout };
    return {
      source: "guest",
      root: none,
      events: none,
      cpus: none,
      dsqs: none,
    };
  }
  const guarded = <T>(what: string, read: () => ScxSection<T>) => {
    try {
      return read();
    } catch (error) {
      return {
        unavailable: `${what}: ${(error as Error).message}`,
      } as ScxSection<T>;
    }
  };
  let location: RootLocation | string;
  try {
    location = findRootScheduler(kernel, btf, maps);
  } catch (error) {
    location = `finding the root scheduler: ${(error as Error).message}`;
  }
  const root = guarded("root", () => readRootView(kernel, layout, location));
  const noScheduler = typeof location === "string"
    ? { unavailable: location }
    : null;
  const sched = typeof location === "string" ? 0n : location.address;
  return {
    source: "guest",
    root,
    events: noScheduler ??
      guarded("events", () => readEvents(kernel, layout, sched)),
    cpus: guarded("cpus", () => readCpus(kernel, layout, limit)),
    dsqs: noScheduler ??
      guarded("dsqs", () => readDsqs(kernel, layout, sched, limit)),
  };
}
