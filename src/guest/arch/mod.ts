/**
 * The registry of guest architectures, and detection from VMCOREINFO.
 *
 * @module
 */

import { GuestKernelError } from "../errors.ts";
import type { Vmcoreinfo } from "../vmcoreinfo.ts";
import type { GuestArch } from "./types.ts";
import { X86_64 } from "./x86_64.ts";
import { AARCH64 } from "./aarch64.ts";

export type { ArchAddressing, GuestArch, WalkResult } from "./types.ts";

/** Every architecture bpfmap reads, tried in order. */
export const ARCHES: readonly GuestArch[] = [X86_64, AARCH64];

/**
 * The architecture whose kernel wrote `info`; a one-line GuestKernelError
 * naming what VMCOREINFO said when none recognises it.
 *
 * @example
 * ```ts
 * import { detectArch } from "./mod.ts";
 * import { parseVmcoreinfo } from "../vmcoreinfo.ts";
 * const info = parseVmcoreinfo("OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82000000\n");
 * console.log(detectArch(info).name); // x86_64
 * ```
 */
export function detectArch(info: Vmcoreinfo): GuestArch {
  const arch = ARCHES.find((a) => a.recognizes(info));
  if (arch) return arch;
  const hints = [...info.raw.keys()].filter((k) =>
    /^(NUMBER|SYMBOL)\((VA_BITS|kimage_voffset|PHYS_OFFSET|TCR_EL1_T1SZ|swapper_pg_dir|init_top_pgt|phys_base|MAX_PHYSMEM_BITS)\)$/
      .test(k) || k === "KERNELPACMASK"
  );
  throw new GuestKernelError(
    `VMCOREINFO of OSRELEASE=${info.osRelease} (PAGESIZE=${info.pageSize}) is from an architecture bpfmap cannot read${
      hints.length ? ` (it has ${hints.slice(0, 6).join(", ")})` : ""
    }`,
    {
      hint: `supported: ${
        ARCHES.map((a) => a.name).join(", ")
      } (recognised by their VMCOREINFO keys)`,
    },
  );
}
