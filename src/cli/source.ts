/**
 * Where the CLI reads maps from: the live kernel, or a frozen guest's memory
 * (`--guest-mem FILE`, `--guest-core FILE`), optionally frozen for the read
 * through QMP (`--qmp SOCKET`).
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";
import { BpfSyscallAccessor } from "../accessor/syscall.ts";
import type { BpfMapAccessor } from "../accessor/types.ts";
import type { QmpClient } from "../guest/qmp.ts";
import type { Context } from "./context.ts";
import { signalExitStatus } from "./signals.ts";

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
  "guest-pid": { type: "string" },
  kcore: { type: "boolean" },
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
      --guest-pid PID    Read a running QEMU's guest RAM through /proc/PID/mem
                         (no RAM file; without --qmp the view may be torn)
      --kcore            Read this kernel's own maps through /proc/kcore
      --qmp SOCKET       Freeze the guest with QMP "stop" for the read, "cont" after
      --guest-system-map FILE, --guest-vmlinux FILE, --guest-btf FILE
                         Take symbols / vmlinux BTF from files instead of the
                         guest's kallsyms and BTF (optional; RAM alone suffices)
`;

/** A source option the command was given that does not fit. */
export class SourceUsageError extends BpfmapError {
  /** @param message what was wrong */
  constructor(message: string) {
    super(message);
  }
}

/**
 * Opens the source the options name (or takes `context.io.accessor`), runs
 * `body` with it and closes it again. A guest frozen through QMP is resumed
 * on every way out: success, error, and SIGINT/SIGTERM/SIGHUP (then the
 * process exits with 128 + the signal's number once `cont` is answered).
 */
