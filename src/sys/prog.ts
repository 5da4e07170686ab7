/**
 * bpf() commands about programs: loading (tests and fixtures), test runs,
 * and naming a program id found in a map (prog arrays, devmap/cpumap
 * values, struct_ops members). Kept apart from `bpf.ts` so the map commands
 * there can be restructured without touching these.
 *
 * @module
 */

import {
  getU32,
  ID_ATTR,
  INFO_ATTR,
  PROG_INFO,
  PROG_LOAD_ATTR,
  put,
  TEST_RUN_ATTR,
} from "./attr.ts";
import { Errno } from "./constants.ts";
import { BpfError } from "./errors.ts";
import { addressOf } from "./ffi.ts";
import { OwnedFd } from "./fd.ts";
import { rawBpf } from "./bpf.ts";

/** bpf() command numbers used here (`enum bpf_cmd`). */
export const ProgCommand = {
  PROG_LOAD: 5,
  PROG_TEST_RUN: 10,
  PROG_GET_NEXT_ID: 11,
  PROG_GET_FD_BY_ID: 13,
  OBJ_GET_INFO_BY_FD: 15,
} as const;

/** Program types (`enum bpf_prog_type`) bpfmap loads or names. */
export const ProgType = {
  SOCKET_FILTER: 1,
  KPROBE: 2,
  XDP: 6,
  RAW_TRACEPOINT: 17,
  STRUCT_OPS: 27,
} as const;

/** Attach types (`enum bpf_attach_type`) that a devmap/cpumap program must be loaded with. */
export const AttachType = {
  XDP_DEVMAP: 33,
  XDP_CPUMAP: 35,
} as const;

function fail(
  name: string,
  errno: number,
  action: string,
  hint?: string,
): never {
  throw new BpfError(-1, errno, {
    action: `${name} (${action})`,
    ...(hint ? { hint } : {}),
  });
}

/** What BPF_PROG_LOAD needs. */
export interface ProgLoadAttr {
  /** `enum bpf_prog_type`. */
  type: number;
  /** Instructions, 8 bytes each. */
  insns: Uint8Array;
  /** License string; GPL-only helpers need `"GPL"`. */
  license?: string;
  /** Up to 15 characters. */
  name?: string;
  /** `enum bpf_attach_type` for types that need one at load time. */
  expectedAttachType?: number;
}

/**
 * BPF_PROG_LOAD: a new program, owned by the returned fd. A verifier
 * rejection carries the last lines of the verifier log in the error.
 */
export function progLoad(attr: ProgLoadAttr): OwnedFd {
  const insns = new Uint8Array(attr.insns);
  const license = new TextEncoder().encode(`${attr.license ?? "GPL"}\0`);
  const log = new Uint8Array(256 * 1024);
  const f = PROG_LOAD_ATTR.fields;
  const buffer = new Uint8Array(PROG_LOAD_ATTR.size);
  const view = new DataView(buffer.buffer);
  put(view, f.prog_type, attr.type);
  put(view, f.insn_cnt, insns.byteLength / 8);
  put(view, f.insns, addressOf(insns));
  put(view, f.license, addressOf(license));
  put(view, f.log_level, 1);
  put(view, f.log_size, log.byteLength);
  put(view, f.log_buf, addressOf(log));
  const name = new TextEncoder().encode(attr.name ?? "");
  buffer.set(name.subarray(0, f.prog_name.size - 1), f.prog_name.offset);
  put(view, f.expected_attach_type, attr.expectedAttachType ?? 0);
  const result = rawBpf(ProgCommand.PROG_LOAD, buffer);
  if (result < 0) {
    const end = log.indexOf(0);
    const text = new TextDecoder().decode(log.subarray(0, end < 0 ? 0 : end))
      .trim().split("\n").slice(-3).join(" | ");
    fail(
      "BPF_PROG_LOAD",
      -result,
      `program "${attr.name ?? ""}" of type ${attr.type}`,
      text ? `verifier: ${text}` : undefined,
    );
  }
  return new OwnedFd(result);
}

