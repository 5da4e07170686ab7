/**
 * The pin helper: find a map by its kernel-visible name and hold it.
 *
 * @module
 */

import { BpfmapError, MapArgumentError } from "../errors.ts";
import { loadBtfById } from "../btf/load.ts";
import { recoverFullMapName } from "../btf/map_name.ts";
import {
  mapGetFdById,
  mapGetInfo,
  mapGetNextId,
  OpenFlag,
  type RawMapInfo,
} from "../sys/bpf.ts";
import { BPF_OBJ_NAME_LEN, Errno } from "../sys/constants.ts";
import { BpfError } from "../sys/errors.ts";
import type { OwnedFd } from "../sys/fd.ts";

const USABLE_NAME_LEN = BPF_OBJ_NAME_LEN - 1;

/** A map seen while looking for a name. */
export interface SeenMap {
  /** Map id. */
  id: number;
  /** Kernel-visible name. */
  name: string;
}

/**
 * No map carries the requested name. The message names every map seen, how
 * many were scanned, and the usual causes.
 */
export class MapNotFoundError extends BpfmapError {
  /** The name that was asked for. */
  readonly wanted: string;
  /** Every map seen during the walk, in id order. */
  readonly seen: readonly SeenMap[];

  /**
   * Builds the message from what the walk saw.
   *
   * @param wanted the requested name
   * @param seen the maps observed
   * @param extra a sentence to add before the causes
   */
  constructor(wanted: string, seen: readonly SeenMap[], extra = "") {
    const listed = seen.length === 0
      ? "no maps at all"
      : seen.map((m) => `${m.id}:${m.name === "" ? "(unnamed)" : m.name}`).join(
        ", ",
      );
    const close = seen.filter((m) =>
      m.name !== "" && (wanted.startsWith(m.name) || m.name.startsWith(wanted))
    );
    const closeText = close.length > 0
      ? ` Close matches: ${
        close.map((m) => `"${m.name}" (id ${m.id})`).join(", ")
      }.`
      : "";
    super(
      `No BPF map named "${wanted}" among ${seen.length} maps scanned (${listed}).${extra}${closeText} ` +
        `Likely causes: the program that creates it has not loaded yet; ` +
        `the name is longer than the ${USABLE_NAME_LEN} characters BPF_OBJ_NAME_LEN keeps, so the kernel holds a truncated form (compare with the names listed); ` +
        `or the map was already freed (its last fd, pin and program reference are gone)`,
    );
    this.wanted = wanted;
    this.seen = seen;
  }
}

/** The map matching the name was freed between enumeration and open. */
export class MapVanishedError extends MapNotFoundError {
  /** Ids that were enumerated but gone by the time they were opened. */
  readonly vanishedIds: readonly number[];

  /**
   * Builds the message naming the vanished ids.
   *
   * @param wanted the requested name
   * @param seen the maps observed
   * @param vanishedIds ids freed between BPF_MAP_GET_NEXT_ID and BPF_MAP_GET_FD_BY_ID
   */
  constructor(
    wanted: string,
    seen: readonly SeenMap[],
    vanishedIds: readonly number[],
  ) {
    super(
      wanted,
      seen,
      ` Map id${vanishedIds.length > 1 ? "s" : ""} ${
        vanishedIds.join(", ")
      } vanished between enumeration (BPF_MAP_GET_NEXT_ID) and open (BPF_MAP_GET_FD_BY_ID): ` +
        `if that was "${wanted}", it was freed just now.`,
    );
    this.vanishedIds = vanishedIds;
  }
}

/** The requested name can never match: the kernel keeps at most 15 characters. */
export class MapNameTooLongError extends MapArgumentError {
  /** The name that was asked for. */
  readonly wanted: string;
  /** What the kernel would show for it. */
  readonly truncated: string;

  /**
   * Builds the message with the truncated form, and the maps whose BTF
   * carries this full name.
   *
   * @param wanted the over-long name
   * @param recognised maps whose full BTF name equals `wanted`
   */
  constructor(wanted: string, recognised: readonly SeenMap[] = []) {
    const truncated = truncateMapName(wanted);
    const known = recognised.length > 0
      ? `. Map ${
        recognised.map((m) => `id ${m.id} ("${m.name}")`).join(", ")
      } has this full name in its BTF`
      : "";
    super(
      null,
      "name",
      `"${wanted}" is ${wanted.length} characters but the kernel keeps only ${USABLE_NAME_LEN} (BPF_OBJ_NAME_LEN is ${BPF_OBJ_NAME_LEN} with the NUL)${known}`,
      {
        hint:
          `look for "${truncated}" instead, or match the full BTF name with { match: "full" } (bpfmap find --full)`,
      },
    );
    this.wanted = wanted;
    this.truncated = truncated;
  }
}

