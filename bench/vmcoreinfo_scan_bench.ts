/**
 * How long finding VMCOREINFO takes, and how much memory it costs, on a
 * 16 GiB guest RAM image: `deno task bench-guest-scan`.
 *
 * 1. Builds a sparse 16 GiB RAM file in /dev/shm laid out as QEMU lays out
 *    a 16 GiB x86-64 guest (3 GiB at GPA 0, 13 GiB at 4 GiB), with data
 *    where a booted guest has touched memory (128 MiB from 16 MiB: kernel
 *    image and early allocations; 64 MiB at the top; 256 scattered pages;
 *    the rest holes, as tmpfs keeps pages the guest never touched), and a
 *    VMCOREINFO page plus its ELF-note copy where the 6.1 test guest has
 *    them (about 20 MiB into RAM, the far end for a top-down scan; see
 *    `--real`). Times `openRamFile` in a fresh child process, with its peak
 *    RSS (VmHWM) and how much the scan added to it.
 * 2. The same image with no VMCOREINFO at all: the worst case, a full read.
 * 3. With `--real` (root, after `sh tools/vm/setup.sh`): boots the 6.1 and
 *    6.12 test guests (1 GiB, and 6.12 with 4 GiB) and times the scan on
 *    their real RAM files, printing where VMCOREINFO was found.
 *
 * @module
 */
// deno-lint-ignore-file no-console

import process from "node:process";
import { openRamFile } from "../src/guest/source.ts";

const GIB = 1 << 30;
const SIZE = 16 * GIB;
/** Where the 6.1 test guest keeps vmcoreinfo_data: about 20 MiB into RAM. */
const VMCOREINFO_AT = 20 << 20;
const self = new URL(import.meta.url).pathname;

/** A VMCOREINFO as a 6.12 x86-64 cloud kernel writes it (keys and order from a real guest). */
const BLOB = [
  "OSRELEASE=6.12.117+deb13-cloud-amd64",
  "BUILD-ID=0c7d2f2f3a5e1b9d8a7c6b5a4f3e2d1c0b9a8f7e",
  "PAGESIZE=4096",
  "SYMBOL(init_uts_ns)=ffffffff8f61c4e0",
  "OFFSET(uts_namespace.name)=0",
  "SYMBOL(node_online_map)=ffffffff8f7d3d88",
  "SYMBOL(swapper_pg_dir)=ffffffff8fa22000",
  "SYMBOL(_stext)=ffffffff8de00000",
  "SYMBOL(kallsyms_names)=ffffffff8ef50ce8",
  "SYMBOL(kallsyms_num_syms)=ffffffff8ef50ce0",
  "SYMBOL(kallsyms_token_table)=ffffffff8f165720",
  "SYMBOL(kallsyms_token_index)=ffffffff8f165b20",
  "SYMBOL(kallsyms_offsets)=ffffffff8f165d20",
  "SYMBOL(kallsyms_relative_base)=ffffffff8f1ffc60",
  "NUMBER(phys_base)=478150656",
  "SYMBOL(init_top_pgt)=ffffffff8fa22000",
  "NUMBER(pgtable_l5_enabled)=1",
  "KERNELOFFSET=ce00000",
  "",
].join("\n");

function status(): { hwmKiB: number; rssKiB: number } {
  const text = Deno.readTextFileSync("/proc/self/status");
  const field = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0);
  return { hwmKiB: field("VmHWM"), rssKiB: field("VmRSS") };
}

/** In the child: one scan, measured; prints a JSON line. */
function child(path: string): void {
  const before = status();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let found: string | null = null;
  let error: string | null = null;
  try {
    using source = openRamFile(path);
    found = source.vmcoreinfo?.split("\n")[0] ?? null;
  } catch (e) {
    error = (e as Error).message;
  }
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const after = status();
  console.log(JSON.stringify({
    ms,
    cpuMs: (used.user + used.system) / 1000,
    found,
    error,
    hwmMiB: after.hwmKiB / 1024,
    addedMiB: Math.max(0, after.hwmKiB - before.rssKiB) / 1024,
  }));
}

interface Run {
  ms: number;
  cpuMs: number;
  found: string | null;
  error: string | null;
  hwmMiB: number;
  addedMiB: number;
}

async function measure(path: string): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", self, "--child", path],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  return JSON.parse(text) as Run;
}

function show(label: string, run: Run): void {
  console.log(
    `  ${label.padEnd(44)} ${run.ms.toFixed(0).padStart(6)} ms (CPU ${
      run.cpuMs.toFixed(0)
    } ms)  peak RSS ${run.hwmMiB.toFixed(0)} MiB (scan added ${
      run.addedMiB.toFixed(1)
    } MiB)  ${
      run.found ??
        (run.error ? `error: ${run.error.slice(0, 60)}` : "none found")
    }`,
  );
}

