/**
 * The running kernel's own memory through `/proc/kcore`, so the guest walkers
 * read this machine's maps with no bpf() at all.
 *
 * `/proc/kcore` is an ELF core of kernel virtual memory: each PT_LOAD has a
 * virtual address, and the kernel fills `p_paddr` for the direct map of RAM
 * (and the kernel image) only, `-1` for vmalloc and the rest. The direct-map
 * segments all share one `vaddr - paddr` (the direct-map base); taking those
 * and keying them by `p_paddr` gives physical memory the walkers already
 * know, and they translate kernel addresses through the page tables as for a
 * guest. VMCOREINFO is the core's note (4.19+), else the note whose physical
 * address and size `/sys/kernel/vmcoreinfo` gives.
 *
 * @module
 */

import { openReadOnly, preadFd } from "../sys/bpf.ts";
import { SyscallError } from "../sys/errors.ts";
import { GuestKernelError, GuestSourceError } from "./errors.ts";
import { FileMemory, type PhysRegion } from "./phys.ts";
import { findVmcoreinfoNote, type GuestMemorySource } from "./source.ts";

/** Default path. */
export const KCORE = "/proc/kcore";

const PT_LOAD = 1;
const PT_NOTE = 4;
const MAX_PHDRS = 1 << 14;
const MAX_NOTES = 1 << 20;
const NO_PADDR = 0xffffffffffffffffn;

/** What the program headers of a kcore describe. */
export interface KcoreLayout {
  /** Physical memory: the direct-map segments, by `p_paddr`. */
  regions: PhysRegion[];
  /** The direct-map base the segments agree on (`vaddr - paddr`). */
  directMapBase: bigint;
  /** The kcore file offset of a region's `fileOffset`. */
  fileOffsetOf: (offset: number) => bigint;
  /** VMCOREINFO from the core's note, or null. */
  vmcoreinfo: string | null;
}

/** Reads `len` bytes at `offset`, all or an error. */
type ReadAt = (offset: bigint, len: number) => Uint8Array;

/**
 * Parses the ELF header and program headers of a kcore. Hostile or foreign
 * bytes end in a one-line error, never a large allocation.
 */
export function parseKcore(read: ReadAt, name = KCORE): KcoreLayout {
  const header = read(0n, 64);
  const view = new DataView(header.buffer, header.byteOffset, 64);
  if (
    view.getUint32(0, false) !== 0x7f454c46 || header[4] !== 2 ||
    header[5] !== 1 || view.getUint16(16, true) !== 4
  ) {
    throw new GuestKernelError(
      `${name} is not a little-endian ELF64 core (ET_CORE)`,
    );
  }
  const phoff = view.getBigUint64(32, true);
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  if (phentsize < 56 || phentsize > 1024 || phnum === 0 || phnum > MAX_PHDRS) {
    throw new GuestKernelError(
      `${name}: ELF program headers (${phnum} x ${phentsize}) are implausible`,
    );
  }
  const table = read(phoff, phnum * phentsize);
  const ph = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const loads: {
    paddr: bigint;
    vaddr: bigint;
    offset: bigint;
    size: bigint;
  }[] = [];
  let vmcoreinfo: string | null = null;
  let loadCount = 0;
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    const type = ph.getUint32(at, true);
    const offset = ph.getBigUint64(at + 8, true);
    const vaddr = ph.getBigUint64(at + 16, true);
    const paddr = ph.getBigUint64(at + 24, true);
    const size = ph.getBigUint64(at + 32, true);
    if (type === PT_NOTE && vmcoreinfo === null && size <= BigInt(MAX_NOTES)) {
      vmcoreinfo = findVmcoreinfoNote(read(offset, Number(size)));
    }
    if (type === PT_LOAD) loadCount++;
    if (type === PT_LOAD && paddr !== NO_PADDR && size > 0n) {
      loads.push({ paddr, vaddr, offset, size });
    }
  }
  // the direct-map base is the offset most of the RAM segments share
  const votes = new Map<bigint, bigint>();
  for (const load of loads) {
    const base = BigInt.asUintN(64, load.vaddr - load.paddr);
    votes.set(base, (votes.get(base) ?? 0n) + load.size);
  }
  let directMapBase = -1n;
  let best = -1n;
  for (const [base, bytes] of votes) {
    if (bytes > best) [directMapBase, best] = [base, bytes];
  }
  if (directMapBase < 0n) {
    throw new GuestKernelError(
      `${name} has no RAM segments (none of its ${loadCount} PT_LOADs has a physical address): cannot read physical memory through it`,
    );
  }
  const ram = loads.filter((l) =>
    BigInt.asUintN(64, l.vaddr - l.paddr) === directMapBase
  );
  const pieces = ram.map((l) => ({
    gpa: l.paddr,
    size: l.size,
    offset: l.offset,
  }));
  pieces.sort((a, b) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
  // kcore offsets pass 2^53 under 5-level paging: regions count in a packed
  // numbering (piece after piece) that fileOffsetOf maps back
  const regions: PhysRegion[] = [];
  const packed: { from: number; to: number; offset: bigint }[] = [];
  let next = 0;
  for (const piece of pieces) {
    const size = Number(piece.size);
    if (!Number.isSafeInteger(next + size)) {
      throw new GuestKernelError(
        `${name}: RAM segments add up to more than bpfmap can address`,
      );
    }
    regions.push({ gpa: piece.gpa, size: piece.size, fileOffset: next });
    packed.push({ from: next, to: next + size, offset: piece.offset });
    next += size;
  }
  const fileOffsetOf = (at: number): bigint => {
    for (const p of packed) {
      if (at >= p.from && at < p.to) return p.offset + BigInt(at - p.from);
    }
    return BigInt(at); // not reached: reads stay inside regions
  };
  return { regions, directMapBase, fileOffsetOf, vmcoreinfo };
}

