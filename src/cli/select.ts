/**
 * Finding the maps a command names, through the `BpfMapAccessor` interface
 * only, so every source answers the same way.
 *
 * @module
 */

import { MapNameTooLongError, MapNotFoundError } from "../accessor/pin.ts";
import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import { BpfmapError } from "../errors.ts";
import { parseId, UsageError, type Values } from "./args.ts";

/** No map has the id asked for. */
export class NoSuchMapError extends BpfmapError {
  /** @param id the id asked for */
  constructor(id: number) {
    super(`no BPF map with id ${id}`, {
      hint: "`bpfmap list` shows the ids in use",
    });
  }
}

/** The map(s) a `--id`/`--name` selector names, lowest id first. */
export function selectMaps(
  accessor: BpfMapAccessor,
  values: Values,
  command: string,
): BpfMapInfo[] {
  if (values.id !== undefined) {
    const id = parseId(values.id as string, command);
    // MapUnreadableError (the map exists but cannot be read) passes through.
    const map = accessor.mapById(id);
    if (!map) throw new NoSuchMapError(id);
    return [map];
  }
  if (values.name !== undefined) {
    const name = values.name as string;
    const all = accessor.maps();
    const maps = all.filter((m) => m.name === name || m.fullName === name);
    if (maps.length === 0) throw notFound(name, all, true);
    return maps;
  }
  throw new UsageError("name a map with --id N or --name NAME", command);
}

/**
 * The pin helper's contract over any source: the lowest-id map whose kernel
 * name (or, with `full`, BTF full name) equals `name`.
 */
export function findByName(
  accessor: BpfMapAccessor,
  name: string,
  full: boolean,
): BpfMapInfo {
  if (name.length > 15 && !full) throw new MapNameTooLongError(name);
  const maps = accessor.maps();
  const found = maps.find((m) =>
    m.name === name || (full && m.fullName === name)
  );
  if (found) return found;
  throw notFound(name, maps, full);
}

function notFound(
  name: string,
  maps: readonly BpfMapInfo[],
  full: boolean,
): Error {
  // A long name can only have matched a full name: say it was truncated.
  if (name.length > 15 && !full) return new MapNameTooLongError(name);
  return new MapNotFoundError(
    name,
    maps.map((m) => ({ id: m.id, name: m.name })),
  );
}