function writeAt(file: Deno.FsFile, offset: number, bytes: Uint8Array): void {
  file.seekSync(offset, Deno.SeekMode.Start);
  file.writeSync(bytes);
}

/** The VMCOREINFO note as `update_vmcoreinfo_note` lays it out. */
function note(text: Uint8Array): Uint8Array {
  const out = new Uint8Array(24 + text.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 11, true);
  view.setUint32(4, text.length, true);
  out.set(new TextEncoder().encode("VMCOREINFO\0"), 12);
  out.set(text, 24);
  return out;
}

async function synthetic(): Promise<void> {
  const path = `/dev/shm/bpfmap-scan-bench-${Deno.pid}`;
  try {
    using file = Deno.openSync(path, {
      create: true,
      write: true,
      truncate: true,
    });
    file.truncateSync(SIZE);
    const fill = (offset: number, bytes: number): void => {
      const chunk = new Uint8Array(4 << 20).fill(0x5a);
      for (let done = 0; done < bytes; done += chunk.length) {
        writeAt(file, offset + done, chunk.subarray(0, bytes - done));
      }
    };
    fill(16 << 20, 128 << 20);
    fill(SIZE - (64 << 20), 64 << 20);
    const page = new Uint8Array(4096).fill(0x5a);
    for (let i = 0; i < 256; i++) {
      writeAt(file, Math.floor((i / 256) * (SIZE / 4096 - 1)) * 4096, page);
    }
    const text = new TextEncoder().encode(BLOB);
    writeAt(file, VMCOREINFO_AT, text);
    writeAt(file, VMCOREINFO_AT + 0x2000, note(text));
    file.syncSync();
  } catch (error) {
    Deno.removeSync(path);
    throw error;
  }
  try {
    console.log(
      `VMCOREINFO scan, 16 GiB sparse RAM file in /dev/shm (QEMU x86-64 layout)`,
    );
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await measure(path));
    runs.sort((a, b) => a.ms - b.ms);
    show("found 20 MiB into RAM (median of 3)", runs[1]!);
    // nothing to find: every run with data read once
    using file = Deno.openSync(path, { write: true });
    writeAt(file, VMCOREINFO_AT, new Uint8Array(4096));
    writeAt(file, VMCOREINFO_AT + 0x2000, new Uint8Array(4096));
    show("absent: every data run read", await measure(path));
  } finally {
    Deno.removeSync(path);
  }
}

async function real(): Promise<void> {
  const { bootUntil, ROOT } = await import("../tests/vm/harness.ts");
  console.log(
    "VMCOREINFO scan on real guest RAM files (frozen), 1 and 4 GiB guests",
  );
  for (
    const [kernel, memoryMiB] of [["k61", 1024], ["k612", 1024], [
      "k612",
      4096,
    ]] as const
  ) {
    await using guest = await bootUntil(
      { kernel, agent: `${ROOT}/tests/vm/guest_agent.ts`, memoryMiB },
      /BPFMAP-AGENT-(READY|ERROR)/,
      180_000,
    );
    await guest.qmp.stop();
    const run = await measure(guest.ramPath);
    const size = Deno.statSync(guest.ramPath).size;
    using source = openRamFile(guest.ramPath);
    const foundLine = source.vmcoreinfo ?? "";
    const offset = await findOffset(guest.ramPath, foundLine);
    show(
      `${kernel}, ${memoryMiB} MiB (found at file offset ${
        (offset / (1 << 20)).toFixed(1)
      } MiB of ${(size / (1 << 20)).toFixed(0)})`,
      run,
    );
  }
}

/** File offset of the first page starting with the found text's first line (for the report). */
async function findOffset(path: string, text: string): Promise<number> {
  const first = new TextEncoder().encode(text.split("\n")[0]!);
  using file = await Deno.open(path);
  const size = (await file.stat()).size;
  const chunk = new Uint8Array(4 << 20);
  for (let top = size; top > 0; top -= chunk.length) {
    const bottom = Math.max(0, top - chunk.length);
    await file.seek(bottom, Deno.SeekMode.Start);
    let got = 0;
    while (got < top - bottom) {
      const n = await file.read(chunk.subarray(got, top - bottom));
      if (n === null) break;
      got += n;
    }
    for (let p = (top - bottom - 4096) & ~4095; p >= 0; p -= 4096) {
      for (const at of [p, p + 24]) {
        if (first.every((b, i) => chunk[at + i] === b)) return bottom + at;
      }
    }
  }
  return -1;
}

if (import.meta.main) {
  const childAt = Deno.args.indexOf("--child");
  if (childAt >= 0) child(Deno.args[childAt + 1]!);
  else {
    await synthetic();
    if (Deno.args.includes("--real")) await real();
  }
}
