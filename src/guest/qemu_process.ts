/**
 * Guest memory of a running QEMU process, with no RAM file: the guest's RAM
 * block is found among the process's mappings (`/proc/PID/maps`) and read
 * through `/proc/PID/mem` with pread, like any other file.
 *
 * Which mapping is guest RAM: QEMU allocates each RAM block with one mmap of
 * the block's size followed by a one-page `PROT_NONE` guard (`---p`), so the
 * main RAM is the readable, writable, non-executable mapping of exactly the
 * machine's RAM size with a guard right after it. TCG's code buffers are
 * `rwx` and thread stacks / heaps are never the RAM size, so they do not
 * match. The RAM size comes from QMP (`query-memory-size-summary`) when a
 * socket is given, else from QEMU's own command line (`-m`). QMP also gives
 * the exact guest-physical placement (`info mtree -f`); without it the
 * machine's rules place RAM (below 4 GiB up to a limit, the rest at 4 GiB).
 *
 * @module
 */

import { openReadOnly, preadFd } from "../sys/bpf.ts";
import type { OwnedFd } from "../sys/fd.ts";
import { type DataRun, dataRuns } from "../sys/holes.ts";
import { GuestSourceError } from "./errors.ts";
import { FileMemory, type PhysRegion, qemuX86Layout } from "./phys.ts";
import type { QmpClient } from "./qmp.ts";
import type { GuestMemorySource } from "./source.ts";

/** One line of `/proc/PID/maps`. */
export interface ProcMapping {
  /** First address. */
  start: number;
  /** One past the last address. */
  end: number;
  /** `rw-p` and the like. */
  perms: string;
  /** Offset in the backing file of `start`. */
  offset: number;
  /** The backing file, `[heap]`, or "" for anonymous memory. */
  path: string;
}

const MAX_MAPS_BYTES = 16 << 20;
const MAX_CMDLINE_BYTES = 1 << 20;

/** Parses `/proc/PID/maps` text (lines that do not parse are skipped). */
export function parseProcMaps(text: string): ProcMapping[] {
  const out: ProcMapping[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \S+\s*(.*)$/
      .exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1]!, 16),
      end: parseInt(m[2]!, 16),
      perms: m[3]!,
      offset: parseInt(m[4]!, 16),
      path: m[5]!.trim(),
    });
  }
  return out;
}

const UNITS: Record<string, bigint> = {
  "": 1n << 20n, // QEMU reads a bare -m number as MiB
  B: 1n,
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
};

/** A QEMU size (`1024`, `1G`, `512M`) in bytes, or null. */
function parseSize(text: string, bareUnit = ""): bigint | null {
  const m = /^(\d+)([BKMGT]?)$/i.exec(text.trim());
  if (!m) return null;
  const unit = UNITS[(m[2] || bareUnit).toUpperCase()];
  return unit === undefined ? null : BigInt(m[1]!) * unit;
}

/** What QEMU's command line says about the machine. */
export interface QemuCommandLine {
  /** Guest RAM in bytes (`-m`; QEMU's default 128 MiB when absent). */
  ramSize: bigint;
  /** `-machine`/`-M` type, e.g. `q35` ("" for the default `pc`). */
  machine: string;
}

/** Reads `-m` and `-machine` from QEMU's argv. */
export function parseQemuCommandLine(argv: readonly string[]): QemuCommandLine {
  let ramSize = 128n << 20n;
  let machine = "";
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!.replace(/^--/, "-");
    const next = argv[i + 1] ?? "";
    if (arg === "-m") {
      // `-m 1G` or `-m size=1G,slots=2,maxmem=4G`
      const size = next.split(",").map((p) => p.replace(/^size=/, ""))[0]!;
      ramSize = parseSize(size) ?? ramSize;
      i++;
    } else if (arg === "-machine" || arg === "-M") {
      const type = next.split(",").find((p) =>
        !p.includes("=") || p.startsWith("type=")
      );
      machine = (type ?? "").replace(/^type=/, "");
      i++;
    }
  }
  return { ramSize, machine };
}

/**
 * The guest-physical ranges of RAM block `block` in `info mtree -f` output
 * (the flat view of address space "memory"), offsets into the block.
 */
