/**
 * Boots a Debian cloud kernel under QEMU (TCG) with guest RAM in a host file
 * and a bpfmap guest agent in the initramfs. Used by the VM tests and the
 * guest benchmark. Run `sh tools/vm/setup.sh` first.
 *
 * @module
 */

import { QmpClient } from "../../src/guest/qmp.ts";

/** Repository root. */
export const ROOT: string = new URL("../../", import.meta.url).pathname.replace(
  /\/$/,
  "",
);
/** Where setup.sh unpacks kernels. */
export const CACHE: string = `${ROOT}/.vm-cache`;

/** The kernels setup.sh provides, by directory name. */
export const KERNELS = ["k61", "k612", "k73"] as const;

/** Options for {@linkcode bootGuest}. */
export interface BootOptions {
  /** `.vm-cache/<kernel>` directory name. */
  kernel: string;
  /** The guest agent script (copied to /agent/agent.ts). */
  agent: string;
  /** Arguments for the agent (no spaces or commas inside one). */
  agentArgs?: string[];
  /** Guest RAM in MiB; default 1024. */
  memoryMiB?: number;
  /** vCPUs; default 2. */
  cpus?: number;
  /** Echo the console to stderr as it arrives. */
  echo?: boolean;
  /** Programs to put in the guest's `/scx/` with their shared libraries. */
  binaries?: string[];
  /**
   * Run all vCPUs in one host thread (`-accel tcg,thread=single`). Needed
   * where the guest patches its own kernel text while other vCPUs run it
   * (static keys flip when sched_ext enables or disables): with one thread
   * per vCPU a stale translation of a patched instruction once hit an int3
   * in `__schedule` (1 of 5 qmap runs).
   */
  singleThreadTcg?: boolean;
  /**
   * The guest's architecture; default x86_64. `aarch64` boots
   * `qemu-system-aarch64 -machine virt` with the arm64 Deno, busybox and
   * glibc that `tools/vm/setup_arm64.sh` put in `.vm-cache/arm64/root`;
   * `kernel` then names a directory of `.vm-cache/arm64/`.
   */
  arch?: "x86_64" | "aarch64";
  /** Back guest RAM with a `/dev/shm` file (default); false: QEMU's anonymous memory, no file. */
  ramFile?: boolean;
  /** x86-64 machine type; default QEMU's `pc` (i440fx). */
  machine?: "pc" | "q35";
  /** More kernel command-line words (no spaces inside one). */
  kernelArgs?: string[];
}

/** The arm64 userland `tools/vm/setup_arm64.sh` unpacks for aarch64 guests. */
export const ARM64_ROOT: string = `${CACHE}/arm64/root`;

/** Where `tools/vm/setup_arm64.sh` unpacks arm64 kernels (apart, so nothing boots them as x86). */
export const ARM64_CACHE: string = `${CACHE}/arm64`;

/** What differs between the architectures' QEMU command lines. */
function machineArgs(options: BootOptions, ramFile: boolean): {
  qemu: string;
  args: string[];
  console: string;
  kernel: string;
} {
  if (options.arch === "aarch64") {
    return {
      qemu: "qemu-system-aarch64",
      kernel: `${ARM64_CACHE}/${options.kernel}/vmlinuz`,
      // pauth-impdef: QEMU's own PAC hash; the architected QARMA is far slower under TCG
      args: [
        "-machine",
        ramFile ? "virt,memory-backend=mem" : "virt",
        "-cpu",
        "max,pauth-impdef=on",
      ],
      console: "ttyAMA0",
    };
  }
  return {
    qemu: "qemu-system-x86_64",
    kernel: `${CACHE}/${options.kernel}/vmlinuz`,
    args: [
      "-cpu",
      "max",
      ...(ramFile || options.machine
        ? [
          "-machine",
          [
            ...(options.machine ? [options.machine] : []),
            ...(ramFile ? ["memory-backend=mem"] : []),
          ].join(","),
        ]
        : []),
    ],
    console: "ttyS0",
  };
}

/** A running guest. Dispose to quit QEMU and remove its files. */
export interface Guest extends AsyncDisposable {
  /** Host file backing guest RAM ("" when booted with `ramFile: false`). */
  ramPath: string;
  /** The QEMU process. */
  pid: number;
  /** QMP session. */
  qmp: QmpClient;
  /** A second, unconnected QMP socket, for a CLI run with `--qmp`. */
  spareQmpPath: string;
  /** Console text so far. */
  console(): string;
  /** Waits until the console contains `marker` (or QEMU exits / time runs out). */
  waitFor(marker: string | RegExp, timeoutMs: number): Promise<string>;
  /** Milliseconds from spawn until now. */
  elapsedMs(): number;
}

/** Whether setup.sh has run (every kernel in KERNELS unpacked). */
export function kernelsReady(): boolean {
  return KERNELS.every((k) => {
    try {
      return Deno.statSync(`${CACHE}/${k}/vmlinuz`).isFile;
    } catch {
      return false;
    }
  });
}

/** Where setup.sh builds the 7.3 kernel's tools/sched_ext loaders. */
export const SCX_BIN: string = `${CACHE}/scx73/build/bin`;

/** Whether the 7.3 kernel and these sched_ext loaders (`scx_<name>`) are built. */
export function schedulersReady(names: readonly string[]): boolean {
  try {
    return Deno.statSync(`${CACHE}/k73/vmlinuz`).isFile &&
      names.every((n) => Deno.statSync(`${SCX_BIN}/scx_${n}`).isFile);
  } catch {
    return false;
  }
}

let unique = 0;
const VM_LOCK = "/tmp/bpfmap-vm.lock";

