/**
 * Extracts the `.BTF` section from an ELF object (what `clang -target bpf -g` writes).
 *
 * @module
 */

import { Btf } from "./btf.ts";
import { BtfError, BtfNotFoundError } from "./errors.ts";

const SHDR_SIZE = 64;
/** `sh_type` of a section that occupies no file bytes (`.bss`): its offset and size say nothing about the file. */
const SHT_NOBITS = 8;

/**
 * The raw bytes of section `name` of a little-endian ELF64 object.
 *
 * @param bytes the ELF file
 * @param name section name, e.g. `.BTF`
 * @returns the section's bytes (a view into `bytes`), or undefined when absent
 * @throws {BtfError} when the ELF headers are malformed
 *
 * @example Read `.BTF.ext`
 * ```ts
 * import { elfSection } from "./mod.ts";
 * const ext = elfSection(Deno.readFileSync("prog.bpf.o"), ".BTF.ext");
 * ```
 */
export function elfSection(
  bytes: Uint8Array,
  name: string,
): Uint8Array | undefined {
  if (
    bytes.byteLength < 64 || bytes[0] !== 0x7f || bytes[1] !== 0x45 ||
    bytes[2] !== 0x4c || bytes[3] !== 0x46
  ) {
    throw new BtfError(
      "not an ELF file (bad magic or shorter than 64 bytes)",
      0,
    );
  }
  if (bytes[4] !== 2) throw new BtfError("only ELF64 objects are supported", 4);
  if (bytes[5] !== 1) {
    throw new BtfError("only little-endian ELF objects are supported", 5);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  const shstrndx = view.getUint16(0x3e, true);
  if (shentsize < SHDR_SIZE) {
    throw new BtfError(`section header size ${shentsize} is below 64`, 0x3a);
  }
  if (shoff + shnum * shentsize > bytes.byteLength) {
    throw new BtfError(
      `section headers at ${shoff} (${shnum} of ${shentsize} bytes) run past the file end`,
      0x28,
    );
  }
  if (shstrndx >= shnum) {
    throw new BtfError(
      `section name table index ${shstrndx} is out of range`,
      0x3e,
    );
  }
  const section = (
    index: number,
  ): { name: number; offset: number; size: number; at: number } => {
    const at = shoff + index * shentsize;
    const offset = Number(view.getBigUint64(at + 0x18, true));
    const nobits = view.getUint32(at + 0x04, true) === SHT_NOBITS;
    // A NOBITS section's size is memory, not file bytes: it reads as empty.
    const size = nobits ? 0 : Number(view.getBigUint64(at + 0x20, true));
    if (!nobits && offset + size > bytes.byteLength) {
      throw new BtfError(
        `section ${index} (${offset}+${size}) runs past the file end`,
        at + 0x18,
      );
    }
    return { name: view.getUint32(at, true), offset, size, at };
  };
  const names = section(shstrndx);
  const wanted = new TextEncoder().encode(name + "\0");
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const start = names.offset + s.name;
    if (s.name + wanted.length > names.size) continue;
    let equal = true;
    for (let j = 0; j < wanted.length && equal; j++) {
      equal = bytes[start + j] === wanted[j];
    }
    if (equal) return bytes.subarray(s.offset, s.offset + s.size);
  }
  return undefined;
}

/**
 * Parses the `.BTF` section of an ELF object. Note that in an unlinked
 * object the DATASEC sizes and variable offsets may still be zero: libbpf
 * fills them in when it loads the object.
 *
 * @param bytes the ELF file
 * @param source how messages name the file, e.g. its path
 * @returns the parsed BTF
 * @throws {BtfNotFoundError} when the ELF has no `.BTF` section
 * @throws {BtfError} when the ELF or its `.BTF` is malformed
 *
 * @example Parse a compiled BPF program's BTF
 * ```ts
 * import { btfFromElf } from "./mod.ts";
 * const btf = btfFromElf(Deno.readFileSync("prog.bpf.o"), "prog.bpf.o");
 * console.log(btf.typeCount);
 * ```
 */
export function btfFromElf(
  bytes: Uint8Array,
  source = "the ELF object",
): Btf {
  const section = elfSection(bytes, ".BTF");
  if (!section) {
    throw new BtfNotFoundError(`no .BTF section in ${source}`, {
      hint:
        "BTF is written by clang -g (and pahole for kernels); pass the object that was compiled with it",
    });
  }
  return Btf.parse(section);
}

/**
 * Reads `path` and parses its `.BTF` section; messages name the file.
 *
 * @param path an ELF object, e.g. `prog.bpf.o` or a vmlinux
 * @throws {BtfNotFoundError} when the file has no `.BTF` section
 * @throws {BtfError} when the ELF or its `.BTF` is malformed
 */
export function btfFromElfFile(path: string): Btf {
  return btfFromElf(Deno.readFileSync(path), path);
}
