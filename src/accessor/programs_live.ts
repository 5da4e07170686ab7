/**
 * Programs on the running kernel, for `BpfSyscallAccessor.programs()`:
 * PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD (and fdinfo for
 * memlock, which the info struct does not carry).
 *
 * @module
 */

import { MapArgumentError } from "../errors.ts";
import { readFdinfo } from "../sys/bpf.ts";
import { progGetFdById } from "../sys/prog.ts";
import {
  bpfStatsEnabled,
  progGetFullInfo,
  progGetNextId,
  type RawProgInfo,
} from "../sys/prog_info.ts";
import { progTypeName } from "../sys/prog_types.ts";
import type { BpfProgramInfo } from "./types.ts";

/**
 * The accessor's record of a program. Stats follow one rule on every
 * backend: present when stats are on now or counted something earlier.
 */
export function programInfoFromRaw(
  raw: RawProgInfo,
  statsEnabled: boolean | null,
  memlock: bigint | undefined,
): BpfProgramInfo {
  const info: BpfProgramInfo = {
    id: raw.id,
    type: raw.type,
    typeName: String(progTypeName(raw.type)),
    name: raw.name,
    tag: raw.tag,
    mapIds: raw.mapIds,
    btfId: raw.btfId,
    gplCompatible: raw.gplCompatible,
    loadTime: raw.loadTime,
    uid: raw.uid,
    bytesXlated: raw.xlatedLen,
    jited: raw.jitedLen > 0,
    bytesJited: raw.jitedLen,
    verifiedInsns: raw.verifiedInsns,
  };
  if (memlock !== undefined) info.bytesMemlock = memlock;
  if (statsEnabled === true || raw.runTimeNs !== 0n || raw.runCnt !== 0n) {
    info.runTimeNs = raw.runTimeNs;
    info.runCnt = raw.runCnt;
    info.recursionMisses = raw.recursionMisses;
  } else {
    info.statsNote = statsEnabled === false
      ? "kernel.bpf_stats_enabled is 0"
      : "kernel.bpf_stats_enabled cannot be read and nothing was counted";
  }
  return info;
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
    throw new MapArgumentError(
      null,
      "id",
      `${id} is not a program id (an integer from 0 to 2147483647)`,
    );
  }
}

function byId(id: number, statsEnabled: boolean | null): BpfProgramInfo | null {
  using fd = progGetFdById(id);
  if (fd === null) return null;
  const raw = progGetFullInfo(fd.fd);
  let memlock: bigint | undefined;
  try {
    const text = readFdinfo(fd.fd).get("memlock");
    if (text !== undefined && /^\d+$/.test(text)) memlock = BigInt(text);
  } catch {
    // fdinfo needs procfs; memlock is the only thing it adds
  }
  return programInfoFromRaw(raw, statsEnabled, memlock);
}

/** The program with this id on the running kernel, or null when none has it. */
export function liveProgramById(id: number): BpfProgramInfo | null {
  checkId(id);
  return byId(id, bpfStatsEnabled());
}

/** Every program on the running kernel, in id order; ones freed mid-walk are skipped. */
export function livePrograms(): BpfProgramInfo[] {
  const statsEnabled = bpfStatsEnabled();
  const result: BpfProgramInfo[] = [];
  for (let id = progGetNextId(0); id !== null; id = progGetNextId(id)) {
    const info = byId(id, statsEnabled);
    if (info) result.push(info);
  }
  return result;
}
