/**
 * `GuestMemMapAccessor.readTypeDump`: the guest-memory readers of
 * `src/guest/maptypes/` turned into the same `TypeDump` results the live
 * readers return, so the CLI, the failure dump and callers never ask which
 * backend they hold. Where bpf() shows less than memory holds (a queue's
 * tail, a bloom filter's bits) the extra is in optional fields; where bpf()
 * refuses a lookup (perf event and cgroup arrays) the guest reports the same
 * per-slot error, so both backends agree.
 *
 * @module
 */

import { Btf } from "../btf/mod.ts";
import type { GuestMapRecord } from "../guest/map_records.ts";
import {
  guestBloomContains as bitsContain,
  readGuestBloom,
} from "../guest/maptypes/bloom.ts";
import {
  MapArgumentError,
  MapTypeError,
  MapUnreadableError,
} from "../errors.ts";
import { objectBehind, readGuestFdArray } from "../guest/maptypes/fd_arrays.ts";
import {
  type MapTypeLayouts,
  mapTypeLayoutsFromBtf,
} from "../guest/maptypes/layout.ts";
import {
  bpfKsymLayoutFromBtf,
  readBpfKsyms,
} from "../guest/maptypes/bpf_ksyms.ts";
import { readGuestLpm } from "../guest/maptypes/lpm.ts";
import {
  type GuestDeviceSlot,
  readGuestCpumap,
  readGuestDevmap,
  readGuestDevmapHash,
} from "../guest/maptypes/net_devices.ts";
import {
  type GuestSocketSlot,
  readGuestReuseportArray,
  readGuestSockhash,
  readGuestSockmap,
} from "../guest/maptypes/sockets.ts";
import { readGuestQueueStack } from "../guest/maptypes/queue_stack.ts";
import { readGuestRingbuf } from "../guest/maptypes/ringbuf.ts";
import { readGuestStacks } from "../guest/maptypes/stack_trace.ts";
import { Errno, MapFlag, MapType, mapTypeName } from "../sys/constants.ts";
import { errnoText } from "../sys/elem.ts";
import { BLOOM_NOTE, type BloomInfo } from "./maptypes/bloom.ts";
import type { Slot, SlotObject } from "./maptypes/fd_slots.ts";
import { KernelSymbols } from "./maptypes/kallsyms.ts";
import { attachInnerMaps, type InnerMapSlot } from "./maptypes/map_in_map.ts";
import {
  copyKeyedInner,
  type InnerMap,
  type KeyedEntries,
  type TypeDump,
  type TypeReadOptions,
  unknownTypeReason,
} from "./maptypes/mod.ts";
import { QUEUE_GUEST_NOTE } from "./maptypes/queue_stack.ts";
import { parsePendingSpan } from "./maptypes/ringbuf.ts";
import { structOpsDumpFromValue } from "./maptypes/struct_ops.ts";
import { decodeFrames } from "./maptypes/stack_trace.ts";
import type { BpfMapInfo } from "./types.ts";
import type { GuestMemMapAccessor } from "./guest.ts";

/** What one accessor's type readers keep between calls. */
interface GuestTypeState {
  layouts: MapTypeLayouts;
  btf?: Btf;
  symbols?: KernelSymbols;
}

const NO_LAYOUTS: MapTypeLayouts = {
  ringbuf: null,
  queueStack: null,
  bloom: null,
  lpm: null,
  stackMap: null,
  fdArray: null,
  devmap: null,
  cpumap: null,
  socketMap: null,
};

// Per accessor, without a field on the class (its constructor is shared
// with other work); dropped with the accessor.
const states = new WeakMap<GuestMemMapAccessor, GuestTypeState>();

function stateOf(accessor: GuestMemMapAccessor): GuestTypeState {
  let state = states.get(accessor);
  if (!state) {
    let layouts = NO_LAYOUTS;
    let btf: Btf | undefined;
    try {
      btf = Btf.parse(accessor.kernel.btfBytes());
      layouts = mapTypeLayoutsFromBtf(btf);
    } catch {
      // an image opened with a caller-supplied layout may carry no BTF:
      // every type below then reports itself unreadable, with the reason
    }
    state = btf ? { layouts, btf } : { layouts };
    states.set(accessor, state);
  }
  return state;
}

