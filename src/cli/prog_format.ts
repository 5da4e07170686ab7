/**
 * How programs look on the command line: `bpftool prog show -j` objects and
 * an aligned table.
 *
 * @module
 */

import type { BpfProgramInfo } from "../accessor/types.ts";
import { formatBytes, table } from "./format.ts";

/**
 * Seconds to add to a load time's whole seconds since boot to get the Unix
 * time, as bpftool computes `loaded_at`: CLOCK_REALTIME seconds minus
 * CLOCK_BOOTTIME seconds (`/proc/uptime` is CLOCK_BOOTTIME). Null when
 * `/proc/uptime` cannot be read.
 */
export function bootEpochSeconds(): bigint | null {
  try {
    const uptime = Deno.readTextFileSync("/proc/uptime").split(" ")[0]!;
    const bootSeconds = BigInt(uptime.split(".")[0]!);
    return BigInt(Math.floor(Date.now() / 1000)) - bootSeconds;
  } catch {
    return null;
  }
}

/**
 * A program as the JSON object `bpftool prog show -j` prints, with its keys
 * (u64 as exact digits). `loaded_at` needs the host's boot time, so a guest's
 * program has bpfmap's `load_time_ns` (since the guest's boot) instead.
 *
 * @param bootEpoch from {@linkcode bootEpochSeconds} for live programs, null for a guest's
 */
export function programJson(
  p: BpfProgramInfo,
  bootEpoch: bigint | null,
): string {
  const type = /^\d+$/.test(p.typeName)
    ? p.typeName
    : JSON.stringify(p.typeName);
  const parts = [`"id":${p.id}`, `"type":${type}`];
  if (p.name !== "") parts.push(`"name":${JSON.stringify(p.name)}`);
  parts.push(`"tag":"${p.tag}"`, `"gpl_compatible":${p.gplCompatible}`);
  if (p.runTimeNs !== undefined) {
    parts.push(`"run_time_ns":${p.runTimeNs}`, `"run_cnt":${p.runCnt}`);
    if (p.recursionMisses) {
      parts.push(`"recursion_misses":${p.recursionMisses}`);
    }
  }
  if (bootEpoch !== null) {
    parts.push(`"loaded_at":${bootEpoch + p.loadTime / 1_000_000_000n}`);
  } else {
    parts.push(`"load_time_ns":${p.loadTime}`);
  }
  if (p.uid !== undefined) parts.push(`"uid":${p.uid}`);
  parts.push(`"bytes_xlated":${p.bytesXlated}`, `"jited":${p.jited}`);
  if (p.jited) parts.push(`"bytes_jited":${p.bytesJited}`);
  if (p.bytesMemlock !== undefined) {
    parts.push(`"bytes_memlock":${p.bytesMemlock}`);
  }
  if (p.mapIds.length > 0) parts.push(`"map_ids":[${p.mapIds.join(",")}]`);
  if (p.btfId !== 0) parts.push(`"btf_id":${p.btfId}`);
  if (p.verifiedInsns !== undefined) {
    parts.push(`"verified_insns":${p.verifiedInsns}`);
  }
  return `{${parts.join(",")}}`;
}

/** The `progs` table: one row per program. */
export function programTable(programs: readonly BpfProgramInfo[]): string {
  return table(
    [
      "ID",
      "TYPE",
      "NAME",
      "TAG",
      "MAPS",
      "XLATED",
      "JITED",
      "MEMLOCK",
      "RUNS",
      "RUN_NS",
    ],
    programs.map((p) => [
      String(p.id),
      p.typeName,
      p.name,
      p.tag,
      p.mapIds.length === 0 ? "-" : p.mapIds.join(","),
      String(p.bytesXlated),
      p.jited ? String(p.bytesJited) : "no",
      p.bytesMemlock === undefined ? "-" : formatBytes(p.bytesMemlock),
      p.runCnt === undefined ? "-" : String(p.runCnt),
      p.runTimeNs === undefined ? "-" : String(p.runTimeNs),
    ]),
  );
}
