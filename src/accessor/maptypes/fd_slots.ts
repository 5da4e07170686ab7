/**
 * Maps whose slots hold kernel objects (programs, perf events, cgroups,
 * devices, CPUs, sockets): what a lookup from user space may show of each
 * slot, or the errno it answers, per slot, so one slot the kernel will not
 * show never aborts the walk (bpftool's behaviour).
 *
 * What the kernel returns to a user-space lookup:
 * - PROG_ARRAY: the program's id (u32).
 * - DEVMAP, DEVMAP_HASH: `struct bpf_devmap_val` (ifindex, and with an
 *   8-byte value the id of the attached XDP program, 0 for none).
 * - CPUMAP: `struct bpf_cpumap_val` (qsize, and with 8 bytes the program id).
 * - SOCKMAP, SOCKHASH, REUSEPORT_SOCKARRAY: the socket cookie when the
 *   value is 8 bytes; ENOSPC for 4-byte values.
 * - PERF_EVENT_ARRAY, CGROUP_ARRAY: ENOTSUPP for every slot; XSKMAP:
 *   EOPNOTSUPP.
 *
 * @module
 */

import { MapChangedError, MapTypeError } from "../../errors.ts";
import { mapGetFdById, OpenFlag } from "../../sys/bpf.ts";
import { Errno, MapType, mapTypeName } from "../../sys/constants.ts";
import { errnoText, lookupErrno, nextKeyErrno } from "../../sys/elem.ts";
import { BpfError } from "../../sys/errors.ts";
import { progInfoById } from "../../sys/prog.ts";
import type { BpfMapInfo } from "../types.ts";

/** What a slot's value means, decoded from its bytes. */
export interface SlotObject {
  /** Program id (prog arrays; devmap/cpumap with an 8-byte value; 0 = none). */
  progId?: number;
  /** That program's name, when it still exists. */
  progName?: string;
  /** Network device index (devmap). */
  ifindex?: number;
  /** Queue size towards the CPU (cpumap). */
  qsize?: number;
  /** Socket cookie (sockmap, sockhash, reuseport array). */
  cookie?: bigint;
  /** Inner map id (maps of maps). */
  innerMapId?: number;
}

/** One slot as a user-space lookup sees it. */
export interface Slot {
  /** Key bytes. */
  key: Uint8Array;
  /** `value`: read; `empty`: nothing in the slot (ENOENT); `error`: the kernel would not show it. */
  status: "value" | "empty" | "error";
  /** The raw value bytes, when read. */
  value?: Uint8Array;
  /** The decoded value, when read. */
  object?: SlotObject;
  /** The errno of a failed lookup (ENOENT for an empty slot). */
  errno?: number;
  /** libc's text for that errno, as bpftool prints it. */
  error?: string;
}

/** Every slot of an object-holding map. */
export interface SlotDump {
  /** bpftool's name of the map type. */
  kind: string;
  /** Every key the map listed, in the kernel's order. */
  slots: Slot[];
}

/** Map types read as slots by {@linkcode readSlotsLive}. */
export const SLOT_TYPES: readonly number[] = [
  MapType.PROG_ARRAY,
  MapType.PERF_EVENT_ARRAY,
  MapType.CGROUP_ARRAY,
  MapType.DEVMAP,
  MapType.DEVMAP_HASH,
  MapType.CPUMAP,
  MapType.XSKMAP,
  MapType.SOCKMAP,
  MapType.SOCKHASH,
  MapType.REUSEPORT_SOCKARRAY,
];

/**
 * Every key of the map (GET_NEXT_KEY from the start) with its lookup result.
 * At most `max_entries + 1` keys: a hash walk restarts when its cursor key is
 * deleted, and a map changing that fast is reported, not walked forever.
 */
