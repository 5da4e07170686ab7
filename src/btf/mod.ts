/**
 * BTF: parse kernel and program type information, query it, and render raw
 * map bytes as typed values.
 *
 * ```ts
 * import { loadKernelBtf } from "./mod.ts";
 * const btf = loadKernelBtf();
 * console.log(btf.memberOffset("bpf_map", "name"));
 * ```
 *
 * @module
 */

export { Btf, type BtfParseOptions, MAX_TYPE_DEPTH } from "./btf.ts";
export { BtfError, BtfNotFoundError } from "./errors.ts";
export { BTF_KIND_MAX, BtfKind, btfKindName } from "./kind.ts";
export { btfFromElf, btfFromElfFile, elfSection } from "./elf.ts";
export {
  loadBtfById,
  loadKernelBtf,
  type LoadKernelBtfOptions,
  VMLINUX_BTF_PATH,
} from "./load.ts";
export type * from "./types.ts";
export { formatValue, type FormatValueOptions } from "./format_value.ts";
export {
  type PointerSlot,
  type PointerSlotLimits,
  pointerSlots,
  typeName,
} from "./arena_pointers.ts";
export {
  cpuList,
  cpuListBytes,
  type CpumaskLayout,
  cpumaskLayout,
} from "./cpumask.ts";
export {
  type PercpuRenderedValue,
  type RenderedValue,
  type RenderOptions,
  renderPercpuValues,
  renderValue,
} from "./render.ts";
export {
  type JsonInput,
  parseJsonExact,
  toJson,
  type ToJsonOptions,
} from "./json.ts";
export {
  recoverFullMapName,
  type RecoverFullMapNameOptions,
} from "./map_name.ts";