/**
 * Offsets for the type readers when the image has no vmlinux BTF (synthetic
 * test images).
 *
 * @internal
 */
export function setGuestTypeLayouts(
  accessor: GuestMemMapAccessor,
  layouts: MapTypeLayouts,
): void {
  states.set(accessor, { layouts });
}

function symbolsOf(
  accessor: GuestMemMapAccessor,
  state: GuestTypeState,
): KernelSymbols | undefined {
  if (state.symbols === undefined) {
    try {
      state.symbols = KernelSymbols.fromSymbols(
        accessor.kernel.kallsyms().all(),
      );
    } catch {
      return undefined; // frames stay raw addresses: still the same bytes as bpf()
    }
  }
  // programs come and go while the guest runs: their symbols are read
  // afresh each time (a short list), the image's table once
  return state.symbols.with(jitSymbols(accessor, state.btf));
}

/** BPF programs' own symbols, which /proc/kallsyms lists and the image's tables lack. */
function jitSymbols(
  accessor: GuestMemMapAccessor,
  btf: Btf | undefined,
): { address: bigint; type: string; name: string }[] {
  try {
    const head = accessor.kernel.findSymbol("bpf_kallsyms");
    const layout = btf ? bpfKsymLayoutFromBtf(btf) : null;
    if (head === undefined || layout === null) return [];
    return readBpfKsyms(accessor.kernel.space, layout, head);
  } catch {
    return []; // frames in BPF programs then stay unnamed
  }
}

function unreadable(type: number, reason: string): TypeDump {
  return { reader: "unreadable", unreadable: { type, reason } };
}

function missing(type: number, struct: string): TypeDump {
  return unreadable(
    type,
    `map type ${
      mapTypeName(type)
    } (${type}): the guest's BTF has no ${struct}, so its contents are not readable from memory`,
  );
}

function indexKey(index: number): Uint8Array {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, index, true);
  return key;
}

function errorSlot(key: Uint8Array, errno: number): Slot {
  return { key, status: "error", errno, error: errnoText(errno) };
}

function emptySlot(key: Uint8Array): Slot {
  return {
    key,
    status: "empty",
    errno: Errno.ENOENT,
    error: errnoText(Errno.ENOENT),
  };
}

/** Types whose every slot bpf() refuses from user space, with the errno it answers. */
const REFUSED_SLOTS = new Map<number, number>([
  [MapType.PERF_EVENT_ARRAY, Errno.ENOTSUPP],
  [MapType.CGROUP_ARRAY, Errno.ENOTSUPP],
  [MapType.XSKMAP, Errno.EOPNOTSUPP],
]);

/**
 * A device or CPU map slot as a lookup shows it: the value bytes, the
 * ifindex or qsize in front, and with an 8-byte value the program id and,
 * when one is attached, its name (read through the element's program
 * pointer, as the live reader names it by id).
 */
function deviceSlot(
  accessor: GuestMemMapAccessor,
  layouts: MapTypeLayouts,
  slot: GuestDeviceSlot,
  first: "ifindex" | "qsize",
): Slot {
  const key = indexKey(slot.key);
  if (slot.value === null) return emptySlot(key);
  const view = new DataView(
    slot.value.buffer,
    slot.value.byteOffset,
    slot.value.byteLength,
  );
  const object: SlotObject = { [first]: view.getUint32(0, true) };
  if (slot.value.byteLength >= 8) {
    object.progId = view.getUint32(4, true);
    if (object.progId !== 0 && slot.program !== 0n && layouts.fdArray) {
      const { name } = objectBehind(
        accessor.kernel.space,
        layouts.fdArray,
        slot.program,
        "prog",
      );
      if (name !== undefined) object.progName = name;
    }
  }
  return { key, status: "value", value: slot.value, object };
}

/** A socket map slot as a lookup shows it: the cookie, or ENOSPC for 4-byte values. */
function socketSlot(record: GuestMapRecord, slot: GuestSocketSlot): Slot {
  if (record.valueSize !== 8) return errorSlot(slot.key, Errno.ENOSPC);
  if (slot.socket === 0n) return emptySlot(slot.key);
  const value = new Uint8Array(8);
  new DataView(value.buffer).setBigUint64(0, slot.cookie, true);
  return {
    key: slot.key,
    status: "value",
    value,
    object: { cookie: slot.cookie },
  };
}

