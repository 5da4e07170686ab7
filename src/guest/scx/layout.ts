/**
 * Every sched_ext offset the guest views use, taken from the guest kernel's
 * own BTF (`kernel/sched/ext/internal.h`, `include/linux/sched/ext.h`,
 * `kernel/sched/sched.h` of 7.x), plus the enums that name states, exit kinds
 * and flag bits. Nothing here is a hard-coded layout.
 *
 * @module
 */

import { type Btf, BtfKind, type BtfType } from "../../btf/mod.ts";

/** Offsets inside `struct scx_dispatch_q`. */
export interface DsqLayout {
  /** `list` (a `list_head`: `next` first). */
  list: number;
  /** `nr` (u32). */
  nr: number;
  /** `id` (u64). */
  id: number;
  /** `hash_node` (`rhash_head`, in `sch->dsq_hash`). */
  hashNode: number;
}

/** Offsets inside `struct task_struct` and its `scx` member. */
export interface TaskLayout {
  /** `pid`. */
  pid: number;
  /** `comm` and its length. */
  comm: number;
  /** `sizeof(comm)`. */
  commLen: number;
  /** `scx.dsq_list.node`: where a DSQ's `list` links the task. */
  dsqListNode: number;
  /** `scx.dsq_list.flags`: `SCX_DSQ_LNODE_ITER_CURSOR` marks an iterator's cursor, not a task. */
  dsqListFlags: number;
  /** `scx.dsq` (pointer). */
  dsq: number;
  /** `scx.flags`. */
  flags: number;
  /** `scx.weight`. */
  weight: number;
  /** `scx.slice`. */
  slice: number;
  /** `scx.dsq_vtime`. */
  dsqVtime: number;
  /** `scx.runnable_at` (jiffies; what the watchdog measures a stall from). */
  runnableAt: number;
}

/** What the views read, from BTF. */
export interface ScxLayout {
  /** `scx_sched.ops.name` and its length (`SCX_OPS_NAME_LEN`). */
  opsName: number;
  /** Length of `ops.name`. */
  opsNameLen: number;
  /** `scx_sched.ops.timeout_ms`. */
  opsTimeoutMs: number;
  /** `scx_sched.ops_cid.name` and `.timeout_ms` (7.x cid-form schedulers), or null. */
  opsCid: { name: number; timeoutMs: number } | null;
  /** `scx_sched.is_cid_type` (bool): which member of the ops union is live; null when absent. */
  isCidType: number | null;
  /** `scx_sched.id` (u64), or null on kernels without it. */
  schedId: number | null;
  /** `scx_sched.dsq_hash` (`struct rhashtable`). */
  dsqHash: number;
  /** `scx_sched.pnode` (pointer to an array of per-node pointers), or null. */
  pnode: number | null;
  /** `scx_sched_pnode.global_dsq`. */
  pnodeGlobalDsq: number;
  /** `scx_sched.pcpu` (`__percpu` pointer). */
  pcpu: number;
  /** `scx_sched_pcpu.event_stats`. */
  pcpuEventStats: number;
  /** `scx_sched.watchdog_timeout` (unsigned long). */
  watchdogTimeout: number;
  /** `scx_sched.exit_kind` (atomic_t). */
  exitKind: number;
  /** `scx_sched.exit_info` (pointer). */
  exitInfo: number;
  /** `scx_exit_info` members. */
  exitInfoKind: number;
  /** `scx_exit_info.exit_cpu`. */
  exitInfoCpu: number;
  /** `scx_exit_info.exit_code`. */
  exitInfoCode: number;
  /** `scx_exit_info.reason` (`const char *`). */
  exitInfoReason: number;
  /** `scx_exit_info.msg` (`char *`). */
  exitInfoMsg: number;
  /** `SCX_EXIT_MSG_LEN`: the most bytes `msg` holds. */
  exitMsgLen: number;
  /** `struct scx_event_stats` members in declaration order: `SCX_EVENTS_LIST`'s. */
  events: { name: string; offset: number }[];
  /** `rq.scx.local_dsq`. */
  rqLocalDsq: number;
  /** `rq.scx.nr_running`. */
  rqNrRunning: number;
  /** `rq.scx.flags`. */
  rqFlags: number;
  /** `rq.curr` (the running task), or null. */
  rqCurr: number | null;
  /** `scx_sched_pcpu.bypass_dsq` (where tasks wait while the scheduler is bypassed), or null. */
  pcpuBypassDsq: number | null;
  /** `list_head.next`. */
  listNext: number;
  /** `rhashtable.tbl`. */
  rhtTbl: number;
  /** `bucket_table.size`. */
  tblSize: number;
  /** `bucket_table.nest`. */
  tblNest: number;
  /** `bucket_table.future_tbl`. */
  tblFuture: number;
  /** `bucket_table.buckets` (flexible array of pointers). */
  tblBuckets: number;
  /** `rhash_head.next`. */
  rhashNext: number;
  /** `struct scx_dispatch_q`. */
  dsq: DsqLayout;
  /** `struct task_struct`. */
  task: TaskLayout;
  /** `enum scx_exit_kind`. */
  exitKinds: ReadonlyMap<number, string>;
  /** `enum scx_enable_state`. */
  enableStates: ReadonlyMap<number, string>;
  /** `enum scx_rq_flags` single bits. */
  rqFlagBits: readonly [number, string][];
  /** `enum scx_ent_flags`: single flag bits below the state field. */
  taskFlagBits: readonly [number, string][];
  /** `enum scx_ent_flags` task states (`SCX_TASK_NONE` .. `SCX_TASK_DEAD`) under `SCX_TASK_STATE_MASK`. */
  taskStates: readonly [number, string][];
  /** `SCX_TASK_STATE_MASK`. */
  taskStateMask: number;
  /** `enum scx_dsq_id_flags` builtin ids by value. */
  dsqIdNames: ReadonlyMap<bigint, string>;
  /** `SCX_DSQ_LNODE_ITER_CURSOR`. */
  iterCursorFlag: number;
}