/**
 * The kernel's lockdown mode: securityfs says it where mounted; else the
 * boot command line, where it was set (the only way besides securityfs).
 */
function lockdownMode(): string | null {
  try {
    const text = Deno.readTextFileSync("/sys/kernel/security/lockdown");
    return /\[(\w+)\]/.exec(text)?.[1] ?? null;
  } catch {
    // securityfs not mounted (minimal systems, initramfs guests)
  }
  try {
    const cmdline = Deno.readTextFileSync("/proc/cmdline");
    return /(?:^|\s)lockdown=(\w+)/.exec(cmdline)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Why `/proc/kcore` could not be opened, as one line naming what is needed. */
function explainOpen(path: string, error: unknown): GuestSourceError {
  const code = error instanceof SyscallError ? error.code : "";
  if (code === "ENOENT") {
    return new GuestSourceError(
      path,
      "does not exist: this kernel was built without CONFIG_PROC_KCORE",
      {
        cause: error,
        hint:
          "read the maps live (no source option) or from outside the machine",
      },
    );
  }
  const lockdown = lockdownMode();
  if (code === "EPERM" && lockdown !== null && lockdown !== "none") {
    return new GuestSourceError(
      path,
      `is closed by kernel lockdown (lockdown=${lockdown})`,
      {
        cause: error,
        hint:
          "kcore needs a kernel booted without lockdown=confidentiality; read the maps live instead",
      },
    );
  }
  return new GuestSourceError(
    path,
    `cannot be opened (${code || (error as Error).message.split("\n")[0]})`,
    { cause: error, hint: "reading kcore needs root (CAP_SYS_RAWIO)" },
  );
}

class KcoreSource implements GuestMemorySource {
  readonly path: string;
  readonly memory: FileMemory;
  readonly vmcoreinfo: string;
  readonly notes: readonly string[];

  constructor(memory: FileMemory, vmcoreinfo: string) {
    this.path = memory.path;
    this.memory = memory;
    this.vmcoreinfo = vmcoreinfo;
    this.notes = [
      `${memory.path} is the running kernel's memory, read while it runs: maps changing during the read may be torn`,
    ];
  }

  close(): void {
    this.memory.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The note `/sys/kernel/vmcoreinfo` points at ("PADDR SIZE" in hex), read
 * from physical memory.
 */
function vmcoreinfoFromSysfs(memory: FileMemory): string | null {
  let text: string;
  try {
    text = Deno.readTextFileSync("/sys/kernel/vmcoreinfo");
  } catch {
    return null;
  }
  const m = /^([0-9a-f]+)\s+([0-9a-f]+)/i.exec(text);
  if (!m) return null;
  const size = parseInt(m[2]!, 16);
  if (!(size > 0 && size <= MAX_NOTES)) return null;
  const bytes = memory.read(BigInt(`0x${m[1]}`), size);
  return bytes === null ? null : findVmcoreinfoNote(bytes.slice());
}

/**
 * Opens `/proc/kcore` as physical memory with the kernel's VMCOREINFO.
 *
 * @example
 * ```ts ignore
 * using kcore = openKcore();
 * console.log(kcore.vmcoreinfo.split("\n")[0]); // OSRELEASE=...
 * ```
 */
export function openKcore(
  options: { path?: string; cacheBytes?: number } = {},
): GuestMemorySource & { vmcoreinfo: string } {
  const path = options.path ?? KCORE;
  let layout: KcoreLayout;
  {
    let fd;
    try {
      fd = openReadOnly(path);
    } catch (error) {
      throw explainOpen(path, error);
    }
    using owned = fd;
    layout = parseKcore((offset, len) => {
      const out = new Uint8Array(len);
      const n = preadFd(owned.fd, out, offset);
      if (n !== len) {
        throw new GuestSourceError(
          path,
          `gave ${
            n < 0 ? `errno ${-n}` : `${n} bytes`
          } reading ${len} at offset ${offset}`,
        );
      }
      return out;
    }, path);
  }
  const memory = FileMemory.open(
    path,
    Number.MAX_SAFE_INTEGER,
    layout.regions,
    {
      ...(options.cacheBytes === undefined
        ? {}
        : { cacheBytes: options.cacheBytes }),
      fileOffsetOf: layout.fileOffsetOf,
      // SEEK_DATA on kcore knows nothing of holes: every byte may be data
      dataRuns: (start, end) => [{ start, end }],
      shortRead: () =>
        "kcore ended early (memory hot-unplugged during the read?)",
    },
  );
  try {
    const vmcoreinfo = layout.vmcoreinfo ?? vmcoreinfoFromSysfs(memory);
    if (vmcoreinfo === null) {
      throw new GuestKernelError(
        `${path} has no VMCOREINFO note and /sys/kernel/vmcoreinfo gave none: bpfmap needs it to find the kernel`,
      );
    }
    return new KcoreSource(memory, vmcoreinfo);
  } catch (error) {
    memory.close();
    throw error;
  }
}