export function walkSlots(
  map: BpfMapInfo,
  decode: (value: Uint8Array) => SlotObject | undefined,
): Slot[] {
  using fd = mapGetFdById(map.id, OpenFlag.RDONLY);
  const slots: Slot[] = [];
  const keySize = Math.max(map.keySize, 1);
  let key: Uint8Array | null = null;
  const limit = map.maxEntries + 1;
  for (;;) {
    const next = new Uint8Array(keySize);
    const errno = nextKeyErrno(fd.fd, key, next);
    if (errno === Errno.ENOENT) break;
    if (errno !== 0) {
      throw new BpfError(4, errno, {
        action: `list the keys of map "${map.name}" (id ${map.id})`,
      });
    }
    if (slots.length >= limit) {
      throw new MapChangedError(
        map,
        `more than max_entries + 1 = ${limit} keys listed`,
      );
    }
    const value = new Uint8Array(Math.max(map.valueSize, 1));
    const lookup = lookupErrno(fd.fd, next, value);
    if (lookup === 0) {
      const object = decode(value);
      slots.push({
        key: next,
        status: "value",
        value,
        ...(object ? { object } : {}),
      });
    } else {
      slots.push({
        key: next,
        status: lookup === Errno.ENOENT ? "empty" : "error",
        errno: lookup,
        error: errnoText(lookup),
      });
    }
    key = next;
  }
  return slots;
}

function u32(value: Uint8Array, offset: number): number {
  return new DataView(value.buffer, value.byteOffset, value.byteLength)
    .getUint32(offset, true);
}

/** Names program ids once per walk: many slots often hold the same program. */
function progNamer(): (id: number) => string | undefined {
  const names = new Map<number, string | undefined>();
  return (id) => {
    if (id === 0) return undefined;
    if (!names.has(id)) {
      try {
        names.set(id, progInfoById(id)?.name);
      } catch {
        // A program freed or hidden between the lookup and here has no name to show.
        names.set(id, undefined);
      }
    }
    return names.get(id);
  };
}

function withProg(
  object: SlotObject,
  id: number,
  name: (id: number) => string | undefined,
): SlotObject {
  object.progId = id;
  const progName = name(id);
  if (progName !== undefined) object.progName = progName;
  return object;
}

/** Decodes a slot value of `map`'s type, or undefined when its bytes mean nothing more. */
export function slotDecoder(
  map: BpfMapInfo,
): (value: Uint8Array) => SlotObject | undefined {
  const name = progNamer();
  const size = map.valueSize;
  switch (map.type) {
    case MapType.PROG_ARRAY:
      return (value) => withProg({}, u32(value, 0), name);
    case MapType.DEVMAP:
    case MapType.DEVMAP_HASH:
      return (value) => {
        const object: SlotObject = { ifindex: u32(value, 0) };
        return size >= 8 ? withProg(object, u32(value, 4), name) : object;
      };
    case MapType.CPUMAP:
      return (value) => {
        const object: SlotObject = { qsize: u32(value, 0) };
        return size >= 8 ? withProg(object, u32(value, 4), name) : object;
      };
    case MapType.SOCKMAP:
    case MapType.SOCKHASH:
    case MapType.REUSEPORT_SOCKARRAY:
      return (value) =>
        size === 8
          ? {
            cookie: new DataView(value.buffer, value.byteOffset, 8)
              .getBigUint64(0, true),
          }
          : undefined;
    case MapType.ARRAY_OF_MAPS:
    case MapType.HASH_OF_MAPS:
      return (value) => ({ innerMapId: u32(value, 0) });
    default:
      return () => undefined;
  }
}

/** Every slot of a live object-holding map (see the module doc for what each type shows). */
export function readSlotsLive(map: BpfMapInfo): SlotDump {
  if (!SLOT_TYPES.includes(map.type)) {
    throw new MapTypeError(
      map,
      map.type,
      "a map of programs, perf events, cgroups, devices, CPUs or sockets",
    );
  }
  return {
    kind: String(mapTypeName(map.type)),
    slots: walkSlots(map, slotDecoder(map)),
  };
}
