/**
 * Where the CLI reads maps from: the live kernel, or a frozen guest's memory
 * (`--guest-mem FILE`, `--guest-core FILE`), optionally frozen for the read
 * through QMP (`--qmp SOCKET`).
 *
 * @module
 */

import { BpfSyscallAccessor } from "../accessor/syscall.ts";
import type { BpfMapAccessor } from "../accessor/types.ts";
import { possibleCpuCount } from "../sys/cpus.ts";

/** A data source opened for one command. */
export interface Source {
  /** The maps. */
  accessor: BpfMapAccessor;
  /** CPUs per-CPU values are shown for (the host's possible CPUs, or the guest's `nr_cpu_ids`). */
  cpus: number;
  /** For reports: `live kernel` or `guest memory FILE`. */
  description: string;
}

/** The parseArgs options every reading command accepts. */
export const SOURCE_OPTIONS = {
  "guest-mem": { type: "string" },
  "guest-core": { type: "string" },
  qmp: { type: "string" },
  "guest-system-map": { type: "string" },
  "guest-vmlinux": { type: "string" },
  "guest-btf": { type: "string" },
} as const;

/** Help text lines for {@linkcode SOURCE_OPTIONS}. */
export const SOURCE_HELP = `Source (default: the live kernel through bpf()):
      --guest-mem FILE   Read a guest VM's RAM file (QEMU memory-backend-file
                         share=on, RAM above 3 GiB at 4 GiB); no vmlinux needed
      --guest-core FILE  Read an ELF core (QEMU dump-guest-memory, kdump vmcore)
      --qmp SOCKET       Freeze the guest with QMP "stop" for the read, "cont" after
      --guest-system-map FILE, --guest-vmlinux FILE, --guest-btf FILE
                         Take symbols / vmlinux BTF from files instead of the
                         guest's kallsyms and BTF (optional; RAM alone suffices)
`;

/** A source option the command was given that does not fit. */
export class SourceUsageError extends Error {
  /** @param message what was wrong */
  constructor(message: string) {
    super(message);
    this.name = "SourceUsageError";
  }
}

/**
 * Opens the source the options name, runs `body` with it and closes it
 * again; a guest frozen through QMP is resumed even when `body` fails.
 */
export async function withSource<T>(
  values: Record<string, string | boolean | undefined>,
  body: (source: Source) => T | Promise<T>,
): Promise<T> {
  const mem = values["guest-mem"] as string | undefined;
  const core = values["guest-core"] as string | undefined;
  const qmpPath = values.qmp as string | undefined;
  if (mem !== undefined && core !== undefined) {
    throw new SourceUsageError(
      "give either --guest-mem or --guest-core, not both",
    );
  }
  const files = {
    ...(values["guest-system-map"] !== undefined
      ? { systemMap: values["guest-system-map"] as string }
      : {}),
    ...(values["guest-vmlinux"] !== undefined
      ? { vmlinux: values["guest-vmlinux"] as string }
      : {}),
    ...(values["guest-btf"] !== undefined
      ? { btf: values["guest-btf"] as string }
      : {}),
  };
  if (
    Object.keys(files).length > 0 && mem === undefined && core === undefined
  ) {
    throw new SourceUsageError(
      "--guest-system-map, --guest-vmlinux and --guest-btf describe a guest: give --guest-mem FILE or --guest-core FILE too",
    );
  }
  if (qmpPath !== undefined && mem === undefined && core === undefined) {
    throw new SourceUsageError(
      "--qmp freezes a guest: give --guest-mem FILE or --guest-core FILE too",
    );
  }
  if (mem === undefined && core === undefined) {
    return await body({
      accessor: new BpfSyscallAccessor(),
      cpus: possibleCpuCount(),
      description: "live kernel",
    });
  }
  const path = (mem ?? core)!;
  // The guest backend (src/guest, a dozen modules) is loaded only when a
  // guest is asked for, so live commands do not pay for it at start-up.
  const { GuestMemMapAccessor, loadGuestKernelFiles } = await import(
    "../accessor/guest.ts"
  );
  const { QmpClient } = await import("../guest/qmp.ts");
  const qmp = qmpPath === undefined
    ? null
    : await QmpClient.connect(qmpPath, { timeoutMs: 5000 });
  try {
    await qmp?.stop();
    const options = loadGuestKernelFiles(files);
    using accessor = mem !== undefined
      ? GuestMemMapAccessor.openRamFile(path, options)
      : GuestMemMapAccessor.openCore(path, options);
    return await body({
      accessor,
      cpus: accessor.cpuCount,
      description: `guest ${
        mem !== undefined ? "memory" : "core"
      } ${path} (kernel ${accessor.release})`,
    });
  } finally {
    if (qmp !== null) {
      try {
        await qmp.cont();
      } finally {
        qmp.close();
      }
    }
  }
}
