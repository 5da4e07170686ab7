/**
 * Dispatch queues and the tasks on them, read from guest memory with every
 * walk bounded: a DSQ's `list` (tasks linked through
 * `task_struct.scx.dsq_list.node`, iterator cursors skipped as the kernel's
 * `nldsq_next_task()` skips them) and the scheduler's `dsq_hash` rhashtable.
 * Guest memory is hostile: a cycle, a bad pointer or an absurd size ends the
 * walk with a note, never a hang or a throw.
 *
 * @module
 */

import { hex } from "../errors.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { ScxLayout } from "./layout.ts";
import { isKernelPointer } from "./root.ts";
import type { ScxDsqView, ScxTaskView } from "./types.ts";

/** Iterator cursors a DSQ list may hold beside its tasks before the walk gives up. */
const MAX_CURSORS = 256;
/** More buckets than any DSQ hash table holds: a bigger `size` is corrupt. */
const MAX_BUCKETS = 1 << 20;
/** DSQs read from one hash table at most. */
export const MAX_USER_DSQS = 4096;
/** Entries in one hash chain at most. */
const MAX_CHAIN = 4096;
/** `future_tbl` links followed at most (a resize in progress has one). */
const MAX_TABLES = 4;

/** The builtin id's name (`SCX_DSQ_GLOBAL`, `SCX_DSQ_LOCAL_ON|3`), null for user DSQs. */
export function dsqIdName(layout: ScxLayout, id: bigint): string | null {
  const builtin = layout.dsqIdNames.get(id);
  if (builtin) return builtin;
  const localOn = 0xc000000000000000n; // SCX_DSQ_FLAG_BUILTIN | SCX_DSQ_FLAG_LOCAL_ON
  if ((id & localOn) === localOn) {
    return `SCX_DSQ_LOCAL_ON|${id & 0xffffffffn}`;
  }
  return null;
}

/** Names of the set bits, and the task state under `SCX_TASK_STATE_MASK`. */
function taskFlagNames(layout: ScxLayout, flags: number): string[] {
  const names = layout.taskFlagBits.filter(([bit]) => (flags & bit) !== 0)
    .map(([, name]) => name);
  const state = flags & layout.taskStateMask;
  const stateName = layout.taskStates.find(([v]) => v === state)?.[1];
  if (layout.taskStateMask !== 0) {
    names.push(stateName ?? `state ${state >> 8}`);
  }
  return names;
}

/** `task_struct` and its `scx` at `task`, or null when unreadable. */
export function readTask(
  space: KernelAddressSpace,
  layout: ScxLayout,
  task: bigint,
): ScxTaskView | null {
  const t = layout.task;
  const pid = space.u32(task + BigInt(t.pid));
  const comm = space.read(task + BigInt(t.comm), t.commLen);
  const flags = space.u32(task + BigInt(t.flags));
  const weight = space.u32(task + BigInt(t.weight));
  const slice = space.u64(task + BigInt(t.slice));
  const vtime = space.u64(task + BigInt(t.dsqVtime));
  const dsq = space.u64(task + BigInt(t.dsq));
  const runnableAt = space.u64(task + BigInt(t.runnableAt));
  if (
    runnableAt === null ||
    pid === null || comm === null || flags === null || weight === null ||
    slice === null || vtime === null || dsq === null
  ) {
    return null;
  }
  const nul = comm.indexOf(0);
  return {
    pid: pid | 0,
    comm: new TextDecoder().decode(comm.subarray(0, nul < 0 ? undefined : nul)),
    flags,
    flagNames: taskFlagNames(layout, flags),
    dsqId: isKernelPointer(dsq) ? space.u64(dsq + BigInt(layout.dsq.id)) : null,
    weight,
    slice,
    dsqVtime: vtime,
    runnableAt,
    address: task,
  };
}

/**
 * The DSQ at `dsq`: id, `nr` and its first `limit` tasks in dispatch order;
 * null when its header is unreadable.
 */
