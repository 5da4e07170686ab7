/**
 * The root sched_ext scheduler of a guest kernel, read from its memory:
 * `scx_root` (7.x: `struct scx_sched __rcu *scx_root`, kernel/sched/ext/ext.c)
 * → `ops.name`, `exit_kind`, `exit_info`, `watchdog_timeout`; and the core's
 * globals (`scx_enable_state_var`, `scx_switching_all`, `scx_nr_rejected`,
 * `scx_hotplug_seq`, `scx_enable_seq`).
 *
 * Once a scheduler has exited, `scx_root_disable()` clears `scx_root`, but the
 * `struct scx_sched` lives on (its exit info too) until the loader detaches
 * the struct_ops link: `bpf_scx_unreg()` clears `ops->priv` and drops the
 * last reference. Until then the loader's struct_ops map (`kvalue.data.priv`)
 * still points at it, and that is where the views look when `scx_root` is
 * NULL.
 *
 * @module
 */

import type { Btf } from "../../btf/mod.ts";
import { GuestKernelError, hex } from "../errors.ts";
import type { GuestKernel } from "../kernel.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import { enableStateName, type ScxLayout, scxLayoutFromBtf } from "./layout.ts";
import type {
  ScxEnumValue,
  ScxExitInfoView,
  ScxRootView,
  ScxSchedulerView,
  ScxSection,
} from "./types.ts";

/** `BPF_MAP_TYPE_STRUCT_OPS` (include/uapi/linux/bpf.h). */
const STRUCT_OPS_MAP = 26;
/** The longest `scx_exit_reason()` string is 34 bytes; leave room. */
const MAX_REASON = 128;

/** A kernel virtual address (x86-64 and arm64 kernels live in the top half). */
export function isKernelPointer(value: bigint | null): value is bigint {
  return value !== null && value >> 63n === 1n;
}

/** A NUL-terminated string of at most `max` bytes at `va`, or null when unreadable. */
export function readCString(
  space: KernelAddressSpace,
  va: bigint,
  max: number,
): string | null {
  // page by page: a short string near the end of a mapping must still read
  const out: number[] = [];
  let at = va;
  while (out.length < max) {
    const chunk = Math.min(max - out.length, 4096 - Number(at & 0xfffn));
    const bytes = space.read(at, chunk);
    if (bytes === null) return out.length === 0 ? null : decode(out);
    const nul = bytes.indexOf(0);
    if (nul >= 0) {
      out.push(...bytes.subarray(0, nul));
      return decode(out);
    }
    out.push(...bytes);
    at += BigInt(chunk);
  }
  return decode(out);
}

const decode = (bytes: number[]): string =>
  new TextDecoder().decode(new Uint8Array(bytes));

/** Where the root scheduler was found. */
export interface RootLocation {
  /** The `struct scx_sched`. */
  address: bigint;
  /** `"scx_root"` or the struct_ops map whose `ops.priv` led there. */
  foundVia: string;
}

function enumValue(
  names: ReadonlyMap<number, string>,
  value: number,
): ScxEnumValue {
  return { value, name: names.get(value) ?? null };
}

/**
 * The exited scheduler a loader's struct_ops map still points at
 * (`kvalue.data.priv`), newest map first; null when none does.
 */
function rootFromStructOps(
  kernel: GuestKernel,
  btf: Btf,
  maps: readonly GuestMapRecord[],
): RootLocation | null {
  let kvalue: number;
  try {
    kvalue = btf.memberOffset("bpf_struct_ops_map", "kvalue").offset;
  } catch {
    return null;
  }
  const candidates = maps.filter((m) => m.type === STRUCT_OPS_MAP)
    .sort((a, b) => b.id - a.id);
  for (const map of candidates) {
    let priv: number;
    try {
      const valueType = btf.type(map.btfVmlinuxValueTypeId);
      if (!valueType.name.startsWith("bpf_struct_ops_sched_ext_ops")) continue;
      priv = btf.memberOffset(valueType.id, "data.priv").offset;
    } catch {
      continue;
    }
    const pointer = kernel.space.u64(
      map.kernelAddress + BigInt(kvalue + priv),
    );
    if (isKernelPointer(pointer)) {
      return {
        address: pointer,
        foundVia: `struct_ops map ${map.id} (${map.name}) ops.priv`,
      };
    }
  }
  return null;
}

