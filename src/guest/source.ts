/**
 * Where guest memory comes from: a raw RAM file (QEMU
 * `memory-backend-file,share=on`) or an ELF core (QEMU `dump-guest-memory`,
 * kdump vmcore). Both are read with pread through {@linkcode FileMemory},
 * never mapped, so a file that changes size under the reader is an error,
 * not a crash.
 *
 * @module
 */

import { ARCHES, detectArch } from "./arch/mod.ts";
import type { RamFileLayout } from "./arch/types.ts";
import { GuestKernelError, GuestSourceError } from "./errors.ts";
import { FileMemory, type PhysicalMemory, type PhysRegion } from "./phys.ts";
import { findVmcoreinfo, parseVmcoreinfo } from "./vmcoreinfo.ts";

/** A guest memory image, open for reading. Close it (or `using`) to release the file. */
export interface GuestMemorySource extends Disposable {
  /** The file the image came from. */
  readonly path: string;
  /** Guest physical memory. Invalid after `close()`. */
  readonly memory: PhysicalMemory;
  /**
   * VMCOREINFO text: an ELF core's note, or the copy a RAM file scan found
   * (null when there is none).
   */
  readonly vmcoreinfo: string | null;
  /** What the reader should know about the view, e.g. that it was read live (may be torn). */
  readonly notes?: readonly string[];
  /** Releases the file. */
  close(): void;
}

/** Options for {@linkcode openRamFile}. */
export interface RamFileOptions {
  /** Physical layout; default: the detected architecture's usual VMM layout of the file size. */
  regions?: readonly PhysRegion[];
  /** VMCOREINFO text when the caller has it (skips the scan). */
  vmcoreinfo?: string;
  /** Page-cache bytes (see {@linkcode FileMemory}). */
  cacheBytes?: number;
  /** Open the file read-write, so the guest's memory can be written (freeze it first). */
  writable?: boolean;
}

class FileSource implements GuestMemorySource {
  readonly path: string;
  readonly memory: FileMemory;
  readonly vmcoreinfo: string | null;

  constructor(memory: FileMemory, vmcoreinfo: string | null) {
    this.path = memory.path;
    this.memory = memory;
    this.vmcoreinfo = vmcoreinfo;
  }