/** The full BTF name of a map whose kernel name may be truncated, when known. */
function fullNameOf(info: RawMapInfo): string | undefined {
  if (info.btfId === 0 || info.name.length !== USABLE_NAME_LEN) {
    return undefined;
  }
  try {
    return recoverFullMapName(
      loadBtfById(info.btfId),
      info.name,
      info.btfKeyTypeId,
      info.btfValueTypeId,
      { mapType: info.type, maxEntries: info.maxEntries },
    );
  } catch {
    return undefined;
  }
}

/** Maps whose kernel name is `name` truncated and whose BTF has the full `name`. */
function mapsWithFullName(name: string): SeenMap[] {
  const truncated = truncateMapName(name);
  const found: SeenMap[] = [];
  try {
    for (let id = mapGetNextId(0); id !== null; id = mapGetNextId(id)) {
      try {
        using fd = mapGetFdById(id, OpenFlag.RDONLY);
        const info = mapGetInfo(fd.fd);
        if (info.name === truncated && fullNameOf(info) === name) {
          found.push({ id, name: info.name });
        }
      } catch {
        // Freed while we looked: nothing to suggest.
      }
    }
  } catch {
    // Without privileges the up-front message still stands.
  }
  return found;
}

/** The kernel-visible form of a map name: libbpf keeps the first 15 characters. */
export function truncateMapName(name: string): string {
  return name.slice(0, USABLE_NAME_LEN);
}

/** Options for {@linkcode openBpfMapFdByName}. */
export interface OpenByNameOptions {
  /**
   * `"kernel"` (default): the kernel-visible name must equal `name` exactly
   * (the seed's contract). `"full"`: a map also matches when its 15-character
   * kernel name is a truncation and its BTF (`.maps` VAR) has the full `name`.
   */
  match?: "kernel" | "full";
  /** Open flags for BPF_MAP_GET_FD_BY_ID (default 0: read-write). */
  openFlags?: number;
  /**
   * Called with each id after it is enumerated and before it is opened.
   * The window it marks is real; tests use it to free a map inside it.
   */
  onEnumerated?: (id: number) => void;
}

/**
 * Walks map ids in increasing order and returns an owned fd of the first
 * (lowest-id) map whose kernel-visible name equals `name`. Holding the fd
 * keeps that map alive. Never blocks or retries.
 *
 * Requires root or CAP_SYS_ADMIN and `--allow-ffi`.
 *
 * @param name the exact kernel-visible name (at most 15 characters)
 * @param options open flags and the enumeration hook
 * @returns the fd, owned by the caller (`using` closes it)
 * @throws {MapNameTooLongError} when `name` is longer than 15 characters and `match` is not `"full"`
 * @throws {MapVanishedError} when no map matched and some id was freed between enumeration and open
 * @throws {MapNotFoundError} when no map matched
 * @throws {BpfError} when bpf() fails (EPERM without privileges)
 *
 * @example Hold a scheduler's .bss across a swap
 * ```ts
 * import { openBpfMapFdByName } from "@bpfmap/bpfmap";
 * using bss = openBpfMapFdByName("sched_ex.bss");
 * // the map stays alive until this scope ends
 * ```
 */
export function openBpfMapFdByName(
  name: string,
  options: OpenByNameOptions = {},
): OwnedFd {
  const full = options.match === "full";
  if (name.length > USABLE_NAME_LEN && !full) {
    throw new MapNameTooLongError(name, mapsWithFullName(name));
  }
  if (name === "") {
    throw new MapArgumentError(null, "name", "is empty", {
      hint: "pass the kernel-visible name (bpfmap list shows them)",
    });
  }
  const seen: SeenMap[] = [];
  const vanished: number[] = [];
  for (let id = mapGetNextId(0); id !== null; id = mapGetNextId(id)) {
    options.onEnumerated?.(id);
    let fd: OwnedFd;
    try {
      fd = mapGetFdById(id, options.openFlags ?? 0);
    } catch (error) {
      if (error instanceof BpfError && error.errno === Errno.ENOENT) {
        vanished.push(id);
        continue;
      }
      throw error;
    }
    let matched = false;
    try {
      const info = mapGetInfo(fd.fd);
      seen.push({ id, name: info.name });
      matched = info.name === name || (full && fullNameOf(info) === name);
    } finally {
      if (!matched) fd.close();
    }
    if (matched) return fd;
  }
  if (vanished.length > 0) throw new MapVanishedError(name, seen, vanished);
  throw new MapNotFoundError(name, seen);
}
