/**
 * bpfmap: find, hold and read Linux BPF maps from Deno.
 *
 * - {@linkcode openBpfMapFdByName} finds the lowest-id map with a
 *   kernel-visible name and returns an owned fd that keeps it alive.
 * - {@linkcode BpfSyscallAccessor} reads every common map type of the running
 *   kernel through bpf(), batched where the kernel allows.
 * - {@linkcode GuestMemMapAccessor} reads the same maps from a frozen VM's
 *   RAM file or core, with no agent in the guest and no vmlinux.
 * - {@linkcode renderValue} turns map bytes into typed values with BTF, and
 *   {@linkcode dumpState} builds the failure dump of every map.
 * - Every fd is owned by one object and released by `Symbol.dispose`.
 *
 * Requires `--allow-ffi` (and `--allow-read` for /proc and /sys) and root or
 * CAP_SYS_ADMIN.
 *
 * @example Create, fill and read a hash map
 * ```ts
 * import { BpfSyscallAccessor, MapType, openBpfMapFdByName } from "@bpfmap/bpfmap";
 *
 * using created = BpfSyscallAccessor.createMap({
 *   type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 64, name: "demo_counts",
 * });
 * const accessor = new BpfSyscallAccessor();
 * const map = accessor.findMap("demo_counts")!;
 * accessor.update(map, new Uint8Array([1, 0, 0, 0]), new Uint8Array(8).fill(7));
 * for (const { key, value } of accessor.iterHashMap(map)) console.log(key, value);
 *
 * using held = openBpfMapFdByName("demo_counts"); // lowest id wins
 * ```
 *
 * @module
 */

export type {
  ArenaPage,
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
  BpfProgramInfo,
  EntryBatch,
  EntryBatchOptions,
  LocalStorageEntry,
  MapEntry,
  PercpuMapEntry,
  ReadProblem,
} from "./src/accessor/types.ts";
export {
  BpfSyscallAccessor,
  type IterBatchesOptions,
} from "./src/accessor/syscall.ts";
export { percpuStride } from "./src/accessor/percpu.ts";
export {
  type BpfMapFieldWriter,
  type FieldChange,
  type FieldValue,
  type FieldWriteResult,
  isFieldWriter,
  type WriteFieldOptions,
} from "./src/accessor/field_write.ts";
export {
  cTypeName,
  encodeFieldValue,
  type FieldLocation,
  formatFieldValue,
  resolveFieldPath,
} from "./src/btf/field_path.ts";
export {
  BpfmapError,
  type BpfmapErrorOptions,
  FieldError,
  MapArgumentError,
  MapChangedError,
  MapGoneError,
  type MapIdentity,
  MapReadOnlyError,
  MapTypeError,
  MapUnreadableError,
} from "./src/errors.ts";
export {
  MapNameTooLongError,
  MapNotFoundError,
  MapVanishedError,
  openBpfMapFdByName,
  type OpenByNameOptions,
  type SeenMap,
  truncateMapName,
} from "./src/accessor/pin.ts";
export {
  BpfError,
  type BpfErrorOptions,
  SyscallError,
} from "./src/sys/errors.ts";
export { OwnedFd } from "./src/sys/fd.ts";
export type { MapCreateAttr } from "./src/sys/bpf.ts";
export {
  BPF_OBJ_NAME_LEN,
  MapFlag,
  MapType,
  mapTypeName,
  UpdateFlag,
} from "./src/sys/constants.ts";
export { parseCpuList, possibleCpuCount } from "./src/sys/cpus.ts";
export {
  Btf,
  BtfError,
  btfFromElf,
  btfFromElfFile,
  BtfKind,
  BtfNotFoundError,
  type BtfParseOptions,
  cpuList,
  cpuListBytes,
  type CpumaskLayout,
  cpumaskLayout,
  formatValue,
  type FormatValueOptions,
  type JsonInput,
  loadBtfById,
  loadKernelBtf,
  type LoadKernelBtfOptions,
  parseJsonExact,
  type PercpuRenderedValue,
  recoverFullMapName,
  type RecoverFullMapNameOptions,
  type RenderedValue,
  type RenderOptions,
  renderPercpuValues,
  renderValue,
  toJson,
  type ToJsonOptions,
} from "./src/btf/mod.ts";
export type * from "./src/btf/types.ts";
export * from "./src/dump/mod.ts";
export {
  type GuestKernelFiles,
  GuestMemMapAccessor,
  type GuestMemOptions,
  loadGuestKernelFiles,
} from "./src/accessor/guest.ts";
export {
  QmpClient,
  type QmpConnectOptions,
  QmpError,
  type QmpExecuteOptions,
} from "./src/guest/qmp.ts";
export {
  GuestKernelError,
  GuestMemoryError,
  GuestSourceError,
} from "./src/guest/errors.ts";
export { type PhysRegion, qemuX86Layout } from "./src/guest/phys.ts";
export {
  type QemuProcessOptions,
  type QemuRamLayout,
  qemuRamLayout,
} from "./src/guest/qemu_process.ts";
export type { GuestKernelOptions } from "./src/guest/kernel.ts";
export type { GuestMapLimits } from "./src/guest/maps.ts";
export * from "./src/accessor/maptypes/mod.ts";
export { progTypeName } from "./src/sys/prog_types.ts";
export {
  type ActiveScheduler,
  activeScheduler,
  type ActiveSchedulerOptions,
  type ActiveSchedulerRule,
} from "./src/accessor/active_scheduler.ts";
// sched_ext state views (issue 12 item 2): one ScxViews type for both backends
export {
  guestScxViews,
  type LiveScxOptions,
  readLiveScxViews,
  SCX_SYSFS,
  scxAvailable,
  scxRootExitKindAddress,
  scxViews,
  type ScxViewsOptions,
} from "./src/accessor/scx.ts";
export type {
  ScxBypassDsq,
  ScxCpusView,
  ScxCpuView,
  ScxDsqsView,
  ScxDsqView,
  ScxEnumValue,
  ScxEventCounter,
  ScxEventsView,
  ScxExitInfoView,
  ScxRootView,
  ScxSchedulerView,
  ScxSection,
  ScxTaskView,
  ScxUnavailable,
  ScxViewOptions,
  ScxViews,
} from "./src/guest/scx/types.ts";
export { scxViewsToJson, scxViewsToText } from "./src/dump/scx_format.ts";
