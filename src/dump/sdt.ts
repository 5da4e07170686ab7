/**
 * scx_sdt's per-task data (tools/sched_ext/scx_sdt.bpf.c and scx_sdt.h in
 * Linux 7.3): each task's `scx_task_map` task-storage value holds
 * `struct sdt_data __arena *data`, an element of the `sdt_alloc` allocator
 * in the arena: `union sdt_id tid` followed by the payload, the
 * scheduler's per-task struct, as `__u64 payload[]`.
 *
 * The program's BTF declares `struct sdt_data` without defining it (the
 * program only passes pointers to it), so the generic arena follower could
 * not size it. This module supplies the layout from scx_sdt's own facts:
 * the header is the BTF's `union sdt_id`, and an element is
 * `pool.elem_size` bytes (`scx_alloc_init`: `round_up(sizeof(struct
 * sdt_data) + data_size, 8)`), read from the program's allocator global
 * `scx_task_allocator` in its `.bss`. Followed from each task's storage
 * entry, every task's data shows under that task's entry.
 *
 * @module
 */

import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import type { Btf } from "../btf/btf.ts";
import { BtfKind } from "../btf/kind.ts";
import { type RenderedValue, renderValue } from "../btf/render.ts";
import { MapType } from "../sys/constants.ts";
import type { DeclaredLayout } from "./arena.ts";

/** The forward-declared struct this module gives a layout to. */
export const SDT_DATA = "sdt_data";
/** scx_sdt's allocator global for per-task data. */
export const SDT_TASK_ALLOCATOR = "scx_task_allocator";
/** An element never spans more than a chunk page (scx_alloc_init's assertion). */
const MAX_ELEM_SIZE = 4096;

/**
 * `pool.elem_size` of the program's `scx_task_allocator`, read from the
 * global-data map with the program's BTF; undefined when there is none or
 * its value is not a plausible element size (guest memory is hostile).
 */
function taskElemSize(
  accessor: BpfMapAccessor,
  maps: readonly BpfMapInfo[],
  btf: Btf,
  btfId: number,
): number | undefined {
  for (const map of maps) {
    if (
      map.type !== MapType.ARRAY || map.btfId !== btfId ||
      map.btfValueTypeId === 0 ||
      btf.kindOf(btf.resolve(map.btfValueTypeId)) !== BtfKind.DATASEC
    ) continue;
    const variable = btf.datasecVariables(btf.resolve(map.btfValueTypeId))
      .find((v) => v.name === SDT_TASK_ALLOCATOR);
    if (!variable) continue;
    const at = btf.memberOffset(variable.type, "pool.elem_size").offset;
    const bytes = accessor.readValue(map, variable.offset + at, 8);
    if (!bytes) return undefined;
    const size = new DataView(bytes.buffer, bytes.byteOffset, 8)
      .getBigUint64(0, true);
    return size >= 8n && size <= BigInt(MAX_ELEM_SIZE) && size % 8n === 0n
      ? Number(size)
      : undefined;
  }
  return undefined;
}

/**
 * The layout of scx_sdt's `struct sdt_data` for the program whose BTF is
 * `btf` (object id `btfId`), as a resolver for `ArenaFollowOptions.declared`;
 * undefined when the BTF is not scx_sdt's (no 8-byte `union sdt_id`).
 * Without the allocator's element size only the header is read.
 *
 * @param accessor reads the program's `.bss`
 * @param maps the maps of the dump (the program's global-data map among them)
 * @param btf the program's BTF
 * @param btfId its object id
 * @returns the resolver, or undefined
 */
export function sdtLayouts(
  accessor: BpfMapAccessor,
  maps: readonly BpfMapInfo[],
  btf: Btf,
  btfId: number,
): ((name: string) => DeclaredLayout | undefined) | undefined {
  const id = btf.findByName("sdt_id", BtfKind.UNION)?.id;
  if (id === undefined || btf.sizeOf(id) !== 8) return undefined;
  let layout: DeclaredLayout | undefined;
  return (name) => {
    if (name !== SDT_DATA) return undefined;
    if (layout) return layout;
    let elemSize: number | undefined;
    let why = "";
    try {
      elemSize = taskElemSize(accessor, maps, btf, btfId);
    } catch (error) {
      why = `: ${error instanceof Error ? error.message : String(error)}`;
    }
    const size = elemSize ?? 8;
    layout = {
      size,
      render(bytes: Uint8Array): RenderedValue {
        const view = new DataView(bytes.buffer, bytes.byteOffset, size);
        const payload: bigint[] = [];
        for (let at = 8; at + 8 <= size; at += 8) {
          payload.push(view.getBigUint64(at, true));
        }
        return {
          tid: renderValue(btf, id, bytes.subarray(0, 8)),
          payload,
        };
      },
      note: elemSize === undefined
        ? `scx_sdt element: header only, ${SDT_TASK_ALLOCATOR}.pool.elem_size not readable${why}`
        : `scx_sdt element of ${elemSize} bytes (${SDT_TASK_ALLOCATOR}.pool.elem_size): payload as __u64 words`,
    };
    return layout;
  };
}
