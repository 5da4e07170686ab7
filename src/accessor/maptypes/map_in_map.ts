/**
 * ARRAY_OF_MAPS and HASH_OF_MAPS: a user-space lookup returns the inner
 * map's id (u32). With `recurse`, each inner map is read in place by the
 * caller's reader; depth and revisits are bounded so a map reachable twice
 * is shown once and no chain of maps can recurse without end.
 *
 * @module
 */

import { MapTypeError } from "../../errors.ts";
import { MapType } from "../../sys/constants.ts";
import type { BpfMapInfo } from "../types.ts";
import { type Slot, slotDecoder, walkSlots } from "./fd_slots.ts";

/** One slot of a map of maps, with the inner map's contents when recursing. */
export interface InnerMapSlot<Inner> extends Slot {
  /** The inner map's id, when the slot holds one. */
  innerMapId?: number;
  /** The inner map's contents (recursive reads only). */
  inner?: Inner;
  /** Why the inner map was not read (already shown, depth reached, gone). */
  innerSkipped?: string;
}

/** Every slot of a map of maps. */
export interface MapOfMapsDump<Inner> {
  /** `"array_of_maps"` or `"hash_of_maps"`. */
  kind: "array_of_maps" | "hash_of_maps";
  /** Slots in key order; array slots without a map come back `empty`. */
  slots: InnerMapSlot<Inner>[];
}

/** Options for {@linkcode readMapOfMapsLive}. */
export interface MapOfMapsOptions<Inner> {
  /** Reads an inner map by id; absent: ids only. */
  readInner?: (id: number, depth: number) => Inner | null;
  /** How deep to follow (the outer map is depth 0). Default 4. */
  maxDepth?: number;
  /** Map ids already being shown higher up or earlier (shared across the recursion). */
  seen?: Set<number>;
  /** This map's depth. Default 0. */
  depth?: number;
}

/** Every slot of a live map of maps, inner maps read in place when `readInner` is given. */
export function readMapOfMapsLive<Inner>(
  map: BpfMapInfo,
  options: MapOfMapsOptions<Inner> = {},
): MapOfMapsDump<Inner> {
  if (map.type !== MapType.ARRAY_OF_MAPS && map.type !== MapType.HASH_OF_MAPS) {
    throw new MapTypeError(
      map,
      map.type,
      "an ARRAY_OF_MAPS or HASH_OF_MAPS map",
    );
  }
  return attachInnerMaps(map, walkSlots(map, slotDecoder(map)), options);
}

/**
 * Turns a map of maps' slots (from any backend) into its dump: each slot's
 * inner map id, and with `readInner` each inner map read once, depth- and
 * revisit-bounded.
 */
export function attachInnerMaps<Inner>(
  map: BpfMapInfo,
  slots: InnerMapSlot<Inner>[],
  options: MapOfMapsOptions<Inner> = {},
): MapOfMapsDump<Inner> {
  const depth = options.depth ?? 0;
  const maxDepth = options.maxDepth ?? 4;
  const seen = options.seen ?? new Set<number>();
  seen.add(map.id);
  for (const slot of slots) {
    const id = slot.object?.innerMapId;
    if (id === undefined) continue;
    slot.innerMapId = id;
    if (!options.readInner) continue;
    if (seen.has(id)) {
      slot.innerSkipped = `map ${id} is shown already`;
    } else if (depth + 1 > maxDepth) {
      slot.innerSkipped = `depth ${maxDepth} reached`;
    } else {
      seen.add(id);
      const inner = options.readInner(id, depth + 1);
      if (inner === null) slot.innerSkipped = `map ${id} is gone`;
      else slot.inner = inner;
    }
  }
  return {
    kind: map.type === MapType.ARRAY_OF_MAPS ? "array_of_maps" : "hash_of_maps",
    slots,
  };
}
