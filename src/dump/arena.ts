/**
 * Following arena pointers: a map value's pointers (and `u64`s) that hold
 * an address inside a BPF arena are read from the arena's pages and
 * rendered with their pointee type, recursively, within limits.
 *
 * The pages come from the accessor's `readArenaPages`: a frozen guest has
 * every page the program allocated; the live kernel only those some
 * process has mapped (reading the rest would allocate them). A pointer
 * whose page is not visible, whose type the BTF does not give, or past a
 * limit is listed with its address and a note saying which, never an
 * error. Which slots are candidates is decided from BTF in
 * src/btf/arena_pointers.ts.
 *
 * @module
 */

import type {
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
} from "../accessor/types.ts";
import type { Btf } from "../btf/btf.ts";
import { pointerSlots, typeName } from "../btf/arena_pointers.ts";
import { cmaskLayout } from "../btf/cpumask.ts";
import { type RenderedValue, renderValue } from "../btf/render.ts";
import { BtfKind } from "../btf/kind.ts";
import { MapType } from "../sys/constants.ts";

/**
 * How to read a pointee the program's BTF only declares (`struct sdt_data;`):
 * its size and how to render its bytes, from knowledge outside the BTF.
 */
export interface DeclaredLayout {
  /** Bytes to read at the pointer. */
  size: number;
  /** The pointee's value from exactly `size` bytes. */
  render(bytes: Uint8Array): RenderedValue;
  /** What to know about the rendering (where the layout came from). */
  note?: string;
}

/** Limits of {@linkcode followArenaPointers}; each stops the walk with a note, not an error. */
export interface ArenaFollowOptions {
  /** Pointers followed through pointees (1 = only the value's own pointers). Default 3. */
  maxDepth?: number;
  /** Pointees listed per value. Default 32. */
  maxPointees?: number;
  /** Arena bytes read per value, all pointees together. Default 64 KiB. */
  maxBytes?: number;
  /**
   * Layouts of structs the BTF only declares, by name (see
   * src/dump/sdt.ts for scx_sdt's `struct sdt_data`).
   */
  declared?: (name: string) => DeclaredLayout | undefined;
}

/** One arena pointer found in a value, and what it points to. */
export interface ArenaPointee {
  /** Where the pointer is: `data`, or through pointees `root->chunk`. */
  path: string;
  /** The pointer's value (a user-space address in the arena). */
  address: bigint;
  /** The arena map's id. */
  arenaId: number;
  /** Byte offset of the address in the arena. */
  offset: number;
  /** The pointee's C type, when the BTF gives one. */
  type?: string;
  /** The pointee rendered by its type. */
  value?: RenderedValue;
  /** Why there is no value, or what to know about it. */
  note?: string;
}

/** What {@linkcode followArenaPointers} found in one value. */
export interface ArenaPointers {
  /** The pointers, breadth first, each with its pointee or a note. */
  pointees: ArenaPointee[];
  /** Set when a limit stopped the walk: which one. */
  note?: string;
}

/** One arena's address range and the pages that could be read. */
export interface ArenaSpan {
  /** The arena map. */
  readonly map: BpfMapInfo;
  /** `user_vm_start`: the address of page 0. */
  readonly start: bigint;
  /** The end of the range (`start + max_entries` pages). */
  readonly end: bigint;
  /** Bytes per page. */
  readonly pageSize: number;
  /** The arena's size in pages (`max_entries`). */
  readonly totalPages: number;
  /** The visible pages by index. */
  readonly pages: ReadonlyMap<number, Uint8Array>;
  /** Why pages may be missing (the accessor's notes), for pointer notes. */
  readonly notes: readonly string[];
}

/** Cap on the arenas a view holds: a program uses at most one; a machine has few. */
const MAX_ARENAS = 64;

/**
 * The arenas among some maps, with their readable pages, for
 * {@linkcode followArenaPointers}. Read once per dump.
 */
export class ArenaView {
  readonly #spans: ArenaSpan[];
  /** Why some arena could not be read at all (one line each). */
  readonly problems: string[];

  private constructor(spans: ArenaSpan[], problems: string[]) {
    this.#spans = spans;
    this.problems = problems;
  }

