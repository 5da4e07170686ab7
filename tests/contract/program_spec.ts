/**
 * The programs every backend under the contract holds: their instructions
 * (assembled here, one definition for both backends), the maps they use by
 * role, and what the kernel must report for them.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Role } from "./spec.ts";

/** The roles of the contract's programs. */
export type ProgramRole = "plain" | "withMaps";

/** One contract program. */
export interface ProgramSpec {
  /** `enum bpf_prog_type` (SOCKET_FILTER: loads anywhere, needs no attach). */
  type: number;
  /** License string: decides `gpl_compatible`. */
  license: string;
  /** The maps its `ld_imm64` instructions load, in instruction order. */
  maps: readonly Role[];
  /** Instructions, given the fds (live) or zeros (guest) of its maps. */
  insns: (fds: readonly number[]) => Uint8Array;
  /** Instructions the verifier walks (both are straight-line). */
  verifiedInsns: number;
}

const SOCKET_FILTER = 1;

function insn(
  code: number,
  dst: number,
  src: number,
  off: number,
  imm: number,
): number[] {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, code);
  view.setUint8(1, (src << 4) | dst);
  view.setInt16(2, off, true);
  view.setInt32(4, imm, true);
  return [...bytes];
}

/** `dst = map` as BPF_PSEUDO_MAP_FD ld_imm64 (two slots). */
function loadMap(dst: number, fd: number): number[] {
  return [...insn(0x18, dst, 1, 0, fd), ...insn(0, 0, 0, 0, 0)];
}

/** The contract's programs, by role. */
export const PROGRAM_SPEC: Readonly<Record<ProgramRole, ProgramSpec>> = {
  plain: {
    type: SOCKET_FILTER,
    license: "MIT",
    maps: [],
    insns: () =>
      Uint8Array.from([...insn(0xb7, 0, 0, 0, 7), ...insn(0x95, 0, 0, 0, 0)]),
    verifiedInsns: 2,
  },
  withMaps: {
    type: SOCKET_FILTER,
    license: "GPL",
    maps: ["hash", "array"],
    insns: (fds) =>
      Uint8Array.from([
        ...loadMap(1, fds[0] ?? 0),
        ...loadMap(2, fds[1] ?? 0),
        ...insn(0xb7, 0, 0, 0, 0),
        ...insn(0x95, 0, 0, 0, 0),
      ]),
    verifiedInsns: 4,
  },
};

/** Every program role, in a fixed order. */
export const PROGRAM_ROLES: readonly ProgramRole[] = Object.keys(
  PROGRAM_SPEC,
) as ProgramRole[];

/**
 * The tags a kernel computes for these instructions: the first 8 bytes of a
 * hash of the instructions with the immediates of map-loading `ld_imm64`
 * pairs zeroed (`bpf_prog_calc_tag`). SHA-256 since 6.18, SHA-1 before; both
 * are returned, SHA-256 first.
 */
export function kernelTags(insns: Uint8Array): [string, string] {
  const copy = insns.slice();
  const view = new DataView(copy.buffer);
  let inMapLoad = false;
  for (let at = 0; at < copy.length; at += 8) {
    const code = copy[at]!;
    const src = copy[at + 1]! >> 4;
    const dst = copy[at + 1]! & 15;
    if (!inMapLoad && code === 0x18 && (src === 1 || src === 2)) {
      inMapLoad = true;
      view.setInt32(at + 4, 0, true);
    } else if (
      inMapLoad && code === 0 && dst === 0 && src === 0 &&
      view.getInt16(at + 2, true) === 0
    ) {
      inMapLoad = false;
      view.setInt32(at + 4, 0, true);
    } else {
      inMapLoad = false;
    }
  }
  const tag = (algorithm: string): string =>
    createHash(algorithm).update(copy).digest("hex").slice(0, 16);
  return [tag("sha256"), tag("sha1")];
}