/**
 * The root scheduler's `struct scx_sched`: `scx_root`, else (after an exit)
 * the one a struct_ops map still points at; or why there is none.
 *
 * @param maps the guest's maps (`GuestMapReader.maps()`), for the after-exit fallback
 */
export function findRootScheduler(
  kernel: GuestKernel,
  btf: Btf,
  maps: readonly GuestMapRecord[] = [],
): RootLocation | string {
  const symbol = kernel.findSymbol("scx_root");
  if (symbol === undefined) {
    return "the kernel has no scx_root symbol (no sched_ext, or one older than 6.16)";
  }
  const root = kernel.space.u64(symbol);
  if (root === null) return `scx_root at ${hex(symbol)} is not mapped`;
  if (root !== 0n) {
    if (!isKernelPointer(root)) {
      return `scx_root holds ${hex(root)}, not a kernel address`;
    }
    return { address: root, foundVia: "scx_root" };
  }
  return rootFromStructOps(kernel, btf, maps) ??
    "no scheduler attached (scx_root is NULL and no sched_ext struct_ops map points at an exited one)";
}

/**
 * The kernel address of the root scheduler's `exit_kind` (`atomic_t`,
 * `SCX_EXIT_NONE` until `scx_claim_exit()` writes the reason it is exiting):
 * the word a hardware watchpoint on "the scheduler fails" watches.
 *
 * @throws {GuestKernelError} when the kernel has no sched_ext or no scheduler is attached
 */
export function rootExitKindAddress(kernel: GuestKernel, btf: Btf): bigint {
  const layout = scxLayoutFromBtf(btf);
  if (typeof layout === "string") {
    throw new GuestKernelError(
      `Cannot find the root scheduler's exit_kind: ${layout}`,
    );
  }
  const symbol = kernel.findSymbol("scx_root");
  const root = symbol === undefined ? null : kernel.space.u64(symbol);
  if (!isKernelPointer(root)) {
    throw new GuestKernelError(
      `Cannot find the root scheduler's exit_kind: ${
        symbol === undefined
          ? "the kernel has no scx_root symbol"
          : "no scheduler attached (scx_root is NULL)"
      }; start the scheduler first`,
    );
  }
  return root + BigInt(layout.exitKind);
}

function readExitInfo(
  space: KernelAddressSpace,
  layout: ScxLayout,
  sched: bigint,
): ScxExitInfoView | null {
  const ei = space.u64(sched + BigInt(layout.exitInfo));
  if (!isKernelPointer(ei)) return null;
  const kind = space.u32(ei + BigInt(layout.exitInfoKind));
  const cpu = space.u32(ei + BigInt(layout.exitInfoCpu));
  const code = space.u64(ei + BigInt(layout.exitInfoCode));
  if (kind === null || cpu === null || code === null) return null;
  const reasonPtr = space.u64(ei + BigInt(layout.exitInfoReason));
  const msgPtr = space.u64(ei + BigInt(layout.exitInfoMsg));
  return {
    kind: enumValue(layout.exitKinds, kind),
    reason: isKernelPointer(reasonPtr)
      ? readCString(space, reasonPtr, MAX_REASON)
      : null,
    exitCode: BigInt.asIntN(64, code),
    exitCpu: cpu | 0,
    msg: isKernelPointer(msgPtr)
      ? readCString(space, msgPtr, layout.exitMsgLen) ?? ""
      : "",
  };
}

