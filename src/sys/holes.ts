/**
 * Where a sparse file holds data: lseek(2) SEEK_DATA/SEEK_HOLE, so a reader
 * of a guest RAM file (tmpfs keeps untouched guest pages as holes) can skip
 * gigabytes of zeros without reading them.
 *
 * @module
 */

import { getLibc, lastErrno } from "./ffi.ts";

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

/** One run of a file that may hold data: `[start, end)` in bytes. */
export interface DataRun {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
}

/**
 * The runs of `[start, end)` of the file behind `fd` that hold data, in
 * order, at most `maxRuns` (the rest merged into the last run). A file system
 * without SEEK_DATA support reports the whole range as one run.
 *
 * @example
 * ```ts ignore
 * using file = openReadOnly("/dev/shm/guest-ram");
 * console.log(dataRuns(file.fd, 0, Deno.statSync("/dev/shm/guest-ram").size));
 * ```
 */
export function dataRuns(
  fd: number,
  start: number,
  end: number,
  maxRuns = 1 << 16,
): DataRun[] {
  const libc = getLibc();
  const runs: DataRun[] = [];
  let at = start;
  while (at < end) {
    const data = Number(libc.lseek(fd, BigInt(at), SEEK_DATA));
    if (data < 0) {
      // ENXIO: no data at or after `at`; anything else: no hole support
      if (lastErrno() === ENXIO) break;
      return [{ start: at, end }];
    }
    if (data >= end) break;
    const hole = Number(libc.lseek(fd, BigInt(data), SEEK_HOLE));
    const runEnd = hole < 0 ? end : Math.min(hole, end);
    if (runs.length + 1 >= maxRuns) {
      runs.push({ start: data, end });
      break;
    }
    runs.push({ start: data, end: runEnd });
    at = runEnd;
  }
  return runs;
}