export function parseMtreeRam(text: string, block: string): PhysRegion[] {
  const regions: PhysRegion[] = [];
  let inMemory = false;
  for (const line of text.split("\n")) {
    if (/^FlatView/.test(line)) inMemory = false;
    if (/^\s*AS "memory"/.test(line)) inMemory = true;
    if (!inMemory) continue;
    const m =
      /^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ram\): (\S+)(?: @([0-9a-f]+))?/
        .exec(line);
    if (!m || m[3] !== block) continue;
    const start = BigInt(`0x${m[1]}`);
    regions.push({
      gpa: start,
      size: BigInt(`0x${m[2]}`) - start + 1n,
      fileOffset: m[4] === undefined ? 0 : Number(BigInt(`0x${m[4]}`)),
    });
  }
  return regions;
}

/** What QMP says about guest RAM (see {@linkcode openQemuProcess}). */
export interface QemuRamLayout {
  /** Size of the main RAM block in bytes. */
  ramSize: bigint;
  /** Its guest-physical ranges, `fileOffset` relative to the block start. */
  regions: PhysRegion[];
}

/**
 * The RAM layout from a monitor: `info ramblock` names the block of
 * `ramSize` bytes, `info mtree -f` says where its pieces sit.
 *
 * @param ramSize `base-memory` of `query-memory-size-summary`
 * @param ramblocks `info ramblock` text
 * @param mtree `info mtree -f` text
 */
export function qemuRamLayoutFromMonitor(
  ramSize: bigint,
  ramblocks: string,
  mtree: string,
): QemuRamLayout | null {
  for (const line of ramblocks.split("\n")) {
    const m = /^\s*(\S+)\s+\d+ \w+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x[0-9a-f]+/i
      .exec(line);
    if (!m || BigInt(`0x${m[2]}`) !== ramSize) continue;
    const regions = parseMtreeRam(mtree, m[1]!);
    if (regions.length > 0) return { ramSize, regions };
  }
  return null;
}

/**
 * Asks QEMU over QMP how big guest RAM is and where it sits, which beats
 * guessing from the command line (a `-machine` default, a memory backend's
 * size, a machine type's low-memory limit).
 *
 * @example
 * ```ts ignore
 * await using qmp = await QmpClient.connect("/tmp/guest.qmp");
 * const layout = await qemuRamLayout(qmp);
 * ```
 */
export async function qemuRamLayout(qmp: QmpClient): Promise<QemuRamLayout> {
  const summary = await qmp.execute("query-memory-size-summary") as {
    "base-memory"?: number;
  };
  const base = summary?.["base-memory"];
  if (typeof base !== "number" || !Number.isSafeInteger(base) || base <= 0) {
    throw new GuestSourceError(
      qmp.path,
      `query-memory-size-summary gave no base-memory (${
        JSON.stringify(summary).slice(0, 80)
      })`,
    );
  }
  const hmp = async (command: string): Promise<string> =>
    String(
      await qmp.execute("human-monitor-command", {
        "command-line": command,
      }),
    );
  const layout = qemuRamLayoutFromMonitor(
    BigInt(base),
    await hmp("info ramblock"),
    await hmp("info mtree -f"),
  );
  if (layout === null) {
    throw new GuestSourceError(
      qmp.path,
      `names no RAM block of ${base} bytes in "info ramblock" placed by "info mtree -f"`,
      { hint: "read a RAM file (--guest-mem) instead" },
    );
  }
  return layout;
}

/** Options for {@linkcode openQemuProcess}. */
export interface QemuProcessOptions {
  /** RAM size and placement, from QMP; default: QEMU's command line and the machine's rules. */
  ram?: QemuRamLayout;
  /** The caller stopped the guest (QMP `stop`) for the read; else a note says the view may be torn. */
  frozen?: boolean;
  /** Page-cache bytes (see {@linkcode FileMemory}). */
  cacheBytes?: number;
}

const NEEDED =
  "--guest-pid needs the PID of a running qemu-system-* process (root, or ptrace access to it)";