export async function withSource<T>(
  context: Context,
  values: Record<string, string | boolean | undefined>,
  body: (source: Source) => T | Promise<T>,
  access: { writable?: boolean } = {},
): Promise<T> {
  const mem = values["guest-mem"] as string | undefined;
  const core = values["guest-core"] as string | undefined;
  const pidText = values["guest-pid"] as string | undefined;
  const kcore = values.kcore === true;
  const qmpPath = values.qmp as string | undefined;
  const sources = [
    mem !== undefined ? "--guest-mem" : null,
    core !== undefined ? "--guest-core" : null,
    pidText !== undefined ? "--guest-pid" : null,
    kcore ? "--kcore" : null,
  ].filter((g) => g !== null);
  if (sources.length > 1) {
    throw new SourceUsageError(
      `give one source, not ${sources.join(" and ")}`,
    );
  }
  if (pidText !== undefined || kcore) {
    return await withProcessSource(context, pidText, qmpPath, body);
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
  const given = context.io.accessor;
  if (given !== undefined) {
    return await body({
      accessor: given,
      cpus: given.possibleCpus,
      description: "the accessor given to the CLI",
    });
  }
  if (mem === undefined && core === undefined) {
    const accessor = new BpfSyscallAccessor();
    return await body({
      accessor,
      cpus: accessor.possibleCpus,
      description: "live kernel",
    });
  }
  const path = (mem ?? core)!;
  await using _frozen = qmpPath === undefined
    ? undefined
    : await FrozenGuest.freeze(qmpPath);
  // The guest backend (src/guest, a dozen modules) is loaded only when a
  // guest is asked for, so live commands do not pay for it at start-up.
  const { GuestMemMapAccessor, loadGuestKernelFiles } = await import(
    "../accessor/guest.ts"
  );
  const options = {
    ...loadGuestKernelFiles(files),
    // only `write` opens the guest's RAM read-write
    ...(access.writable ? { writable: true } : {}),
  };
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
}

/** Signals that must not leave a guest paused. */
const RESUME_ON: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * A guest paused through QMP for the length of a read. Owns the QMP
 * connection; disposing resumes the guest (`cont`) and closes it. A signal
 * during the read resumes the guest, then exits.
 */
class FrozenGuest implements AsyncDisposable {
  readonly #qmp: QmpClient;
  /** The last command sent; the next waits for it (one reader on the socket). */
  #inFlight: Promise<unknown> = Promise.resolve();
  #resumed: Promise<void> | undefined;
  readonly #listeners: { signal: Deno.Signal; listener: () => void }[] = [];

  private constructor(qmp: QmpClient) {
    this.#qmp = qmp;
  }

  /** Connects to `path` and pauses the guest. */
  static async freeze(path: string): Promise<FrozenGuest> {
    const { QmpClient } = await import("../guest/qmp.ts");
    const qmp = await QmpClient.connect(path, { timeoutMs: 5000 });
    const frozen = new FrozenGuest(qmp);
    // Listen before "stop" is sent: from then on the guest may be paused.
    for (const signal of RESUME_ON) {
      const listener = (): void => {
        frozen.#resume().catch(() => {}).finally(() =>
          Deno.exit(signalExitStatus(signal))
        );
      };
      Deno.addSignalListener(signal, listener);
      frozen.#listeners.push({ signal, listener });
    }
    try {
      await (frozen.#inFlight = qmp.stop());
    } catch (error) {
      await frozen[Symbol.asyncDispose]();
      throw error;
    }
    return frozen;
  }

  #resume(): Promise<void> {
    return this.#resumed ??= (async () => {
      try {
        // A reply still owed (to "stop") must be read first.
        await this.#inFlight.catch(() => {});
        await this.#qmp.cont();
      } finally {
        this.#qmp.close();
      }
    })();
  }

  /** Runs `query` on the connection while the guest is paused. */
  async ask<T>(query: (qmp: QmpClient) => Promise<T>): Promise<T> {
    await this.#inFlight.catch(() => {});
    const answer = query(this.#qmp);
    this.#inFlight = answer;
    return await answer;
  }

  /** Resumes the guest and closes the connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#resume();
    } finally {
      for (const { signal, listener } of this.#listeners) {
        Deno.removeSignalListener(signal, listener);
      }
    }
  }
}

/**
 * `--guest-pid PID` (a running QEMU, frozen through `--qmp` when given) or
 * `--kcore` (this kernel, always live).
 */
async function withProcessSource<T>(
  context: Context,
  pidText: string | undefined,
  qmpPath: string | undefined,
  body: (source: Source) => T | Promise<T>,
): Promise<T> {
  if (pidText === undefined && qmpPath !== undefined) {
    throw new SourceUsageError(
      "--qmp freezes a guest: --kcore reads this machine, which cannot be frozen",
    );
  }
  const pid = pidText === undefined ? 0 : Number(pidText);
  if (pidText !== undefined && !(/^\d+$/.test(pidText) && pid > 0)) {
    throw new SourceUsageError(
      `--guest-pid wants the numeric PID of a qemu-system-* process, not "${pidText}"`,
    );
  }
  if (context.io.accessor !== undefined) {
    const accessor = context.io.accessor;
    return await body({
      accessor,
      cpus: accessor.possibleCpus,
      description: "the accessor given to the CLI",
    });
  }
  await using frozen = qmpPath === undefined
    ? undefined
    : await FrozenGuest.freeze(qmpPath);
  const { GuestMemMapAccessor } = await import("../accessor/guest.ts");
  const { qemuRamLayout } = await import("../guest/qemu_process.ts");
  using accessor = pidText === undefined
    ? GuestMemMapAccessor.openKcore()
    : GuestMemMapAccessor.openQemuProcess(pid, {
      frozen: frozen !== undefined,
      ...(frozen ? { ram: await frozen.ask(qemuRamLayout) } : {}),
    });
  for (const note of accessor.notes) context.note(note);
  return await body({
    accessor,
    cpus: accessor.cpuCount,
    description: pidText === undefined
      ? `kcore /proc/kcore (kernel ${accessor.release})`
      : `guest process ${pid} (kernel ${accessor.release})`,
  });
}