  /**
   * Reads the pages of every arena in `maps` through `accessor`. An arena
   * that cannot be read is left out, with a line in `problems`.
   *
   * @param accessor the data source
   * @param maps the maps (others than arenas are ignored)
   * @returns the view
   */
  static read(
    accessor: BpfMapAccessor,
    maps: readonly BpfMapInfo[],
  ): ArenaView {
    const spans: ArenaSpan[] = [];
    const problems: string[] = [];
    for (const map of maps) {
      if (map.type !== MapType.ARENA || spans.length >= MAX_ARENAS) continue;
      try {
        const span = spanOf(map, accessor.readArenaPages(map));
        if (span) spans.push(span);
        else {
          problems.push(
            `arena ${map.id} "${map.name}": no page visible and no fixed start address, so its pointers cannot be recognised`,
          );
        }
      } catch (error) {
        problems.push(
          `arena ${map.id} "${map.name}": ${
            error instanceof Error ? error.message : String(error)
          }`,
        );
      }
    }
    return new ArenaView(spans, problems);
  }

  /** Whether any arena is known (nothing to follow otherwise). */
  get empty(): boolean {
    return this.#spans.length === 0;
  }

  /** The pages read for arena `id`, to reuse instead of reading again. */
  pagesOf(id: number): ArenaPages | undefined {
    const span = this.#spans.find((s) => s.map.id === id);
    if (!span) return undefined;
    const pages = [...span.pages].sort((a, b) => a[0] - b[0]).map((
      [index, bytes],
    ) => ({
      index,
      userAddress: span.start + BigInt(index * span.pageSize),
      bytes,
    }));
    return { pages, totalPages: span.totalPages, notes: [...span.notes] };
  }

  /** The arena whose user range holds `address`. */
  spanAt(address: bigint): ArenaSpan | undefined {
    return this.#spans.find((s) => address >= s.start && address < s.end);
  }

  /**
   * `length` bytes at `address` of `span`, or the index of the first page
   * that is not visible (or past the arena's end, as -1).
   */
  read(
    span: ArenaSpan,
    address: bigint,
    length: number,
  ): Uint8Array | number {
    const offset = Number(address - span.start);
    if (address + BigInt(length) > span.end) return -1;
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / span.pageSize);
      const page = span.pages.get(index);
      if (!page) return index;
      const inPage = at - index * span.pageSize;
      const take = Math.min(length - done, span.pageSize - inPage);
      out.set(page.subarray(inPage, inPage + take), done);
      done += take;
    }
    return out;
  }
}

function spanOf(
  map: BpfMapInfo,
  result: ArenaPages,
): ArenaSpan | undefined {
  const first = result.pages[0];
  const pageSize = first?.bytes.byteLength ?? 4096;
  // map_extra is the fixed user_vm_start when the program set one
  // (scx_sdt: 1 << 44); otherwise any visible page says where it starts.
  const start = map.mapExtra !== 0n
    ? map.mapExtra
    : first
    ? first.userAddress - BigInt(first.index * pageSize)
    : undefined;
  if (start === undefined) return undefined;
  const pages = new Map<number, Uint8Array>();
  for (const page of result.pages) pages.set(page.index, page.bytes);
  return {
    map,
    start,
    end: start + BigInt(result.totalPages) * BigInt(pageSize),
    pageSize,
    totalPages: result.totalPages,
    pages,
    notes: result.notes,
  };
}

function u64At(bytes: Uint8Array, at: number): bigint | undefined {
  if (at < 0 || at + 8 > bytes.byteLength) return undefined;
  return new DataView(bytes.buffer, bytes.byteOffset + at, 8)
    .getBigUint64(0, true);
}

function joinPath(parent: string, child: string): string {
  if (parent === "") return child;
  if (child === "") return `*${parent}`;
  return child.startsWith("[") ? `(*${parent})${child}` : `${parent}->${child}`;
}

