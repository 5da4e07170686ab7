/**
 * QUEUE and STACK: the live kernel shows only the head. LOOKUP_ELEM with a
 * NULL key peeks at it; every other element is reachable only by popping
 * (LOOKUP_AND_DELETE), which would change the map, so bpfmap never does.
 *
 * @module
 */

import { MapTypeError } from "../../errors.ts";
import { mapGetFdById, OpenFlag } from "../../sys/bpf.ts";
import { Errno, MapType } from "../../sys/constants.ts";
import { lookupErrno } from "../../sys/elem.ts";
import { BpfError } from "../../sys/errors.ts";
import type { BpfMapInfo } from "../types.ts";

/** What a peek at a queue or stack shows. */
export interface QueuePeek {
  /** `"queue"` (head = oldest) or `"stack"` (head = newest). */
  kind: "queue" | "stack";
  /** The head element's value, or null when the map is empty. */
  head: Uint8Array | null;
  /** The map's capacity; how many elements it holds is not visible. */
  maxEntries: number;
  /** Why only the head is shown (or, from guest memory, that every element is). */
  note: string;
  /**
   * Every element in pop order (`elements[0]` is the head): only guest
   * memory can show them without consuming; absent on the live backend.
   */
  elements?: Uint8Array[];
}

/** The note every peek carries: the rest cannot be read without consuming it. */
export const QUEUE_GUEST_NOTE =
  "every element, in the order pops would return them (read from memory, nothing consumed)";

/** The note a live peek carries: the rest cannot be read without consuming it. */
export const QUEUE_NOTE =
  "only the head is visible: the other elements can be read only by popping them, which would consume them";

/** Peeks at the head of a live QUEUE or STACK without removing it. */
export function peekQueueLive(map: BpfMapInfo): QueuePeek {
  if (map.type !== MapType.QUEUE && map.type !== MapType.STACK) {
    throw new MapTypeError(map, map.type, "a QUEUE or STACK map");
  }
  using fd = mapGetFdById(map.id, OpenFlag.RDONLY);
  const value = new Uint8Array(map.valueSize);
  const errno = lookupErrno(fd.fd, null, value);
  if (errno !== 0 && errno !== Errno.ENOENT) {
    throw new BpfError(1, errno, {
      action: `peek at the head of map "${map.name}" (id ${map.id})`,
    });
  }
  return {
    kind: map.type === MapType.QUEUE ? "queue" : "stack",
    head: errno === 0 ? value : null,
    maxEntries: map.maxEntries,
    note: QUEUE_NOTE,
  };
}