/** The scheduler at `location`, or why it cannot be read. */
export function readScheduler(
  kernel: GuestKernel,
  layout: ScxLayout,
  location: RootLocation,
): ScxSection<ScxSchedulerView> {
  const space = kernel.space;
  const sched = location.address;
  // the ops union holds sched_ext_ops or sched_ext_ops_cid: is_cid_type says which
  const cidByte = layout.isCidType === null
    ? null
    : space.u8(sched + BigInt(layout.isCidType));
  const cid = cidByte !== null && cidByte !== 0 && layout.opsCid !== null
    ? layout.opsCid
    : null;
  const ops = readCString(
    space,
    sched + BigInt(cid?.name ?? layout.opsName),
    layout.opsNameLen,
  );
  const exitKind = space.u32(sched + BigInt(layout.exitKind));
  if (ops === null || exitKind === null) {
    return {
      unavailable: `struct scx_sched at ${
        hex(sched)
      } (from ${location.foundVia}) is not mapped`,
    };
  }
  const watchdog = space.u64(sched + BigInt(layout.watchdogTimeout));
  const timeoutMs = space.u32(
    sched + BigInt(cid?.timeoutMs ?? layout.opsTimeoutMs),
  );
  return {
    ops,
    opsStruct: cidByte === null
      ? null
      : cid
      ? "sched_ext_ops_cid"
      : "sched_ext_ops",
    foundVia: location.foundVia,
    address: sched,
    instanceId: layout.schedId === null
      ? null
      : space.u64(sched + BigInt(layout.schedId)),
    exitKind: enumValue(layout.exitKinds, exitKind),
    exitKindAddress: sched + BigInt(layout.exitKind),
    exit: readExitInfo(space, layout, sched),
    watchdogTimeoutJiffies: watchdog,
    timeoutMs,
  };
}

/** An `atomic_long_t`/`long` global by name, or null when absent or unmapped. */
function globalLong(kernel: GuestKernel, name: string): bigint | null {
  const address = kernel.findSymbol(name);
  const value = address === undefined ? null : kernel.space.u64(address);
  return value === null ? null : BigInt.asIntN(64, value);
}

/** `jiffies_64` (the `jiffies` alias on 64-bit kernels), or null. */
function jiffiesNow(kernel: GuestKernel): bigint | null {
  const address = kernel.findSymbol("jiffies_64") ??
    kernel.findSymbol("jiffies");
  return address === undefined ? null : kernel.space.u64(address);
}

/**
 * The root view: the core's globals and the root scheduler.
 *
 * @param location from {@linkcode findRootScheduler}
 */
export function readRootView(
  kernel: GuestKernel,
  layout: ScxLayout,
  location: RootLocation | string,
): ScxSection<ScxRootView> {
  const stateSymbol = kernel.findSymbol("scx_enable_state_var");
  if (stateSymbol === undefined) {
    return {
      unavailable:
        "the kernel has no scx_enable_state_var symbol (kallsyms without CONFIG_KALLSYMS_ALL?)",
    };
  }
  const state = kernel.space.u32(stateSymbol);
  if (state === null) {
    return {
      unavailable: `scx_enable_state_var at ${hex(stateSymbol)} is not mapped`,
    };
  }
  const switching = kernel.findSymbol("scx_switching_all");
  const switchAll = switching === undefined ? null : kernel.space.u8(switching);
  return {
    state: enableStateName(layout, state),
    switchAll: switchAll === null ? null : switchAll !== 0,
    nrRejected: globalLong(kernel, "scx_nr_rejected"),
    hotplugSeq: globalLong(kernel, "scx_hotplug_seq"),
    enableSeq: globalLong(kernel, "scx_enable_seq"),
    jiffies: jiffiesNow(kernel),
    scheduler: typeof location === "string"
      ? { unavailable: location }
      : readScheduler(kernel, layout, location),
  };
}
