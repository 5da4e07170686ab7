/**
 * STACK_TRACE: every stack id with its frames. A user-space lookup returns
 * the stack as the program stored it: `value_size / 8` u64 instruction
 * pointers ending at the first zero, or with `BPF_F_STACK_BUILD_ID`
 * `struct bpf_stack_build_id` entries (32 bytes: status, build id, offset).
 *
 * @module
 */

import { MapTypeError } from "../../errors.ts";
import { MapFlag, MapType } from "../../sys/constants.ts";
import type { BpfMapInfo } from "../types.ts";
import { walkSlots } from "./fd_slots.ts";
import type { KernelSymbols } from "./kallsyms.ts";

/** One frame. */
export interface StackFrame {
  /** The instruction pointer (or, for a build-id frame with status 1, the file offset). */
  ip: bigint;
  /** `sym+0xoff` for a kernel address, when the symbol table names it. */
  symbol?: string;
  /** Build-id frames: 0 empty, 1 valid (build id + offset), 2 ip only. */
  buildIdStatus?: number;
  /** Build-id frames: the object's build id as hex. */
  buildId?: string;
}

/** One stored stack. */
export interface StackTrace {
  /** The stack id (the key programs got from `bpf_get_stackid`). */
  id: number;
  /** Frames, innermost first, up to the first empty one. */
  frames: StackFrame[];
  /** The raw value bytes. */
  value: Uint8Array;
}

/** Every stack of a stack trace map. */
export interface StackTraceDump {
  /** Always `"stack_trace"`. */
  kind: "stack_trace";
  /** Whether frames are build-id entries. */
  buildId: boolean;
  /** Stacks in the kernel's key order. */
  stacks: StackTrace[];
  /** Stack ids listed but not readable (freed in between), with the reason. */
  errors: { id: number; error: string }[];
}

const BUILD_ID_ENTRY = 32;

/** The frames of one stored stack value (shared by both backends). */
export function decodeFrames(
  value: Uint8Array,
  buildId: boolean,
  symbols: KernelSymbols | undefined,
): StackFrame[] {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const frames: StackFrame[] = [];
  if (buildId) {
    for (
      let at = 0;
      at + BUILD_ID_ENTRY <= value.byteLength;
      at += BUILD_ID_ENTRY
    ) {
      const status = view.getInt32(at, true);
      if (status === 0) break;
      frames.push({
        ip: view.getBigUint64(at + 24, true),
        buildIdStatus: status,
        buildId: Array.from(
          value.subarray(at + 4, at + 24),
          (b) => b.toString(16).padStart(2, "0"),
        ).join(""),
      });
    }
    return frames;
  }
  for (let at = 0; at + 8 <= value.byteLength; at += 8) {
    const ip = view.getBigUint64(at, true);
    if (ip === 0n) break;
    const symbol = symbols?.symbolize(ip) ?? null;
    frames.push(symbol === null ? { ip } : { ip, symbol });
  }
  return frames;
}

/**
 * Every stack of a live STACK_TRACE map; kernel frames are named from
 * `symbols` when given (user-space addresses stay raw).
 */
export function readStackTracesLive(
  map: BpfMapInfo,
  symbols?: KernelSymbols,
): StackTraceDump {
  if (map.type !== MapType.STACK_TRACE) {
    throw new MapTypeError(map, map.type, "a STACK_TRACE map");
  }
  const buildId = (map.flags & MapFlag.STACK_BUILD_ID) !== 0;
  const dump: StackTraceDump = {
    kind: "stack_trace",
    buildId,
    stacks: [],
    errors: [],
  };
  for (const slot of walkSlots(map, () => undefined)) {
    const id = new DataView(slot.key.buffer).getUint32(0, true);
    if (slot.status === "value" && slot.value) {
      dump.stacks.push({
        id,
        frames: decodeFrames(slot.value, buildId, symbols),
        value: slot.value,
      });
    } else {
      dump.errors.push({ id, error: slot.error ?? "unreadable" });
    }
  }
  return dump;
}