export function readDsq(
  space: KernelAddressSpace,
  layout: ScxLayout,
  dsq: bigint,
  limit: number,
): ScxDsqView | null {
  const id = space.u64(dsq + BigInt(layout.dsq.id));
  const nr = space.u32(dsq + BigInt(layout.dsq.nr));
  if (id === null || nr === null) return null;
  const tasks: ScxTaskView[] = [];
  const notes: string[] = [];
  const head = dsq + BigInt(layout.dsq.list);
  const flagsFromNode = BigInt(
    layout.task.dsqListFlags - layout.task.dsqListNode,
  );
  const seen = new Set<bigint>();
  let node = space.u64(head + BigInt(layout.listNext));
  let cursors = 0;
  while (tasks.length < limit) {
    if (node === head) break;
    if (!isKernelPointer(node)) {
      notes.push(
        `list walk stopped after ${tasks.length} tasks: next pointer ${
          node === null ? "unreadable" : hex(node)
        }`,
      );
      break;
    }
    if (seen.has(node)) {
      notes.push(
        `list walk stopped after ${tasks.length} tasks: node ${
          hex(node)
        } seen twice (a cycle)`,
      );
      break;
    }
    seen.add(node);
    const flags = space.u32(node + flagsFromNode);
    if (flags !== null && (flags & layout.iterCursorFlag) !== 0) {
      if (++cursors > MAX_CURSORS) {
        notes.push(
          `list walk stopped: more than ${MAX_CURSORS} iterator cursors`,
        );
        break;
      }
    } else {
      const task = readTask(
        space,
        layout,
        node - BigInt(layout.task.dsqListNode),
      );
      if (task === null) {
        notes.push(`task at list node ${hex(node)} is unreadable`);
        break;
      }
      tasks.push(task);
    }
    node = space.u64(node + BigInt(layout.listNext));
  }
  return { id, idName: dsqIdName(layout, id), nr, tasks, notes };
}

/**
 * Every object in an rhashtable (`struct rhashtable` at `table`), as the
 * address of its `rhash_head` minus `headOffset`; bounded, notes for what
 * was skipped.
 */
export function walkRhashtable(
  space: KernelAddressSpace,
  layout: ScxLayout,
  table: bigint,
  headOffset: number,
  max: number,
  notes: string[],
): bigint[] {
  const found: bigint[] = [];
  const seen = new Set<bigint>();
  let tbl = space.u64(table + BigInt(layout.rhtTbl));
  for (let hop = 0; hop < MAX_TABLES && isKernelPointer(tbl); hop++) {
    const size = space.u32(tbl + BigInt(layout.tblSize));
    const nest = space.u32(tbl + BigInt(layout.tblNest));
    if (size === null || nest === null) {
      notes.push(`bucket_table at ${hex(tbl)} is unreadable`);
      break;
    }
    if (nest !== 0) {
      notes.push(`bucket_table at ${hex(tbl)} is nested (not walked)`);
    } else if (size > MAX_BUCKETS) {
      notes.push(
        `bucket_table at ${hex(tbl)} claims ${size} buckets (not walked)`,
      );
    } else {
      const buckets = space.read(tbl + BigInt(layout.tblBuckets), size * 8);
      if (buckets === null) {
        notes.push(`buckets of bucket_table at ${hex(tbl)} are unreadable`);
      } else {
        const view = new DataView(
          buckets.buffer,
          buckets.byteOffset,
          buckets.byteLength,
        );
        for (let b = 0; b < size && found.length < max; b++) {
          // bit 0 is the bucket lock; an odd value ends a chain (nulls marker)
          let entry: bigint | null = view.getBigUint64(b * 8, true) & ~1n;
          for (let n = 0; n < MAX_CHAIN; n++) {
            if (entry === null || entry === 0n || (entry & 1n) === 1n) break;
            if (!isKernelPointer(entry)) {
              notes.push(
                `bucket ${b}: chain pointer ${
                  hex(entry)
                } is not a kernel address`,
              );
              break;
            }
            if (seen.has(entry)) break; // a cycle, or the same entry in future_tbl
            seen.add(entry);
            found.push(entry - BigInt(headOffset));
            if (found.length >= max) {
              notes.push(`stopped at ${max} entries`);
              break;
            }
            entry = space.u64(entry + BigInt(layout.rhashNext));
          }
        }
      }
    }
    tbl = space.u64(tbl + BigInt(layout.tblFuture));
  }
  return found;
}
