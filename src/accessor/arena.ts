/**
 * Reading an arena without allocating pages.
 *
 * A user-space fault on an arena page the program never allocated makes the
 * kernel allocate it (unless BPF_F_SEGV_ON_FAULT), so mapping the arena and
 * reading it would change the map. Instead bpfmap finds processes that have
 * the arena mapped, asks /proc/PID/pagemap which of its pages are present,
 * and reads only those through /proc/PID/mem.
 *
 * @module
 */

import { pageSize } from "../sys/elem.ts";
import type { ArenaPage, ArenaPages, BpfMapInfo } from "./types.ts";

// arena pages, pagemap entries and mapping spans are in the kernel's page
// size: 16K or 64K on many arm64 hosts; asked on first use, not at import
let pageBytes = 0;
function page(): number {
  return pageBytes ||= pageSize();
}
const PRESENT = 1n << 63n;

interface ArenaMapping {
  pid: number;
  start: bigint;
  end: bigint;
}

/** bpf-map fds a process holds: map id and the bytes a mapping of it would span. */
function bpfMapFdsOf(
  pid: number,
): { mapId: number; type: number; span: bigint }[] {
  const result: { mapId: number; type: number; span: bigint }[] = [];
  let names: string[];
  try {
    names = [...Deno.readDirSync(`/proc/${pid}/fdinfo`)].map((e) => e.name);
  } catch {
    return result;
  }
  for (const name of names) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${name}`);
    } catch {
      continue;
    }
    const id = /^map_id:\s*(\d+)$/m.exec(text);
    const type = /^map_type:\s*(\d+)$/m.exec(text);
    const maxEntries = /^max_entries:\s*(\d+)$/m.exec(text);
    const valueSize = /^value_size:\s*(\d+)$/m.exec(text);
    if (!id || !type || !maxEntries || !valueSize) continue;
    const mapType = Number(type[1]);
    const entries = BigInt(maxEntries[1]!);
    // Arena: one page per entry. Arrays: round_up(value_size, 8) per entry, page aligned.
    const span = mapType === 33
      ? entries * BigInt(page())
      : roundUpPage(entries * ((BigInt(valueSize[1]!) + 7n) / 8n * 8n));
    result.push({ mapId: Number(id[1]), type: mapType, span });
  }
  return result;
}

function roundUpPage(bytes: bigint): bigint {
  const size = BigInt(page());
  return (bytes + size - 1n) / size * size;
}

/**
 * The arena's mappings in one process. /proc shows every bpf map mapping as
 * the same anon inode and map_files refuses to open it (ENXIO), so a mapping
 * is attributed to the arena when the process holds an fd of this arena and
 * the mapping spans exactly the arena's size; when another map the process
 * holds would span the same size, the mapping is ambiguous and skipped.
 */
function mappingsOf(
  pid: number,
  mapId: number,
  ambiguous: string[],
): ArenaMapping[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/maps`);
  } catch {
    return [];
  }
  if (!text.includes("anon_inode:bpf-map")) return [];
  const held = bpfMapFdsOf(pid);
  const arena = held.find((m) => m.mapId === mapId);
  if (!arena) return [];
  const rivals = new Set(
    held.filter((m) => m.mapId !== mapId && m.span === arena.span).map((m) =>
      m.mapId
    ),
  );
  const found: ArenaMapping[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes("anon_inode:bpf-map")) continue;
    const range = line.slice(0, line.indexOf(" "));
    const [startText, endText] = range.split("-");
    if (!startText || !endText) continue;
    const start = BigInt(`0x${startText}`);
    const end = BigInt(`0x${endText}`);
    if (end - start !== arena.span) continue;
    if (rivals.size > 0) {
      ambiguous.push(
        `pid ${pid} maps ${range} but also holds map id${
          rivals.size > 1 ? "s" : ""
        } ${
          [...rivals].join(", ")
        } of the same size, so the mapping cannot be attributed safely`,
      );
      continue;
    }
    found.push({ pid, start, end });
  }
  return found;
}

/** Processes (with their arena address range) that have this arena mapped. */
export function findArenaMappings(
  mapId: number,
  ambiguous: string[] = [],
): ArenaMapping[] {
  const result: ArenaMapping[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (/^\d+$/.test(entry.name)) {
      result.push(...mappingsOf(Number(entry.name), mapId, ambiguous));
    }
  }
  return result.sort((a, b) => a.pid - b.pid);
}

function readAt(file: Deno.FsFile, offset: bigint, into: Uint8Array): number {
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.length) {
    const n = file.readSync(into.subarray(done));
    if (n === null || n === 0) break;
    done += n;
  }
  return done;
}

/** Pages of `mapping` whose pagemap entry says present. */
export function presentPages(mapping: ArenaMapping): number[] {
  const size = page();
  const pages = Number((mapping.end - mapping.start) / BigInt(size));
  const entries = new Uint8Array(pages * 8);
  using file = Deno.openSync(`/proc/${mapping.pid}/pagemap`, { read: true });
  const got = readAt(file, (mapping.start / BigInt(size)) * 8n, entries);
  const view = new DataView(entries.buffer, 0, got);
  const present: number[] = [];
  for (let page = 0; page * 8 + 8 <= got; page++) {
    if (view.getBigUint64(page * 8, true) & PRESENT) present.push(page);
  }
  return present;
}

/** See the module doc: present pages only, read through /proc/PID/mem. */
export function readArenaPagesLive(map: BpfMapInfo): ArenaPages {
  const notes: string[] = [
    "Pages the BPF program allocated but no process has touched are not visible from user space.",
  ];
  const ambiguous: string[] = [];
  const mappings = findArenaMappings(map.id, ambiguous);
  notes.push(...ambiguous);
  if (mappings.length === 0) {
    notes.push(
      `No process that holds an fd of arena "${map.name}" (id ${map.id}) has it mapped, so none of its pages can be read without allocating them.`,
    );
    return { pages: [], totalPages: map.maxEntries, notes };
  }
  const byIndex = new Map<number, ArenaPage>();
  for (const mapping of mappings) {
    let present: number[];
    try {
      present = presentPages(mapping);
    } catch (error) {
      notes.push(
        `pid ${mapping.pid}: cannot read pagemap: ${(error as Error).message}`,
      );
      continue;
    }
    const missing = present.filter((page) => !byIndex.has(page));
    if (missing.length === 0) continue;
    using mem = Deno.openSync(`/proc/${mapping.pid}/mem`, { read: true });
    const size = page();
    for (const index of missing) {
      const userAddress = mapping.start + BigInt(index * size);
      const bytes = new Uint8Array(size);
      if (readAt(mem, userAddress, bytes) === size) {
        byIndex.set(index, { index, userAddress, bytes });
      }
    }
  }
  const owners = [...new Set(mappings.map((m) => m.pid))].join(", ");
  notes.push(`Read through the mapping of pid ${owners}.`);
  return {
    pages: [...byIndex.values()].sort((a, b) => a.index - b.index),
    totalPages: map.maxEntries,
    notes,
  };
}