function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/**
 * The arena pointers in a value of type `typeId` and what they point to,
 * breadth first (a value's own pointers before its pointees'), bounded by
 * `options`: a pointee seen before is listed once more as "same as PATH";
 * a page not visible, a pointee without a type, or a limit reached gives
 * the address and a note.
 *
 * @param btf the BTF of the value
 * @param typeId the value's type
 * @param bytes the value's bytes
 * @param view the arenas
 * @param options limits
 * @returns the pointees (none when the value holds no arena pointer)
 */
export function followArenaPointers(
  btf: Btf,
  typeId: number,
  bytes: Uint8Array,
  view: ArenaView,
  options: ArenaFollowOptions = {},
): ArenaPointers {
  const maxDepth = Math.max(1, options.maxDepth ?? 3);
  const maxPointees = Math.max(1, options.maxPointees ?? 32);
  let budget = Math.max(0, options.maxBytes ?? 65536);
  const out: ArenaPointee[] = [];
  if (view.empty) return { pointees: out };
  const seen = new Map<string, string>();
  let queue: { typeId: number; bytes: Uint8Array; path: string }[] = [
    { typeId, bytes, path: "" },
  ];
  let cut = false;
  for (let depth = 0; depth < maxDepth && queue.length && !cut; depth++) {
    const next: typeof queue = [];
    for (const item of queue) {
      for (const slot of pointerSlots(btf, item.typeId)) {
        const address = u64At(item.bytes, slot.offset);
        if (address === undefined || address === 0n) continue;
        const span = view.spanAt(address);
        if (!span) continue;
        if (out.length >= maxPointees) {
          cut = true;
          break;
        }
        const path = joinPath(item.path, slot.path);
        const found: ArenaPointee = {
          path,
          address,
          arenaId: span.map.id,
          offset: Number(address - span.start),
        };
        out.push(found);
        if (slot.pointee === undefined) {
          found.note = "a u64 holding an arena address; BTF gives no type";
          continue;
        }
        found.type = typeName(btf, slot.pointee);
        if (slot.pointee === 0) {
          found.note = "points to void: BTF gives no type";
          continue;
        }
        const pointee = btf.type(btf.resolve(slot.pointee));
        const layout = pointee.kind === BtfKind.FWD
          ? options.declared?.(pointee.name)
          : undefined;
        let size: number;
        try {
          size = layout ? layout.size : btf.sizeOf(slot.pointee);
        } catch {
          size = 0;
        }
        if (size === 0) {
          found.note = `${found.type} has no size in this BTF`;
          continue;
        }
        const key = `${address}:${slot.pointee}`;
        const earlier = seen.get(key);
        if (earlier !== undefined) {
          found.note = `same as ${earlier}`;
          continue;
        }
        seen.set(key, path);
        if (size > budget) {
          found.note = `not read: over the ${
            options.maxBytes ?? 65536
          }-byte limit for one value`;
          continue;
        }
        let read = view.read(span, address, size);
        if (typeof read !== "number" && cmaskLayout(btf, slot.pointee)) {
          // A cmask's words follow its header: read what alloc_words says,
          // within the byte budget; without them the cids are unread_words.
          const words = Math.min(
            new DataView(read.buffer, read.byteOffset).getUint32(8, true),
            Math.floor((budget - size) / 8),
          );
          const whole = words > 0
            ? view.read(span, address, size + 8 * words)
            : read;
          if (typeof whole !== "number") read = whole;
        }
        if (typeof read === "number") {
          found.note = read < 0
            ? `runs past the arena's end (${size} bytes at offset ${
              hex(found.offset)
            })`
            : `page ${read} of arena ${span.map.id} is not visible${
              span.notes.length ? ` (${span.notes[0]})` : ""
            }`;
          continue;
        }
        budget -= read.byteLength;
        try {
          found.value = layout
            ? layout.render(read)
            : renderValue(btf, slot.pointee, read);
          if (layout?.note) found.note = layout.note;
        } catch (error) {
          found.note = `cannot render: ${
            error instanceof Error ? error.message : String(error)
          }`;
          continue;
        }
        next.push({ typeId: slot.pointee, bytes: read, path });
      }
      if (cut) break;
    }
    queue = next;
  }
  return cut
    ? {
      pointees: out,
      note: `stopped after ${maxPointees} arena pointers (the limit)`,
    }
    : { pointees: out };
}
