/**
 * The sched_ext state views a person debugging a stall reads, in one shape
 * for both backends: a frozen guest's memory (everything below) and the live
 * kernel's sysfs (root state, ops name, event counters; the rest says why it
 * is unavailable). Every section is either its data or
 * `{ unavailable: "reason" }`: one missing symbol or a bad pointer never
 * fails the whole view.
 *
 * @module
 */

/** A section the backend could not produce, and why (one line). */
export interface ScxUnavailable {
  /** Why: no sched_ext in the kernel, no scheduler attached, a symbol or BTF type missing, a bad pointer. */
  unavailable: string;
}

/** A section's data, or why there is none. */
export type ScxSection<T> = T | ScxUnavailable;

/** Whether a section holds data (not `{ unavailable }`). */
export function scxAvailable<T extends object>(
  section: ScxSection<T>,
): section is T {
  return !("unavailable" in section);
}

/** An enum value with the name the kernel's BTF gives it. */
export interface ScxEnumValue {
  /** The number stored in memory. */
  value: number;
  /** Its enumerator name (`SCX_EXIT_SYSRQ`), or null when the enum has none for it. */
  name: string | null;
}

/** `struct scx_exit_info` of the root scheduler: why it exited (or is exiting). */
export interface ScxExitInfoView {
  /** `ei->kind`: what the disable path recorded (`SCX_EXIT_NONE` while it runs). */
  kind: ScxEnumValue;
  /** `ei->reason` as the kernel's `scx_exit_reason()` maps the kind (`"disabled by sysrq-S"`). */
  reason: string | null;
  /** `ei->exit_code` (s64). */
  exitCode: bigint;
  /** `ei->exit_cpu`: the CPU that triggered the exit, -1 when none. */
  exitCpu: number;
  /** `ei->msg`, cut at its NUL (at most `SCX_EXIT_MSG_LEN` bytes). */
  msg: string;
}

/** The root scheduler (`scx_root`), when one is attached or its exit info is still reachable. */
export interface ScxSchedulerView {
  /** `ops.name`: what `/sys/kernel/sched_ext/root/ops` prints. */
  ops: string;
  /** Which ops struct it registered (`sched_ext_ops`, 7.x's `sched_ext_ops_cid`), null when unknown (live). */
  opsStruct: string | null;
  /**
   * How the scheduler was found: `"scx_root"`, `"sysfs"` (live), or
   * `"struct_ops map N (NAME) ops.priv"` once `scx_root` was cleared but the
   * loader's struct_ops map still points at the exited scheduler.
   */
  foundVia: string;
  /** Kernel address of the `struct scx_sched` (guest backend), else null. */
  address: bigint | null;
  /** `scx_sched.id`: unique instance id (guest backend), else null. */
  instanceId: bigint | null;
  /** `sch->exit_kind` (atomic_t): `SCX_EXIT_NONE` while it runs; null live. */
  exitKind: ScxEnumValue | null;
  /** Kernel address of `sch->exit_kind` (a watchpoint target), null live. */
  exitKindAddress: bigint | null;
  /** `sch->exit_info`, or null when not readable (live: sysfs does not expose it). */
  exit: ScxExitInfoView | null;
  /** `sch->watchdog_timeout` in jiffies, or null live. */
  watchdogTimeoutJiffies: bigint | null;
  /** `ops.timeout_ms` as the scheduler asked (0: the kernel's maximum), or null live. */
  timeoutMs: number | null;
}

/** The sched_ext core's global state and the root scheduler. */
export interface ScxRootView {
  /** `scx_enable_state_var`, named as `/sys/kernel/sched_ext/state` prints it (`enabled`). */
  state: string;
  /** `scx_switching_all` (`switch_all`), null when unreadable. */
  switchAll: boolean | null;
  /** `scx_nr_rejected` (`nr_rejected`), null when unreadable. */
  nrRejected: bigint | null;
  /** `scx_hotplug_seq` (`hotplug_seq`), null when unreadable. */
  hotplugSeq: bigint | null;
  /** `scx_enable_seq` (`enable_seq`), null when unreadable. */
  enableSeq: bigint | null;
  /** The kernel's `jiffies_64` when memory was frozen (guest backend), else null. */
  jiffies: bigint | null;
  /** The root scheduler, or why there is none (`no scheduler attached`). */
  scheduler: ScxSection<ScxSchedulerView>;
}