/** What BPF_PROG_TEST_RUN reports. */
export interface TestRunResult {
  /** The program's return value. */
  retval: number;
}

/**
 * BPF_PROG_TEST_RUN once: `data` is the packet (socket filter, XDP), `ctx`
 * the context (a raw tracepoint's u64 arguments).
 */
export function progTestRun(
  fd: number,
  input: { data?: Uint8Array; ctx?: Uint8Array; repeat?: number } = {},
): TestRunResult {
  const f = TEST_RUN_ATTR.fields;
  const buffer = new Uint8Array(TEST_RUN_ATTR.size);
  const view = new DataView(buffer.buffer);
  put(view, f.prog_fd, fd);
  if (input.data) {
    put(view, f.data_size_in, input.data.byteLength);
    put(view, f.data_in, addressOf(input.data));
  }
  put(view, f.repeat, input.repeat ?? 0);
  if (input.ctx) {
    put(view, f.ctx_size_in, input.ctx.byteLength);
    put(view, f.ctx_in, addressOf(input.ctx));
  }
  const result = rawBpf(ProgCommand.PROG_TEST_RUN, buffer);
  if (result < 0) fail("BPF_PROG_TEST_RUN", -result, `prog fd ${fd}`);
  return { retval: getU32(view, f.retval) };
}

/** The few facts of `struct bpf_prog_info` a map dump shows. */
export interface ProgInfo {
  /** Program id. */
  id: number;
  /** `enum bpf_prog_type`. */
  type: number;
  /** Kernel-visible name (at most 15 characters). */
  name: string;
  /** The program's tag (SHA of its instructions), as hex. */
  tag: string;
}

/** BPF_OBJ_GET_INFO_BY_FD for a program. */
export function progGetInfo(fd: number): ProgInfo {
  // Up to the end of `name`: the kernel fills what fits and zero-checks nothing beyond.
  const p = PROG_INFO.fields;
  const info = new Uint8Array(PROG_INFO.size);
  const attr = new Uint8Array(INFO_ATTR.size);
  const view = new DataView(attr.buffer);
  put(view, INFO_ATTR.fields.bpf_fd, fd);
  put(view, INFO_ATTR.fields.info_len, info.byteLength);
  put(view, INFO_ATTR.fields.info, addressOf(info));
  const result = rawBpf(ProgCommand.OBJ_GET_INFO_BY_FD, attr);
  if (result < 0) {
    fail("BPF_OBJ_GET_INFO_BY_FD", -result, `prog fd ${fd}`);
  }
  const infoView = new DataView(info.buffer);
  const nameBytes = info.subarray(p.name.offset, p.name.offset + p.name.size);
  const end = nameBytes.indexOf(0);
  return {
    type: getU32(infoView, p.type),
    id: getU32(infoView, p.id),
    tag: Array.from(
      info.subarray(p.tag.offset, p.tag.offset + p.tag.size),
      (b) => b.toString(16).padStart(2, "0"),
    )
      .join(""),
    name: new TextDecoder().decode(
      end < 0 ? nameBytes : nameBytes.subarray(0, end),
    ),
  };
}

/** BPF_PROG_GET_FD_BY_ID; null when no program has the id (ENOENT). */
export function progGetFdById(id: number): OwnedFd | null {
  const attr = new Uint8Array(ID_ATTR.size);
  put(new DataView(attr.buffer), ID_ATTR.fields.start_id, id);
  const result = rawBpf(ProgCommand.PROG_GET_FD_BY_ID, attr);
  if (result === -Errno.ENOENT) return null;
  if (result < 0) fail("BPF_PROG_GET_FD_BY_ID", -result, `prog id ${id}`);
  return new OwnedFd(result);
}

/** The program with this id, or null when it is gone. */
export function progInfoById(id: number): ProgInfo | null {
  using fd = progGetFdById(id);
  return fd === null ? null : progGetInfo(fd.fd);
}