function readProcText(path: string, pid: number, limit: number): string {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new GuestSourceError(`PID ${pid}`, "is not a running process", {
        cause: error,
        hint: NEEDED,
      });
    }
    throw new GuestSourceError(
      `PID ${pid}`,
      `cannot be inspected (${path}: ${
        (error as Error).message.split("\n")[0]
      })`,
      { cause: error, hint: NEEDED },
    );
  }
  if (bytes.byteLength > limit) {
    throw new GuestSourceError(
      `PID ${pid}`,
      `has ${path} larger than ${limit} bytes`,
      { hint: NEEDED },
    );
  }
  return new TextDecoder().decode(bytes);
}

/** The QEMU process's mapping of the main RAM block (see the module doc). */
export function findRamMapping(
  pid: number,
  mappings: readonly ProcMapping[],
  ramSize: bigint,
): ProcMapping {
  const candidates = mappings.filter((m, i) => {
    const guard = mappings[i + 1];
    return BigInt(m.end - m.start) === ramSize &&
      m.perms.startsWith("rw") && m.perms[2] !== "x" &&
      guard !== undefined && guard.start === m.end &&
      guard.perms.startsWith("---");
  });
  if (candidates.length === 1) return candidates[0]!;
  const sized = mappings.filter((m) => BigInt(m.end - m.start) === ramSize)
    .length;
  const mib = ramSize >> 20n;
  if (candidates.length === 0) {
    throw new GuestSourceError(
      `PID ${pid}`,
      `has no guest RAM mapping: none of its ${mappings.length} mappings is a rw- region of ${mib} MiB followed by QEMU's guard page (${sized} of that size)`,
      {
        hint:
          "give --qmp SOCKET so QEMU reports its RAM size, or read a RAM file (--guest-mem)",
      },
    );
  }
  throw new GuestSourceError(
    `PID ${pid}`,
    `has ${candidates.length} mappings that could be its ${mib} MiB of guest RAM (at ${
      candidates.map((c) => "0x" + c.start.toString(16)).join(", ")
    })`,
    { hint: "read a RAM file (--guest-mem) instead" },
  );
}

const PM_PRESENT = 1n << 63n;
const PM_SWAPPED = 1n << 62n;
const PAGEMAP_CHUNK = 1 << 16; // entries per pread: 512 KiB

/**
 * Runs of `[start, end)` (process addresses) holding pages, from
 * `/proc/PID/pagemap`: an anonymous page that was never touched reads as
 * zeros, so scans can skip it as they skip a sparse file's holes.
 */
function pagemapRuns(fd: number, start: number, end: number): DataRun[] {
  const runs: DataRun[] = [];
  const buffer = new Uint8Array(PAGEMAP_CHUNK * 8);
  const view = new DataView(buffer.buffer);
  let runStart = -1;
  for (let page = start / 4096; page < end / 4096; page += PAGEMAP_CHUNK) {
    const count = Math.min(PAGEMAP_CHUNK, end / 4096 - page);
    const n = preadFd(fd, buffer.subarray(0, count * 8), BigInt(page * 8));
    // an unreadable page map: everything may hold data
    if (n !== count * 8) return [{ start, end }];
    for (let i = 0; i < count; i++) {
      const entry = view.getBigUint64(i * 8, true);
      const at = (page + i) * 4096;
      if ((entry & (PM_PRESENT | PM_SWAPPED)) !== 0n) {
        if (runStart < 0) runStart = at;
      } else if (runStart >= 0) {
        runs.push({ start: runStart, end: at });
        runStart = -1;
      }
    }
  }
  if (runStart >= 0) runs.push({ start: runStart, end });
  return runs;
}

class ProcessSource implements GuestMemorySource {
  readonly path: string;
  readonly memory: FileMemory;
  readonly vmcoreinfo = null;
  readonly notes: readonly string[];
  readonly #runs: OwnedFd | null;

  constructor(
    path: string,
    memory: FileMemory,
    runs: OwnedFd | null,
    notes: string[],
  ) {
    this.path = path;
    this.memory = memory;
    this.#runs = runs;
    this.notes = notes;
  }