/** Every LPM trie entry as keyed entries (the keyed path's shape). */
function lpmEntries(
  accessor: GuestMemMapAccessor,
  layouts: MapTypeLayouts,
  record: GuestMapRecord,
): KeyedEntries | null {
  if (!layouts.lpm) return null;
  return {
    entries: readGuestLpm(accessor.kernel.space, layouts.lpm, record),
    omitted: 0,
  };
}

/**
 * Reads `map` (whose record is `record`) through its guest type reader.
 * Null for the types the accessor's keyed methods read; an `unreadable`
 * result for a type with no guest reader or whose structs the guest's BTF
 * lacks. LPM tries come back as `keyed` entries when `options.keyedEntries`
 * asks (the keyed paths read them from here), else null like other keyed
 * types.
 */
export function readGuestTypeDump(
  accessor: GuestMemMapAccessor,
  record: GuestMapRecord,
  map: BpfMapInfo,
  options: TypeReadOptions = {},
  depth = 0,
): TypeDump | null {
  const state = stateOf(accessor);
  const { layouts } = state;
  const space = accessor.kernel.space;
  const type = record.type;
  switch (type) {
    case MapType.RINGBUF:
    case MapType.USER_RINGBUF: {
      if (!layouts.ringbuf) return missing(type, "struct bpf_ringbuf");
      const ring = readGuestRingbuf(space, layouts.ringbuf, record);
      // the pending span is already a copy of its own: it becomes the
      // snapshot's span without another copy
      return {
        reader: "ringbuf",
        ringbuf: parsePendingSpan(
          type === MapType.RINGBUF ? "ringbuf" : "user_ringbuf",
          ring.consumerPos,
          ring.producerPos,
          ring.capacity,
          ring.pending,
        ),
      };
    }
    case MapType.QUEUE:
    case MapType.STACK: {
      if (!layouts.queueStack) return missing(type, "struct bpf_queue_stack");
      const stack = type === MapType.STACK;
      const elements = readGuestQueueStack(
        space,
        layouts.queueStack,
        record,
        stack,
      );
      return {
        reader: "queue",
        queue: {
          kind: stack ? "stack" : "queue",
          head: elements[0] ?? null,
          maxEntries: record.maxEntries,
          note: QUEUE_GUEST_NOTE,
          elements,
        },
      };
    }
    case MapType.BLOOM_FILTER: {
      if (!layouts.bloom) return missing(type, "struct bpf_bloom_filter");
      const bloom = readGuestBloom(space, layouts.bloom, record);
      const info: BloomInfo = {
        kind: "bloom_filter",
        hashes: Number(record.mapExtra & 0xfn),
        valueSize: record.valueSize,
        note: BLOOM_NOTE,
        bits: bloom.bits,
        bitsSet: bloom.bitsSet,
      };
      return { reader: "bloom", bloom: info };
    }
    case MapType.LPM_TRIE: {
      // a keyed type: dumps list it through iterEntryBatches, which asks here
      if (!options.keyedEntries) return null;
      const keyed = lpmEntries(accessor, layouts, record);
      return keyed === null
        ? missing(type, "struct lpm_trie")
        : { reader: "keyed", keyed };
    }
    case MapType.STACK_TRACE: {
      if (!layouts.stackMap) return missing(type, "struct bpf_stack_map");
      const buildId = (record.flags & MapFlag.STACK_BUILD_ID) !== 0;
      const { stacks, errors } = readGuestStacks(
        space,
        layouts.stackMap,
        record,
        buildId ? 32 : 8,
      );
      const symbols = options.symbols ?? symbolsOf(accessor, state);
      return {
        reader: "stack_trace",
        stacks: {
          kind: "stack_trace",
          buildId,
          stacks: stacks.map((s) => ({
            id: s.id,
            frames: decodeFrames(s.value, buildId, symbols),
            value: s.value,
          })),
          errors,
        },
      };
    }
    case MapType.PROG_ARRAY: {
      if (!layouts.fdArray) return missing(type, "struct bpf_array.ptrs");
      const slots = readGuestFdArray(space, layouts.fdArray, record, "prog")
        .map((s): Slot => {
          const key = indexKey(s.index);
          if (s.id === undefined) return emptySlot(key);
          return {
            key,
            status: "value",
            value: indexKey(s.id),
            object: {
              progId: s.id,
              ...(s.name !== undefined ? { progName: s.name } : {}),
            },
          };
        });
      return {
        reader: "slots",
        slots: { kind: String(mapTypeName(type)), slots },
      };
    }
    case MapType.DEVMAP:
    case MapType.DEVMAP_HASH:
    case MapType.CPUMAP: {
      const cpumap = type === MapType.CPUMAP;
      let raw: GuestDeviceSlot[];
      if (cpumap) {
        if (!layouts.cpumap) return missing(type, "struct bpf_cpu_map");
        raw = readGuestCpumap(space, layouts.cpumap, record);
      } else {
        if (!layouts.devmap) return missing(type, "struct bpf_dtab");
        raw = type === MapType.DEVMAP
          ? readGuestDevmap(space, layouts.devmap, record)
          : readGuestDevmapHash(space, layouts.devmap, record);
      }
      return {
        reader: "slots",
        slots: {
          kind: String(mapTypeName(type)),
          slots: raw.map((s) =>
            deviceSlot(accessor, layouts, s, cpumap ? "qsize" : "ifindex")
          ),
        },
      };
    }
    case MapType.SOCKMAP:
    case MapType.SOCKHASH:
    case MapType.REUSEPORT_SOCKARRAY: {
      const layout = layouts.socketMap;
      if (!layout) return missing(type, "struct bpf_stab");
      const raw = type === MapType.SOCKMAP
        ? readGuestSockmap(space, layout, record)
        : type === MapType.SOCKHASH
        ? readGuestSockhash(space, layout, record)
        : readGuestReuseportArray(space, layout, record);
      return {
        reader: "slots",
        slots: {
          kind: String(mapTypeName(type)),
          slots: raw.map((s) => socketSlot(record, s)),
        },
      };
    }
    case MapType.ARRAY_OF_MAPS:
    case MapType.HASH_OF_MAPS: {
      if (!layouts.fdArray) return missing(type, "struct bpf_array.ptrs");
      const slots: InnerMapSlot<InnerMap>[] = [];
      const toSlot = (key: Uint8Array, id: number): InnerMapSlot<InnerMap> => ({
        key,
        status: "value",
        value: indexKey(id),
        object: { innerMapId: id },
      });
      if (type === MapType.ARRAY_OF_MAPS) {
        for (
          const s of readGuestFdArray(space, layouts.fdArray, record, "map")
        ) {
          const key = indexKey(s.index);
          slots.push(s.id === undefined ? emptySlot(key) : toSlot(key, s.id));
        }
      } else {
        // The elements of a hash of maps are those of a plain hash whose
        // value is the 8-byte `struct bpf_map *` (`fd_htab_map_get_ptr`):
        // walk it with the hash walker, read as such.
        const asHash = { ...record, type: MapType.HASH, valueSize: 8 };
        const layout = layouts.fdArray;
        for (const { key, value } of accessor.reader.iterHash(asHash)) {
          const pointer = new DataView(
            value.buffer,
            value.byteOffset,
            8,
          ).getBigUint64(0, true);
          const copy = key.slice();
          slots.push(
            toSlot(copy, objectBehind(space, layout, pointer, "map").id),
          );
        }
      }
      return {
        reader: "maps_of_maps",
        mapsOfMaps: attachInnerMaps<InnerMap>(map, slots, {
          depth,
          ...(options.maxDepth !== undefined
            ? { maxDepth: options.maxDepth }
            : {}),
          ...(options.recurse
            ? {
              readInner: (id, innerDepth) =>
                readGuestInner(accessor, id, options, innerDepth),
            }
            : {}),
        }),
      };
    }
    case MapType.STRUCT_OPS: {
      // The value bpf() would return, typed with the guest's vmlinux BTF
      // exactly as the live reader types it (callbacks as program ids and
      // names from the guest's prog_idr).
      if (!state.btf) return missing(type, "readable vmlinux BTF");
      const value = accessor.readValue(map, 0, map.valueSize);
      if (value === null) return missing(type, "struct bpf_struct_ops_map");
      const names = new Map(
        accessor.programs().map((program) => [program.id, program.name]),
      );
      return {
        reader: "struct_ops",
        structOps: structOpsDumpFromValue(
          state.btf,
          map,
          value.slice(),
          (progId) => names.get(progId),
        ),
      };
    }
  }
  const refused = REFUSED_SLOTS.get(type);
  if (refused !== undefined) {
    const slots: Slot[] = [];
    for (let i = 0; i < record.maxEntries; i++) {
      slots.push(errorSlot(indexKey(i), refused));
    }
    return {
      reader: "slots",
      slots: { kind: String(mapTypeName(type)), slots },
    };
  }
  return null;
}

