/**
 * The kernel's possible-CPU count, which sizes every per-CPU value buffer.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";

/**
 * Parses a CPU list such as `0-1` or `0-3,8-11` and returns the number of
 * slots the kernel uses: the highest CPU number plus one.
 *
 * @param text the contents of `/sys/devices/system/cpu/possible`
 * @param source where the text came from, for messages
 * @throws {BpfmapError} when the text is not a CPU list
 */
export function parseCpuList(
  text: string,
  source = "the CPU list",
): number {
  const fix = {
    hint:
      "expected the kernel's format, e.g. 0-3,8-11 (check /sys/devices/system/cpu/possible)",
  };
  let highest = -1;
  const trimmed = text.trim();
  if (trimmed === "") throw new BpfmapError(`Empty CPU list in ${source}`, fix);
  for (const part of trimmed.split(",")) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) {
      throw new BpfmapError(
        `Bad CPU list "${trimmed}" at "${part}" in ${source}`,
        fix,
      );
    }
    const last = Number(match[2] ?? match[1]);
    if (last < Number(match[1])) {
      throw new BpfmapError(`Bad CPU range "${part}" in ${source}`, fix);
    }
    highest = Math.max(highest, last);
  }
  return highest + 1;
}

let cached: number | undefined;

/** Number of possible CPUs (`/sys/devices/system/cpu/possible`), read once. */
export function possibleCpuCount(): number {
  const path = "/sys/devices/system/cpu/possible";
  cached ??= parseCpuList(Deno.readTextFileSync(path), path);
  return cached;
}