/** The members of the enum named `name` as value → enumerator, or empty. */
function enumValues(btf: Btf, name: string): [bigint, string][] {
  const type: BtfType | undefined = btf.findByName(name, BtfKind.ENUM) ??
    btf.findByName(name, BtfKind.ENUM64);
  if (!type || !("values" in type)) return [];
  return type.values.map((v) => [v.value, v.name]);
}

/** An enumerator's value by its name among the enum `enumName`'s. */
function enumerator(
  values: [bigint, string][],
  name: string,
): bigint | undefined {
  return values.find(([, n]) => n === name)?.[0];
}

const isSingleBit = (v: bigint): boolean => v > 0n && (v & (v - 1n)) === 0n;

const layouts = new WeakMap<Btf, ScxLayout | string>();

/**
 * The layout, or a one-line reason the kernel's BTF cannot give it (no
 * sched_ext in this kernel, or a sched_ext too old or too new for these
 * views). Computed once per BTF object.
 */
export function scxLayoutFromBtf(btf: Btf): ScxLayout | string {
  let layout = layouts.get(btf);
  if (layout === undefined) {
    layout = computeLayout(btf);
    layouts.set(btf, layout);
  }
  return layout;
}

function computeLayout(btf: Btf): ScxLayout | string {
  if (!btf.findByName("scx_sched", BtfKind.STRUCT)) {
    return "the kernel's BTF has no struct scx_sched (no CONFIG_SCHED_CLASS_EXT, or a sched_ext older than 6.16's scx_root)";
  }
  try {
    const off = (struct: string, path: string): number =>
      btf.memberOffset(struct, path).offset;
    const optional = (struct: string, path: string): number | null => {
      try {
        return off(struct, path);
      } catch {
        return null;
      }
    };
    const nameLoc = btf.memberOffset("scx_sched", "ops.name");
    const stats = btf.findByName("scx_event_stats", BtfKind.STRUCT);
    const events = stats && "members" in stats
      ? stats.members.map((m) => ({ name: m.name, offset: m.bitOffset / 8 }))
      : [];
    const entFlags = enumValues(btf, "scx_ent_flags");
    const stateMask = enumerator(entFlags, "SCX_TASK_STATE_MASK") ?? 0n;
    const reenqMask = enumerator(entFlags, "SCX_TASK_REENQ_REASON_MASK") ??
      0n;
    const lnode = enumValues(btf, "scx_dsq_lnode_flags");
    const name = (v: bigint, n: string): [number, string] => [Number(v), n];
    const structural = /_(SHIFT|BITS|MASK)$/;
    return {
      opsName: nameLoc.offset,
      opsNameLen: btf.sizeOf(nameLoc.type),
      opsTimeoutMs: off("scx_sched", "ops.timeout_ms"),
      opsCid: optional("scx_sched", "ops_cid.name") === null ? null : {
        name: off("scx_sched", "ops_cid.name"),
        timeoutMs: off("scx_sched", "ops_cid.timeout_ms"),
      },
      isCidType: optional("scx_sched", "is_cid_type"),
      schedId: optional("scx_sched", "id"),
      dsqHash: off("scx_sched", "dsq_hash"),
      pnode: optional("scx_sched", "pnode"),
      pnodeGlobalDsq: optional("scx_sched_pnode", "global_dsq") ?? 0,
      pcpu: off("scx_sched", "pcpu"),
      pcpuEventStats: off("scx_sched_pcpu", "event_stats"),
      watchdogTimeout: off("scx_sched", "watchdog_timeout"),
      exitKind: off("scx_sched", "exit_kind"),
      exitInfo: off("scx_sched", "exit_info"),
      exitInfoKind: off("scx_exit_info", "kind"),
      exitInfoCpu: off("scx_exit_info", "exit_cpu"),
      exitInfoCode: off("scx_exit_info", "exit_code"),
      exitInfoReason: off("scx_exit_info", "reason"),
      exitInfoMsg: off("scx_exit_info", "msg"),
      exitMsgLen: 1024, // SCX_EXIT_MSG_LEN (kernel/sched/ext/types.h), an anonymous enum
      events,
      rqLocalDsq: off("rq", "scx.local_dsq"),
      rqNrRunning: off("rq", "scx.nr_running"),
      rqFlags: off("rq", "scx.flags"),
      rqCurr: optional("rq", "curr"),
      pcpuBypassDsq: optional("scx_sched_pcpu", "bypass_dsq"),
      listNext: off("list_head", "next"),
      rhtTbl: off("rhashtable", "tbl"),
      tblSize: off("bucket_table", "size"),
      tblNest: off("bucket_table", "nest"),
      tblFuture: off("bucket_table", "future_tbl"),
      tblBuckets: off("bucket_table", "buckets"),
      rhashNext: off("rhash_head", "next"),
      dsq: {
        list: off("scx_dispatch_q", "list"),
        nr: off("scx_dispatch_q", "nr"),
        id: off("scx_dispatch_q", "id"),
        hashNode: off("scx_dispatch_q", "hash_node"),
      },
      task: {
        pid: off("task_struct", "pid"),
        comm: off("task_struct", "comm"),
        commLen: btf.sizeOf(btf.memberOffset("task_struct", "comm").type),
        dsqListNode: off("task_struct", "scx.dsq_list.node"),
        dsqListFlags: off("task_struct", "scx.dsq_list.flags"),
        dsq: off("task_struct", "scx.dsq"),
        flags: off("task_struct", "scx.flags"),
        weight: off("task_struct", "scx.weight"),
        slice: off("task_struct", "scx.slice"),
        dsqVtime: off("task_struct", "scx.dsq_vtime"),
        runnableAt: off("task_struct", "scx.runnable_at"),
      },
      exitKinds: new Map(
        enumValues(btf, "scx_exit_kind").map(([v, n]) => [Number(v), n]),
      ),
      enableStates: new Map(
        enumValues(btf, "scx_enable_state").map(([v, n]) => [Number(v), n]),
      ),
      rqFlagBits: enumValues(btf, "scx_rq_flags").filter(([v]) =>
        isSingleBit(v)
      ).map(([v, n]) => name(v, n)),
      taskFlagBits: entFlags.filter(([v, n]) =>
        isSingleBit(v) && (v & (stateMask | reenqMask)) === 0n &&
        !structural.test(n) &&
        v < 1n << 31n
      ).map(([v, n]) => name(v, n)),
      taskStates: entFlags.filter(([v, n]) =>
        (v & ~stateMask) === 0n && !structural.test(n) &&
        !n.startsWith("SCX_TASK_REENQ")
      ).map(([v, n]) => name(v, n)),
      taskStateMask: Number(stateMask),
      dsqIdNames: new Map(
        enumValues(btf, "scx_dsq_id_flags").filter(([, n]) =>
          !n.startsWith("SCX_DSQ_FLAG_") && n !== "SCX_DSQ_LOCAL_CPU_MASK" &&
          n !== "SCX_DSQ_LOCAL_ON"
        ).map(([v, n]) => [BigInt.asUintN(64, v), n]),
      ),
      iterCursorFlag: Number(
        enumerator(lnode, "SCX_DSQ_LNODE_ITER_CURSOR") ?? 1n,
      ),
    };
  } catch (error) {
    return `the kernel's sched_ext types differ from the ones these views read (${
      (error as Error).message
    })`;
  }
}

/** `scx_enable_state_str[]` of `kernel/sched/ext/internal.h`: the enumerator without `SCX_`, lower case. */
export function enableStateName(layout: ScxLayout, value: number): string {
  const name = layout.enableStates.get(value);
  return name ? name.replace(/^SCX_/, "").toLowerCase() : `unknown (${value})`;
}