/** Types the guest backend reads through its keyed methods (`readTypeDump` returns null). */
export const GUEST_KEYED_TYPES: ReadonlySet<number> = new Set([
  MapType.LPM_TRIE,
  MapType.HASH,
  MapType.ARRAY,
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.CGROUP_STORAGE,
  MapType.PERCPU_CGROUP_STORAGE,
  MapType.SK_STORAGE,
  MapType.INODE_STORAGE,
  MapType.TASK_STORAGE,
  MapType.CGRP_STORAGE,
  MapType.ARENA,
]);

/**
 * The whole of `readTypeDump` on the guest: the type readers above, null
 * for keyed types, and for the rest (types bpfmap does not know) an
 * `unreadable` result saying so.
 */
export function guestTypeDump(
  accessor: GuestMemMapAccessor,
  record: GuestMapRecord,
  map: BpfMapInfo,
  options: TypeReadOptions = {},
  depth = 0,
): TypeDump | null {
  const dump = readGuestTypeDump(accessor, record, map, options, depth);
  if (dump !== null) return dump;
  if (GUEST_KEYED_TYPES.has(record.type)) return null;
  const name = mapTypeName(record.type);
  return unreadable(
    record.type,
    typeof name === "number"
      ? unknownTypeReason(record.type)
      : `map type ${name} (${record.type}) is not read from guest memory yet`,
  );
}

