/**
 * Loading BTF from the running kernel: vmlinux from sysfs, any object by id.
 *
 * @module
 */

import { btfGetFdById, btfGetInfo } from "../sys/bpf.ts";
import { Btf } from "./btf.ts";

/** Where the kernel exposes its own BTF. */
export const VMLINUX_BTF_PATH = "/sys/kernel/btf/vmlinux";

/** Options for {@linkcode loadKernelBtf}. */
export interface LoadKernelBtfOptions {
  /** Read this file instead of `/sys/kernel/btf/vmlinux`. */
  path?: string;
}

/**
 * Reads and parses the running kernel's BTF.
 * Requires `--allow-read`.
 *
 * @param options another `path` to read
 * @returns vmlinux BTF
 * @throws {BtfError} when the file is not valid BTF
 *
 * @example Size of `struct bpf_map` on this kernel
 * ```ts
 * import { loadKernelBtf } from "./mod.ts";
 * const btf = loadKernelBtf();
 * console.log(btf.sizeOf(btf.findByName("bpf_map")!.id));
 * ```
 */
export function loadKernelBtf(options: LoadKernelBtfOptions = {}): Btf {
  return Btf.parse(Deno.readFileSync(options.path ?? VMLINUX_BTF_PATH));
}

/**
 * Fetches BTF object `id` from the kernel (BPF_BTF_GET_FD_BY_ID +
 * BPF_OBJ_GET_INFO_BY_FD) and parses it. A kernel module's BTF is split on
 * vmlinux: `base` is used when given, else vmlinux is read from sysfs.
 * Requires `--allow-ffi` and root.
 *
 * @param id the BTF object id (e.g. a map's `btfId`)
 * @param base vmlinux BTF, for module objects
 * @returns the parsed BTF
 * @throws {BpfError} when the id does not exist or access is denied
 * @throws {BtfError} when the blob is malformed
 *
 * @example Load a map's BTF
 * ```ts
 * import { loadBtfById } from "./mod.ts";
 * const btf = loadBtfById(40);
 * ```
 */
export function loadBtfById(id: number, base?: Btf): Btf {
  using fd = btfGetFdById(id);
  const info = btfGetInfo(fd.fd);
  const split = info.kernelBtf && info.name !== "vmlinux";
  if (!split) return Btf.parse(info.bytes);
  return Btf.parse(info.bytes, { base: base ?? loadKernelBtf() });
}
