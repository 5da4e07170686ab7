/**
 * Where guest memory comes from: a raw RAM file (QEMU
 * `memory-backend-file,share=on`) or an ELF core (QEMU `dump-guest-memory`,
 * kdump vmcore). Both are mapped read-only, never copied.
 *
 * @module
 */

import { MappedFile } from "../sys/mmap.ts";
import { GuestKernelError } from "./errors.ts";
import { PhysicalMemory, type PhysRegion, qemuX86Layout } from "./phys.ts";

/** A guest memory image, open for reading. Close it (or `using`) to unmap it. */
export interface GuestMemorySource extends Disposable {
  /** The file the image came from. */
  readonly path: string;
  /** Guest physical memory. Invalid after `close()`. */
  readonly memory: PhysicalMemory;
  /** VMCOREINFO text from an ELF note, or null (RAM files carry none outside RAM). */
  readonly vmcoreinfo: string | null;
  /** Unmaps the image. */
  close(): void;
}

/** Options for {@linkcode openRamFile}. */
export interface RamFileOptions {
  /** Physical layout; default {@linkcode qemuX86Layout} of the file size. */
  regions?: readonly PhysRegion[];
}

class MappedSource implements GuestMemorySource {
  readonly path: string;
  readonly memory: PhysicalMemory;
  readonly vmcoreinfo: string | null;
  readonly #file: MappedFile;

  constructor(
    file: MappedFile,
    memory: PhysicalMemory,
    vmcoreinfo: string | null,
  ) {
    this.path = file.path;
    this.#file = file;
    this.memory = memory;
    this.vmcoreinfo = vmcoreinfo;
  }

  close(): void {
    this.#file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Maps a raw guest RAM file. The mapping is shared: freeze the guest (QMP
 * `stop`) before reading, or reads may be torn.
 *
 * @example
 * ```ts ignore
 * import { openRamFile } from "./source.ts";
 * using source = openRamFile("/dev/shm/guest-ram");
 * console.log(source.memory.end);
 * ```
 */
export function openRamFile(
  path: string,
  options: RamFileOptions = {},
): GuestMemorySource {
  const file = MappedFile.open(path);
  try {
    const regions = options.regions ??
      qemuX86Layout(BigInt(file.bytes.byteLength));
    return new MappedSource(
      file,
      new PhysicalMemory(file.bytes, regions),
      null,
    );
  } catch (error) {
    file.close();
    throw error;
  }
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

/**
 * Reads the program headers of a little-endian ELF64 core: PT_LOAD segments
 * keyed by `p_paddr`, and the VMCOREINFO note if a PT_NOTE holds one.
 *
 * @example
 * ```ts ignore
 * import { parseElfCore } from "./source.ts";
 * const { regions } = parseElfCore(Deno.readFileSync("guest.core"));
 * console.log(regions.length);
 * ```
 */
export function parseElfCore(bytes: Uint8Array): ElfCoreLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    bytes.byteLength < 64 || view.getUint32(0, false) !== 0x7f454c46 ||
    bytes[4] !== 2 || bytes[5] !== 1
  ) {
    throw new GuestKernelError("Not a little-endian ELF64 file");
  }
  if (view.getUint16(16, true) !== 4) {
    throw new GuestKernelError(
      `ELF type ${view.getUint16(16, true)} is not a core (ET_CORE=4)`,
    );
  }
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  let phnum = view.getUint16(56, true);
  if (phnum === 0xffff && bytes.byteLength >= 64) {
    // PN_XNUM: the real count is in section header 0's sh_info
    const shoff = Number(view.getBigUint64(40, true));
    if (shoff + 64 <= bytes.byteLength) {
      phnum = view.getUint32(shoff + 44, true);
    }
  }
  if (
    phentsize < 56 || phnum > MAX_PHDRS ||
    phoff + phnum * phentsize > bytes.byteLength
  ) {
    throw new GuestKernelError(
      `ELF program headers (${phnum} x ${phentsize} at ${phoff}) do not fit the file`,
    );
  }
  const regions: PhysRegion[] = [];
  let vmcoreinfo: string | null = null;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = view.getUint32(at, true);
    const offset = view.getBigUint64(at + 8, true);
    const paddr = view.getBigUint64(at + 24, true);
    const filesz = view.getBigUint64(at + 32, true);
    if (offset + filesz > BigInt(bytes.byteLength)) continue;
    if (type === PT_LOAD && filesz > 0n) {
      regions.push({ gpa: paddr, size: filesz, fileOffset: Number(offset) });
    } else if (type === PT_NOTE && vmcoreinfo === null) {
      vmcoreinfo = findVmcoreinfoNote(
        bytes.subarray(Number(offset), Number(offset + filesz)),
      );
    }
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

function findVmcoreinfoNote(notes: Uint8Array): string | null {
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
 * Maps an ELF core (QEMU `dump-guest-memory` without `-z/-l/-s`, or a kdump
 * vmcore in ELF format).
 *
 * @example
 * ```ts ignore
 * import { openElfCore } from "./source.ts";
 * using core = openElfCore("/tmp/guest.core");
 * console.log(core.vmcoreinfo?.split("\n")[0]);
 * ```
 */
export function openElfCore(path: string): GuestMemorySource {
  const file = MappedFile.open(path);
  try {
    const layout = parseElfCore(file.bytes);
    return new MappedSource(
      file,
      new PhysicalMemory(file.bytes, layout.regions),
      layout.vmcoreinfo,
    );
  } catch (error) {
    file.close();
    throw error;
  }
}