function readGuestInner(
  accessor: GuestMemMapAccessor,
  id: number,
  options: TypeReadOptions,
  depth: number,
): InnerMap | null {
  const map = accessor.mapById(id);
  if (map === null || map.kernelAddress === undefined) return null;
  // straight to the reader (not readTypeDump) so the depth carries on down
  const record = accessor.reader.readMap(map.kernelAddress);
  const typed = guestTypeDump(accessor, record, map, options, depth);
  if (typed !== null) return { map, dump: typed };
  return {
    map,
    dump: { reader: "keyed", keyed: copyKeyedInner(accessor, map, options) },
  };
}

/**
 * Whether `value` may be in the guest bloom filter `map`, answered from its
 * bits and seed as the guest kernel would (`bloom_map_peek_elem`).
 *
 * @throws {MapTypeError} when `map` is not a bloom filter
 * @throws {MapArgumentError} when `value` is not `value_size` bytes
 */
export function guestBloomContains(
  accessor: GuestMemMapAccessor,
  map: BpfMapInfo,
  value: Uint8Array,
): boolean {
  if (map.type !== MapType.BLOOM_FILTER) {
    throw new MapTypeError(map, map.type, "a BLOOM_FILTER map");
  }
  if (value.byteLength !== map.valueSize) {
    throw new MapArgumentError(
      map,
      "value",
      `is ${value.byteLength} bytes but the value size is ${map.valueSize}`,
    );
  }
  const layout = stateOf(accessor).layouts.bloom;
  if (!layout || map.kernelAddress === undefined) {
    throw new MapUnreadableError(
      map,
      "the guest's BTF has no struct bpf_bloom_filter",
    );
  }
  const record = accessor.reader.readMap(map.kernelAddress);
  return bitsContain(
    readGuestBloom(accessor.kernel.space, layout, record),
    value,
  );
}
