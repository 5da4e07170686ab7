/**
 * sched_ext state views for either backend: {@linkcode scxViews} reads a
 * frozen guest's memory when given a {@linkcode GuestMemMapAccessor}, and the
 * running kernel's sysfs otherwise. One {@linkcode ScxViews} type for both.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestMapRecord } from "../guest/map_records.ts";
import { rootExitKindAddress } from "../guest/scx/root.ts";
import type { ScxViewOptions, ScxViews } from "../guest/scx/types.ts";
import { readGuestScxViews } from "../guest/scx/views.ts";
import { GuestMemMapAccessor } from "./guest.ts";
import { readLiveScxViews, SCX_SYSFS } from "./scx_live.ts";
import { BpfSyscallAccessor } from "./syscall.ts";
import type { BpfMapAccessor } from "./types.ts";

export type * from "../guest/scx/types.ts";
export { scxAvailable } from "../guest/scx/types.ts";
export {
  type LiveScxOptions,
  readLiveScxViews,
  SCX_SYSFS,
} from "./scx_live.ts";

/** The guest kernel's vmlinux BTF, parsed once per accessor. */
function vmlinuxOf(accessor: GuestMemMapAccessor): Btf {
  return accessor.vmlinuxBtf();
}

/**
 * The sched_ext views of a frozen guest: root scheduler, event counters,
 * per-CPU `rq->scx`, global and user DSQs and the tasks on them. Every
 * section is its data or `{ unavailable: "reason" }`.
 */
export function guestScxViews(
  accessor: GuestMemMapAccessor,
  options: ScxViewOptions = {},
): ScxViews {
  let btf: Btf;
  try {
    btf = vmlinuxOf(accessor);
  } catch (error) {
    const none = {
      unavailable: `the guest's vmlinux BTF: ${(error as Error).message}`,
    };
    return {
      source: "guest",
      root: none,
      events: none,
      cpus: none,
      dsqs: none,
    };
  }
  let maps: readonly GuestMapRecord[];
  try {
    maps = accessor.reader.maps();
  } catch {
    maps = []; // only the after-exit fallback needs them
  }
  return readGuestScxViews(accessor.kernel, btf, maps, options);
}

/** Options for {@linkcode scxViews}. */
export interface ScxViewsOptions extends ScxViewOptions {
  /**
   * sched_ext's sysfs directory for a backend other than a guest's memory;
   * `null` to read none. Default: `/sys/kernel/sched_ext` for the live
   * backend ({@linkcode BpfSyscallAccessor}), none for any other (a wrapper
   * or fake may not stand for this machine's kernel).
   */
  sysfs?: string | null;
}

/**
 * The sched_ext views of whatever `accessor` reads: a guest's memory for a
 * {@linkcode GuestMemMapAccessor}, this machine's sysfs for the live
 * backend (where per-CPU and DSQ sections are unavailable).
 *
 * @example
 * ```ts ignore
 * import { BpfSyscallAccessor, scxViews } from "@bpfmap/bpfmap";
 * const views = scxViews(new BpfSyscallAccessor());
 * console.log("state" in views.root ? views.root.state : views.root.unavailable);
 * ```
 */
export function scxViews(
  accessor: BpfMapAccessor,
  options: ScxViewsOptions = {},
): ScxViews {
  if (accessor instanceof GuestMemMapAccessor) {
    return guestScxViews(accessor, options);
  }
  const sysfs = options.sysfs !== undefined
    ? options.sysfs
    : accessor instanceof BpfSyscallAccessor
    ? SCX_SYSFS
    : null;
  if (sysfs === null) {
    const none = {
      unavailable:
        "this backend reads neither a guest's memory nor the live kernel (no sysfs to read)",
    };
    return { source: "live", root: none, events: none, cpus: none, dsqs: none };
  }
  return readLiveScxViews({ sysfs });
}

/**
 * The guest kernel address of the root scheduler's `exit_kind` (the
 * `atomic_t` `scx_claim_exit()` writes when the scheduler starts to exit):
 * where a watchpoint catches the failure.
 *
 * @throws {GuestKernelError} when the guest has no sched_ext or no scheduler attached
 */
export function scxRootExitKindAddress(accessor: GuestMemMapAccessor): bigint {
  return rootExitKindAddress(accessor.kernel, vmlinuxOf(accessor));
}