  close(): void {
    this.memory.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const NEEDED =
  "guest memory must be a regular file: a QEMU RAM file (memory-backend-file,mem-path=/dev/shm/NAME,share=on) or an ELF core (dump-guest-memory)";

/**
 * The size of `path` after checking it is a non-empty regular file; a
 * one-line GuestSourceError naming what it is otherwise (opening a FIFO
 * would block, mapping a directory fails with ENODEV).
 */
export function regularFileSize(path: string): number {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    throw new GuestSourceError(
      path,
      `cannot be read: ${(error as Error).message.split("\n")[0]}`,
      { cause: error, hint: NEEDED },
    );
  }
  const kind = info.isDirectory
    ? "a directory"
    : info.isFifo
    ? "a FIFO (named pipe)"
    : info.isSocket
    ? "a socket"
    : info.isCharDevice
    ? "a character device"
    : info.isBlockDevice
    ? "a block device"
    : null;
  if (kind !== null || !info.isFile) {
    throw new GuestSourceError(path, `is ${kind ?? "not a regular file"}`, {
      hint: NEEDED,
    });
  }
  if (info.size === 0) {
    throw new GuestSourceError(path, "is empty (0 bytes)", { hint: NEEDED });
  }
  return info.size;
}

/** What a raw RAM file says of itself before its layout is known. */
export interface RamFileSurvey {
  /** The file's size in bytes. */
  size: number;
  /** VMCOREINFO's text (given, or found by the scan), or null. */
  vmcoreinfo: string | null;
  /**
   * Where its RAM may lie: the architecture's layouts for the size, the most
   * common first (one when VMCOREINFO was not found: x86-64's).
   */
  layouts: RamFileLayout[];
}

/**
 * Finds VMCOREINFO in a raw RAM file (a scan of page starts from the top of
 * the file, unless `vmcoreinfo` is given) and lists the layouts its
 * architecture's VMM may have used for the file's size.
 */
export function surveyRamFile(
  path: string,
  vmcoreinfo: string | null = null,
): RamFileSurvey {
  const size = regularFileSize(path);
  let text = vmcoreinfo;
  if (text === null) {
    // file offsets stand in for addresses until the layout is known
    using raw = FileMemory.open(path, size, [{
      gpa: 0n,
      size: BigInt(size),
      fileOffset: 0,
    }], { cacheBytes: 1 << 16 });
    const found = findVmcoreinfo(raw, {
      recognized: (info) => ARCHES.some((arch) => arch.recognizes(info)),
    });
    text = found
      ? [...found.raw].map(([k, v]) => `${k}=${v}`).join("\n")
      : null;
  }
  const arch = text === null ? ARCHES[0]! : detectArch(parseVmcoreinfo(text));
  return { size, vmcoreinfo: text, layouts: arch.ramFileLayouts(BigInt(size)) };
}

/**
 * Opens a raw guest RAM file. Freeze the guest (QMP `stop`) before reading,
 * or reads may be torn. Without `regions`, VMCOREINFO is found first (a scan
 * of page starts from the top of the file) and its architecture's most
 * common layout is used (`GuestMemMapAccessor.openRamFile` tries each of
 * `surveyRamFile`'s layouts against the kernel's own record of its RAM).
 *
 * @example
 * ```ts
 * import { openRamFile } from "./source.ts";
 * using source = openRamFile("/dev/shm/guest-ram");
 * console.log(source.memory.end, source.vmcoreinfo?.split("\n")[0]);
 * ```
 */
export function openRamFile(
  path: string,
  options: RamFileOptions = {},
): GuestMemorySource {
  let size: number;
  let text = options.vmcoreinfo ?? null;
  let regions = options.regions;
  if (regions === undefined) {
    const survey = surveyRamFile(path, text);
    size = survey.size;
    text = survey.vmcoreinfo;
    regions = survey.layouts[0]!.regions;
  } else {
    size = regularFileSize(path);
  }
  const memory = FileMemory.open(path, size, regions, {
    ...(options.cacheBytes === undefined
      ? {}
      : { cacheBytes: options.cacheBytes }),
    ...(options.writable ? { writable: true } : {}),
  });
  return new FileSource(memory, text);
}

/** What an ELF core describes. */
export interface ElfCoreLayout {
  /** PT_LOAD segments by physical address (file-backed bytes only). */
  regions: PhysRegion[];
  /** Text of the `VMCOREINFO` note, or null when absent. */
  vmcoreinfo: string | null;
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const MAX_PHDRS = 1 << 16;
const MAX_NOTES = 16 << 20;

/** Reads `len` bytes at file offset `offset` (throws when they are not there). */
type ReadAt = (offset: number, len: number) => Uint8Array;

/**
 * Reads the program headers of a little-endian ELF64 core held in memory:
 * PT_LOAD segments keyed by `p_paddr`, and the VMCOREINFO note if a PT_NOTE
 * holds one. A segment past the end of the file is a truncated core.
 *
 * @example
 * ```ts
 * import { parseElfCore } from "./source.ts";
 * const { regions } = parseElfCore(Deno.readFileSync("guest.core"));
 * console.log(regions.length);
 * ```
 */
export function parseElfCore(
  bytes: Uint8Array,
  name = "ELF core",
): ElfCoreLayout {
  return parseElfCoreAt(
    (offset, len) => bytes.subarray(offset, offset + len),
    bytes.byteLength,
    name,
  );
}

function parseElfCoreAt(
  read: ReadAt,
  size: number,
  name: string,
): ElfCoreLayout {
  const header = read(0, Math.min(size, 64));
  const view = new DataView(
    header.buffer,
    header.byteOffset,
    header.byteLength,
  );
  if (
    header.byteLength < 64 || view.getUint32(0, false) !== 0x7f454c46 ||
    header[4] !== 2 || header[5] !== 1
  ) {
    throw new GuestKernelError(`${name} is not a little-endian ELF64 file`);
  }
  if (view.getUint16(16, true) !== 4) {
    throw new GuestKernelError(
      `${name}: ELF type ${view.getUint16(16, true)} is not a core (ET_CORE=4)`,
    );
  }
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  let phnum = view.getUint16(56, true);
  if (phnum === 0xffff) {
    // PN_XNUM: the real count is in section header 0's sh_info
    const shoff = Number(view.getBigUint64(40, true));
    if (shoff + 64 <= size) {
      const sh = read(shoff, 64);
      phnum = new DataView(sh.buffer, sh.byteOffset, 64).getUint32(44, true);
    }
  }
  // Elf64_Phdr is 56 bytes; a larger stride is allowed but not one that
  // would make the header table gigabytes long
  if (phentsize < 56 || phentsize > 1024 || phnum > MAX_PHDRS) {
    throw new GuestKernelError(
      `${name}: ELF program headers (${phnum} x ${phentsize} at ${phoff}) are implausible`,
    );
  }
  const phEnd = phoff + phnum * phentsize;
  if (phEnd > size) {
    throw new GuestSourceError(
      name,
      `core truncated at ${size} (expected at least ${phEnd} bytes for its program headers)`,
    );
  }
  const phdrs = read(phoff, phnum * phentsize);
  const ph = new DataView(phdrs.buffer, phdrs.byteOffset, phdrs.byteLength);
  const regions: PhysRegion[] = [];
  const notes: { offset: number; size: number }[] = [];
  let expected = phEnd;
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    const type = ph.getUint32(at, true);
    const offset = ph.getBigUint64(at + 8, true);
    const paddr = ph.getBigUint64(at + 24, true);
    const filesz = ph.getBigUint64(at + 32, true);
    if (type !== PT_LOAD && type !== PT_NOTE) continue;
    const end = offset + filesz;
    if (end > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GuestKernelError(
        `${name}: program header ${i} ends at ${end}, beyond any file`,
      );
    }
    if (Number(end) > expected) expected = Number(end);
    if (type === PT_LOAD && filesz > 0n) {
      regions.push({ gpa: paddr, size: filesz, fileOffset: Number(offset) });
    } else if (type === PT_NOTE && filesz <= BigInt(MAX_NOTES)) {
      notes.push({ offset: Number(offset), size: Number(filesz) });
    }
  }
  if (expected > size) {
    throw new GuestSourceError(
      name,
      `core truncated at ${size} (expected ${expected} bytes)`,
      { hint: "the dump was cut short (disk full, or still being written?)" },
    );
  }
  let vmcoreinfo: string | null = null;
  for (const note of notes) {
    vmcoreinfo = findVmcoreinfoNote(read(note.offset, note.size));
    if (vmcoreinfo !== null) break;
  }
  return { regions: dropOverlaps(regions), vmcoreinfo };
}

function dropOverlaps(regions: PhysRegion[]): PhysRegion[] {
  regions.sort((a, b) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
  const kept: PhysRegion[] = [];
  for (const region of regions) {
    const prev = kept[kept.length - 1];
    if (prev && region.gpa < prev.gpa + prev.size) continue;
    kept.push(region);
  }
  return kept;
}

/** The VMCOREINFO text in a run of ELF notes, or null. */
export function findVmcoreinfoNote(notes: Uint8Array): string | null {
  const view = new DataView(notes.buffer, notes.byteOffset, notes.byteLength);
  let at = 0;
  for (let guard = 0; guard < 4096 && at + 12 <= notes.byteLength; guard++) {
    const namesz = view.getUint32(at, true);
    const descsz = view.getUint32(at + 4, true);
    const nameStart = at + 12;
    const descStart = nameStart + ((namesz + 3) & ~3);
    const next = descStart + ((descsz + 3) & ~3);
    if (next > notes.byteLength || next <= at) break;
    const name = new TextDecoder().decode(
      notes.subarray(nameStart, nameStart + namesz),
    ).replace(/\0+$/, "");
    if (name === "VMCOREINFO") {
      return new TextDecoder().decode(
        notes.subarray(descStart, descStart + descsz),
      ).replace(/\0[\s\S]*$/, "");
    }
    at = next;
  }
  return null;
}

/**
 * Opens an ELF core (QEMU `dump-guest-memory` without `-z/-l/-s`, or a kdump
 * vmcore in ELF format).
 *
 * @example
 * ```ts
 * import { openElfCore } from "./source.ts";
 * using core = openElfCore("/tmp/guest.core");
 * console.log(core.vmcoreinfo?.split("\n")[0]);
 * ```
 */
export function openElfCore(
  path: string,
  options: { cacheBytes?: number } = {},
): GuestMemorySource {
  const size = regularFileSize(path);
  let layout: ElfCoreLayout;
  {
    using raw = FileMemory.open(path, size, [{
      gpa: 0n,
      size: BigInt(size),
      fileOffset: 0,
    }], { cacheBytes: 1 << 16 });
    layout = parseElfCoreAt(
      (offset, len) => {
        const out = new Uint8Array(len);
        raw.readInto(BigInt(offset), out);
        return out;
      },
      size,
      path,
    );
  }
  const memory = FileMemory.open(
    path,
    size,
    layout.regions,
    options.cacheBytes === undefined ? {} : { cacheBytes: options.cacheBytes },
  );
  return new FileSource(memory, layout.vmcoreinfo);
}