/** One `SCX_EV_*` counter. */
export interface ScxEventCounter {
  /** The name `/sys/kernel/sched_ext/root/events` prints (`SCX_EV_SELECT_CPU_FALLBACK`). */
  name: string;
  /** Summed over possible CPUs as the kernel's `scx_read_events()` does, printed `%llu`. */
  value: bigint;
}

/** The root scheduler's event counters, in the kernel's order. */
export interface ScxEventsView {
  /** Every counter, zero or not. */
  counters: ScxEventCounter[];
}

/** `task_struct.scx` of a task on a DSQ. */
export interface ScxTaskView {
  /** `task_struct.pid` (the thread id). */
  pid: number;
  /** `task_struct.comm`. */
  comm: string;
  /** `scx.flags`. */
  flags: number;
  /** Names of the set `SCX_TASK_*` bits and the task's state (`SCX_TASK_ENABLED`). */
  flagNames: string[];
  /** `scx.dsq->id`, or null when `scx.dsq` is NULL or unreadable. */
  dsqId: bigint | null;
  /** `scx.weight`. */
  weight: number;
  /** `scx.slice` (ns). */
  slice: bigint;
  /** `scx.dsq_vtime`. */
  dsqVtime: bigint;
  /** `scx.runnable_at` in jiffies: since when it has waited (compare the root's `jiffies`). */
  runnableAt: bigint;
  /** Kernel address of the `task_struct` (guest backend). */
  address: bigint;
}

/** One dispatch queue. */
export interface ScxDsqView {
  /** `dsq->id`. */
  id: bigint;
  /** The builtin id's name (`SCX_DSQ_GLOBAL`, `SCX_DSQ_LOCAL`), null for user DSQs. */
  idName: string | null;
  /** `dsq->nr`: how many tasks the kernel counts on it. */
  nr: number;
  /** The first tasks of `dsq->list`, in dispatch order (at most the caller's limit). */
  tasks: ScxTaskView[];
  /** What cut the walk short (a cycle, an unreadable node), if anything. */
  notes: string[];
}

/** `rq->scx` of one possible CPU. */
export interface ScxCpuView {
  /** CPU number. */
  cpu: number;
  /** `rq->scx.nr_running`. */
  nrRunning: number;
  /** `rq->scx.flags`. */
  flags: number;
  /** Names of the set `SCX_RQ_*` bits. */
  flagNames: string[];
  /** `rq->curr`: the task running on the CPU when memory was frozen (its `scx` too), or null. */
  current: ScxTaskView | null;
  /** `rq->scx.local_dsq`. */
  localDsq: ScxDsqView;
}

/** Every possible CPU's `rq->scx`. */
export interface ScxCpusView {
  /** One entry per possible CPU (`__cpu_possible_mask`), in CPU order. */
  cpus: ScxCpuView[];
}

/** One CPU's bypass DSQ. */
export interface ScxBypassDsq {
  /** The CPU. */
  cpu: number;
  /** Its `sch->pcpu->bypass_dsq`. */
  dsq: ScxDsqView;
}

/** The root scheduler's global and user DSQs. */
export interface ScxDsqsView {
  /** `sch->pnode[node]->global_dsq` for each NUMA node. */
  global: ScxDsqView[];
  /** Every DSQ in `sch->dsq_hash` (the ones `scx_bpf_create_dsq()` made), by id. */
  user: ScxDsqView[];
  /**
   * Each possible CPU's bypass DSQ (`sch->pcpu->bypass_dsq`), in CPU order: where
   * tasks wait while the scheduler is bypassed (enabling, disabling, after
   * an error). Empty when the kernel has none.
   */
  bypass: ScxBypassDsq[];
}

/** Everything {@linkcode ScxViews} holds, from either backend. */
export interface ScxViews {
  /** `"guest"` (frozen memory) or `"live"` (this machine's sysfs). */
  source: "guest" | "live";
  /** Root state and scheduler. */
  root: ScxSection<ScxRootView>;
  /** `SCX_EV_*` counters. */
  events: ScxSection<ScxEventsView>;
  /** Per-CPU `rq->scx`. */
  cpus: ScxSection<ScxCpusView>;
  /** Global and user DSQs. */
  dsqs: ScxSection<ScxDsqsView>;
}

/** Options for reading the views. */
export interface ScxViewOptions {
  /** How many tasks of each DSQ to list (default 8; the walk stops there). */
  tasksPerDsq?: number;
}

/** Tasks listed per DSQ unless the caller says otherwise. */
export const DEFAULT_TASKS_PER_DSQ = 8;
