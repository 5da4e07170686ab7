/**
 * Test-only BPF programs, hand-assembled: enough to make the kernel itself
 * write ring buffer records and stack traces, and to have program fds to
 * put in prog arrays, devmaps and cpumaps. Loading goes through bpfmap's
 * own `progLoad`, so no libbpf, bpftool or clang is needed for these.
 *
 * @module
 */

import { AttachType, progLoad, ProgType } from "../../src/sys/prog.ts";
import type { OwnedFd } from "../../src/sys/fd.ts";

/** Helper numbers (`enum bpf_func_id`). */
export const Helper = {
  GET_STACKID: 27,
  RINGBUF_OUTPUT: 130,
  RINGBUF_RESERVE: 131,
  RINGBUF_SUBMIT: 132,
  RINGBUF_DISCARD: 133,
} as const;

/** One instruction: 8 bytes (an ld_imm64 is two of them). */
type Insn = [code: number, dst: number, src: number, off: number, imm: number];

const movImm = (dst: number, imm: number): Insn => [0xb7, dst, 0, 0, imm];
const movReg = (dst: number, src: number): Insn => [0xbf, dst, src, 0, 0];
const addImm = (dst: number, imm: number): Insn => [0x07, dst, 0, 0, imm];
const loadDw = (
  dst: number,
  src: number,
  off: number,
): Insn => [0x79, dst, src, off, 0];
const storeDw = (
  dst: number,
  src: number,
  off: number,
): Insn => [0x7b, dst, src, off, 0];
const jeqImm = (
  dst: number,
  imm: number,
  off: number,
): Insn => [0x15, dst, 0, off, imm];
const call = (helper: number): Insn => [0x85, 0, 0, 0, helper];
const exit = (): Insn => [0x95, 0, 0, 0, 0];
/** `dst = map fd` as the two-slot ld_imm64 with BPF_PSEUDO_MAP_FD. */
const loadMapFd = (dst: number, fd: number): Insn[] => [
  [0x18, dst, 1, 0, fd],
  [0, 0, 0, 0, 0],
];

function assemble(insns: Insn[]): Uint8Array {
  const bytes = new Uint8Array(insns.length * 8);
  const view = new DataView(bytes.buffer);
  insns.forEach(([code, dst, src, off, imm], i) => {
    view.setUint8(i * 8, code);
    view.setUint8(i * 8 + 1, (src << 4) | dst);
    view.setInt16(i * 8 + 2, off, true);
    view.setInt32(i * 8 + 4, imm, true);
  });
  return bytes;
}

/** `return retval;` as a socket filter: a program fd for prog arrays. */
export function loadTrivialProgram(name: string, retval = 0): OwnedFd {
  return progLoad({
    type: ProgType.SOCKET_FILTER,
    insns: assemble([movImm(0, retval), exit()]),
    name,
  });
}

/** `return XDP_PASS;` loaded for a devmap or cpumap slot. */
export function loadXdpProgram(
  name: string,
  attach: "devmap" | "cpumap",
): OwnedFd {
  return progLoad({
    type: ProgType.XDP,
    insns: assemble([movImm(0, 2), exit()]),
    name,
    expectedAttachType: attach === "devmap"
      ? AttachType.XDP_DEVMAP
      : AttachType.XDP_CPUMAP,
  });
}

/**
 * A raw tracepoint program that writes its two u64 arguments as one
 * 16-byte record with `bpf_ringbuf_output`. Run it with
 * `progTestRun(fd, { ctx: 16 bytes })`.
 */
export function loadRingbufOutputProgram(name: string, mapFd: number): OwnedFd {
  return progLoad({
    type: ProgType.RAW_TRACEPOINT,
    name,
    insns: assemble([
      movReg(6, 1),
      loadDw(2, 6, 0),
      storeDw(10, 2, -16),
      loadDw(2, 6, 8),
      storeDw(10, 2, -8),
      ...loadMapFd(1, mapFd),
      movReg(2, 10),
      addImm(2, -16),
      movImm(3, 16),
      movImm(4, 0),
      call(Helper.RINGBUF_OUTPUT),
      movImm(0, 0),
      exit(),
    ]),
  });
}

/**
 * A raw tracepoint program that reserves a `size`-byte record, stores its
 * first u64 argument in the first 8 bytes, then submits or discards it.
 * Returns 1 when the reservation failed (ring full), else 0.
 */
export function loadRingbufReserveProgram(
  name: string,
  mapFd: number,
  size: number,
  finish: "submit" | "discard",
): OwnedFd {
  return progLoad({
    type: ProgType.RAW_TRACEPOINT,
    name,
    insns: assemble([
      loadDw(6, 1, 0),
      ...loadMapFd(1, mapFd),
      movImm(2, size),
      movImm(3, 0),
      call(Helper.RINGBUF_RESERVE),
      jeqImm(0, 0, 6),
      storeDw(0, 6, 0),
      movReg(1, 0),
      movImm(2, 0),
      call(
        finish === "submit" ? Helper.RINGBUF_SUBMIT : Helper.RINGBUF_DISCARD,
      ),
      movImm(0, 0),
      exit(),
      movImm(0, 1),
      exit(),
    ]),
  });
}

/**
 * A raw tracepoint program that stores the stack it runs on in a
 * STACK_TRACE map and returns the stack id (`bpf_get_stackid`): the kernel
 * stack, or with `flags` BPF_F_USER_STACK (256) the calling process's.
 */
export function loadStackIdProgram(
  name: string,
  mapFd: number,
  flags = 0,
): OwnedFd {
  return progLoad({
    type: ProgType.RAW_TRACEPOINT,
    name,
    insns: assemble([
      ...loadMapFd(2, mapFd),
      movImm(3, flags),
      call(Helper.GET_STACKID),
      exit(),
    ]),
  });
}