/**
 * Builds the initramfs and boots one kernel with `-accel tcg -cpu max`, RAM
 * in `/dev/shm/<name>` (`share=on`), serial console piped, QMP on a socket.
 *
 * @example
 * ```ts ignore
 * await using guest = await bootGuest({ kernel: "k612", agent: "tests/vm/guest_agent.ts" });
 * await guest.waitFor("BPFMAP-AGENT-READY", 60_000);
 * await guest.qmp.stop();
 * ```
 */
export async function bootGuest(options: BootOptions): Promise<Guest> {
  // One guest at a time on this machine: two TCG guests on 2 cores (as
  // `deno test --parallel` ran them) slowed a boot to 128 s and starved a
  // third QEMU past its QMP timeout. The lock lives until the guest is disposed.
  const slot = await Deno.open(VM_LOCK, { create: true, write: true });
  await slot.lock(true);
  try {
    return await startGuest(options, slot);
  } catch (error) {
    slot.close();
    throw error;
  }
}

async function startGuest(
  options: BootOptions,
  slot: Deno.FsFile,
): Promise<Guest> {
  const name = `bpfmap-${options.kernel}-${Deno.pid}-${unique++}`;
  const dir = await Deno.makeTempDir({ prefix: "bpfmap-vm-" });
  const initrd = `${dir}/initrd.cpio`;
  const ramPath = options.ramFile === false ? "" : `/dev/shm/${name}`;
  const qmpPath = `${dir}/qmp.sock`;
  const spareQmpPath = `${dir}/qmp-spare.sock`;
  const build = await new Deno.Command("sh", {
    args: [`${ROOT}/tools/vm/build_initramfs.sh`, initrd, options.agent],
    env: {
      BPFMAP_GUEST_BINARIES: (options.binaries ?? []).join(" "),
      BPFMAP_GUEST_SYSROOT: options.arch === "aarch64" ? ARM64_ROOT : "",
    },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!build.success) throw new Error("build_initramfs.sh failed");
  const memory = options.memoryMiB ?? 1024;
  const machine = machineArgs(options, ramPath !== "");
  const args = [
    "-accel",
    options.singleThreadTcg ? "tcg,thread=single" : "tcg",
    ...machine.args,
    "-smp",
    String(options.cpus ?? 2),
    "-m",
    `${memory}M`,
    ...(ramPath === "" ? [] : [
      "-object",
      `memory-backend-file,id=mem,size=${memory}M,mem-path=${ramPath},share=on`,
    ]),
    "-kernel",
    machine.kernel,
    "-initrd",
    initrd,
    "-append",
    [
      `console=${machine.console} panic=-1 quiet cryptomgr.notests`,
      ...(options.kernelArgs ?? []),
      `bpfmap.args=${(options.agentArgs ?? []).join(",")}`,
    ].join(" "),
    "-nographic",
    "-no-reboot",
    "-nodefaults",
    "-serial",
    "stdio",
    "-qmp",
    `unix:${qmpPath},server,nowait`,
    "-qmp",
    `unix:${spareQmpPath},server,nowait`,
  ];
  const started = performance.now();
  const child = new Deno.Command(machine.qemu, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let exited = false;
  const decoder = new TextDecoder();
  const pump = (async () => {
    for await (const chunk of child.stdout) {
      const piece = decoder.decode(chunk, { stream: true });
      text += piece;
      if (options.echo) Deno.stderr.writeSync(chunk);
    }
  })();
  const errors = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk);
  })();
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(qmpPath, { timeoutMs: 60_000 });
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await status;
    throw new Error(`QEMU did not come up: ${String(error)}\n${text}`);
  }
  return {
    ramPath,
    pid: child.pid,
    qmp,
    spareQmpPath,
    console: () => text,
    elapsedMs: () => performance.now() - started,
    async waitFor(marker: string | RegExp, timeoutMs: number): Promise<string> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const hit = typeof marker === "string"
          ? text.includes(marker)
          : marker.test(text);
        if (hit) return text;
        if (exited) {
          throw new Error(`QEMU exited before "${String(marker)}":\n${text}`);
        }
        if (performance.now() > deadline) {
          throw new Error(
            `Timed out after ${timeoutMs} ms waiting for "${
              String(marker)
            }":\n${text.slice(-4000)}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await qmp.quit();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await status;
      clearTimeout(timer);
      await Promise.allSettled([pump, errors]);
      if (ramPath !== "") await Deno.remove(ramPath).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      slot.close();
    },
  };
}

/**
 * Boots like {@linkcode bootGuest} and waits for `marker`; when the guest
 * dies first (a TCG hiccup during boot), boots once more.
 */
export async function bootUntil(
  options: BootOptions,
  marker: string | RegExp,
  timeoutMs: number,
  attempts = 2,
): Promise<Guest> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const guest = await bootGuest(options);
    try {
      await guest.waitFor(marker, timeoutMs);
      return guest;
    } catch (error) {
      lastError = error;
      await guest[Symbol.asyncDispose]();
    }
  }
  throw lastError;
}

/** Lines between `BEGIN tag` and `END tag` markers printed by the agent, parsed as JSON. */
export function agentJson(consoleText: string, tag: string): unknown {
  const begin = `BPFMAP-JSON-BEGIN ${tag}`;
  const end = `BPFMAP-JSON-END ${tag}`;
  const start = consoleText.indexOf(begin);
  const stop = consoleText.indexOf(end, start);
  if (start < 0 || stop < 0) {
    throw new Error(`No ${tag} block in the guest console`);
  }
  const body = consoleText.slice(start + begin.length, stop).replace(/\r/g, "")
    .split("\n").join("");
  return JSON.parse(body);
}