  close(): void {
    this.memory.close();
    this.#runs?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens the guest RAM of QEMU process `pid` for reading through
 * `/proc/PID/mem`. The guest keeps running unless the caller stops it (QMP
 * `stop`): reads of a running guest may be torn.
 *
 * @example
 * ```ts ignore
 * using source = openQemuProcess(12345);
 * console.log(source.memory.regions);
 * ```
 */
export function openQemuProcess(
  pid: number,
  options: QemuProcessOptions = {},
): GuestMemorySource & { notes: readonly string[] } {
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new GuestSourceError(`PID ${pid}`, "is not a process id", {
      hint: NEEDED,
    });
  }
  const argv = readProcText(`/proc/${pid}/cmdline`, pid, MAX_CMDLINE_BYTES)
    .split("\0").filter((a) => a !== "");
  let exe = "";
  try {
    exe = Deno.readLinkSync(`/proc/${pid}/exe`);
  } catch { /* a kernel thread, or no ptrace access: argv[0] decides */ }
  const program = (exe || argv[0] || "").split("/").pop()!;
  if (!/^qemu-system-/.test(program)) {
    throw new GuestSourceError(
      `PID ${pid}`,
      `is ${program || "a kernel thread"}${
        exe ? ` (${exe})` : ""
      }, not a QEMU system emulator (qemu-system-*)`,
      { hint: NEEDED },
    );
  }
  const cmdline = parseQemuCommandLine(argv);
  const ramSize = options.ram?.ramSize ?? cmdline.ramSize;
  const mappings = parseProcMaps(
    readProcText(`/proc/${pid}/maps`, pid, MAX_MAPS_BYTES),
  );
  const ram = findRamMapping(pid, mappings, ramSize);
  const layout = options.ram?.regions ??
    qemuX86Layout(ramSize, cmdline.machine);
  const regions = layout.map((r) => ({
    gpa: r.gpa,
    size: r.size,
    fileOffset: ram.start + r.fileOffset,
  }));
  const memPath = `/proc/${pid}/mem`;
  // Where guest pages may hold data. Anonymous RAM: QEMU's page map (a page
  // never touched reads as zeros). RAM shared with a file: the file's holes
  // (they read as zeros through the mapping; its pages may be in the page
  // cache but not in QEMU's page tables, so the page map would miss them).
  // A private file mapping may hold written copies the file does not show:
  // all of it is read.
  const anonymous = ram.path === "";
  let runs: OwnedFd | null = null;
  if (anonymous) runs = openOrExplain(`/proc/${pid}/pagemap`, pid);
  else if (ram.perms[3] === "s" && ram.path.startsWith("/")) {
    try {
      runs = openReadOnly(
        `/proc/${pid}/map_files/${ram.start.toString(16)}-${
          ram.end.toString(16)
        }`,
      );
    } catch { /* no CAP_SYS_ADMIN: read it all */ }
  }
  const fileRuns = (s: number, e: number): DataRun[] => {
    const shift = ram.offset - ram.start;
    return dataRuns(runs!.fd, s + shift, e + shift).map((r) => ({
      start: r.start - shift,
      end: r.end - shift,
    }));
  };
  try {
    // the "file" is the whole address space: offsets are process addresses
    const memory = FileMemory.open(memPath, Number.MAX_SAFE_INTEGER, regions, {
      ...(options.cacheBytes === undefined
        ? {}
        : { cacheBytes: options.cacheBytes }),
      dataRuns: (s: number, e: number): DataRun[] =>
        runs === null
          ? [{ start: s, end: e }]
          : anonymous
          ? pagemapRuns(runs.fd, s, e)
          : fileRuns(s, e),
      shortRead: () =>
        `QEMU process ${pid} exited or unmapped its RAM at 0x${
          ram.start.toString(16)
        } while it was read`,
    });
    const notes = options.frozen ? [] : [
      `guest memory of QEMU process ${pid} was read while the guest ran (no --qmp to stop it): values may be torn`,
    ];
    return new ProcessSource(memPath, memory, runs, notes);
  } catch (error) {
    runs?.close();
    if (error instanceof GuestSourceError) throw error;
    throw new GuestSourceError(
      `PID ${pid}`,
      `cannot be read (${memPath}: ${(error as Error).message.split("\n")[0]})`,
      { cause: error, hint: NEEDED },
    );
  }
}

function openOrExplain(path: string, pid: number): OwnedFd {
  try {
    return openReadOnly(path);
  } catch (error) {
    throw new GuestSourceError(
      `PID ${pid}`,
      `cannot be read (${path}: ${(error as Error).message.split("\n")[0]})`,
      { cause: error, hint: NEEDED },
    );
  }
}
