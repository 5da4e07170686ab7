/**
 * The kernel's possible-CPU count, which sizes every per-CPU value buffer.
 *
 * @module
 */

/**
 * Parses a CPU list such as `0-1` or `0-3,8-11` and returns the number of
 * slots the kernel uses: the highest CPU number plus one.
 *
 * @param text the contents of `/sys/devices/system/cpu/possible`
 * @throws {SyntaxError} when the text is not a CPU list
 */
export function parseCpuList(text: string): number {
  let highest = -1;
  const trimmed = text.trim();
  if (trimmed === "") throw new SyntaxError("Empty CPU list");
  for (const part of trimmed.split(",")) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) throw new SyntaxError(`Bad CPU list "${trimmed}" at "${part}"`);
    const last = Number(match[2] ?? match[1]);
    if (last < Number(match[1])) {
      throw new SyntaxError(`Bad CPU range "${part}"`);
    }
    highest = Math.max(highest, last);
  }
  return highest + 1;
}

let cached: number | undefined;

/** Number of possible CPUs (`/sys/devices/system/cpu/possible`), read once. */
export function possibleCpuCount(): number {
  cached ??= parseCpuList(
    Deno.readTextFileSync("/sys/devices/system/cpu/possible"),
  );
  return cached;
}
