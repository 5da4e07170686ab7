/**
 * Compares what the guest agent read through bpf() (console JSON) with what
 * `GuestMemMapAccessor` reads from the frozen guest's RAM, byte for byte.
 *
 * @module
 */

import { Btf } from "../../src/btf/mod.ts";
import { MapArgumentError } from "../../src/errors.ts";
import type { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import type { BpfMapInfo } from "../../src/accessor/types.ts";

/** Counts of what was compared, and every difference found. */
export interface Comparison {
  /** Maps compared (metadata and contents). */
  maps: number;
  /** Keys / indexes / elements compared. */
  keys: number;
  /** Per-CPU values compared (including the null ones beyond the guest's CPUs). */
  cpuValues: number;
  /** Arena pages compared. */
  pages: number;
  /** Local-storage elements compared (also counted in `keys`). */
  storageElements: number;
  /** Arena pages present in guest memory but in no process's page tables (not visible to bpf()). */
  pagesOnlyInMemory: number;
  /** Bytes compared. */
  bytes: number;
  /**
   * Task storage elements of `threadsMayExit`'s threads that bpf() read and
   * that were gone by the freeze: threads that exited in between.
   */
  exitedThreads: number;
  /** Human-readable differences; empty when everything matched. */
  mismatches: string[];
}

interface AgentMap {
  kind: string;
  meta: Record<string, unknown>;
  data: unknown;
}

const hexOf = (b: Uint8Array | null | undefined): string | null =>
  b === null || b === undefined
    ? null
    : Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** Every `BPFMAP-MAP {...}` line of the console (or lines with another tag). */
export function agentMaps(consoleText: string, tag = "MAP"): AgentMap[] {
  const prefix = `BPFMAP-${tag} `;
  return consoleText.split("\n").filter((l) => l.startsWith(prefix)).map(
    (l) => JSON.parse(l.slice(prefix.length).trim()) as AgentMap,
  );
}

/** The `BPFMAP-<tag> {...}` line of the console, parsed. */
export function agentLine(
  consoleText: string,
  tag: string,
): Record<string, unknown> {
  const line = consoleText.split("\n").find((l) =>
    l.startsWith(`BPFMAP-${tag} `)
  );
  if (!line) throw new Error(`No BPFMAP-${tag} line on the guest console`);
  return JSON.parse(line.slice(tag.length + 8).trim()) as Record<
    string,
    unknown
  >;
}

/**
 * Compares every agent map with the guest-memory reading.
 *
 * @param consoleText the guest console
 * @param guest an accessor over the frozen guest's RAM
 * @param lineTag the agent's line tag (`BPFMAP-<lineTag> {...}`)
 */
export function compareGuest(
  consoleText: string,
  guest: GuestMemMapAccessor,
  lineTag = "MAP",
  options: {
    /** A process whose idle threads may exit between bpf()'s read and the freeze. */
    threadsMayExit?: number;
  } = {},
): Comparison {
  const result: Comparison = {
    maps: 0,
    keys: 0,
    cpuValues: 0,
    pages: 0,
    storageElements: 0,
    pagesOnlyInMemory: 0,
    bytes: 0,
    exitedThreads: 0,
    mismatches: [],
  };
  const bad = (m: string): void => {
    result.mismatches.push(m);
  };
  const same = (
    what: string,
    live: string | null | undefined,
    mem: string | null | undefined,
  ): void => {
    if ((live ?? null) !== (mem ?? null)) {
      bad(`${what}: live ${live?.slice(0, 64)} vs memory ${mem?.slice(0, 64)}`);
    } else if (live) result.bytes += live.length / 2;
  };
  const maps = guest.maps();
  const byId = new Map(maps.map((m) => [m.id, m]));
  const cpus = guest.cpuCount;
  for (const agent of agentMaps(consoleText, lineTag)) {
    const id = agent.meta.id as number;
    const info = byId.get(id);
    const tag = `map ${id} ${agent.meta.name} (${agent.kind})`;
    if (!info) {
      bad(`${tag}: not found in guest memory`);
      continue;
    }
    result.maps++;
    const memMeta: Record<string, unknown> = {
      ...info,
      mapExtra: String(info.mapExtra),
    };
    for (const [key, value] of Object.entries(agent.meta)) {
      if (memMeta[key] !== value) {
        bad(`${tag}: ${key} live ${value} vs memory ${memMeta[key]}`);
      }
    }
    try {
      compareContents(
        agent,
        info,
        guest,
        cpus,
        result,
        same,
        bad,
        tag,
        options,
      );
    } catch (error) {
      bad(`${tag}: ${(error as Error).message}`);
    }
  }
  return result;
}

/** Task storage read from guest memory, keyed by the owner task's pid. */
function storageByPid(
  guest: GuestMemMapAccessor,
  info: BpfMapInfo,
): Map<number, string> {
  const btf = Btf.parse(guest.kernel.btfBytes());
  const pidOffset = BigInt(btf.memberOffset("task_struct", "pid").offset);
  const mem = new Map<number, string>();
  for (const e of guest.iterTaskStorage(info)) {
    const owner = new DataView(e.key.buffer, e.key.byteOffset, 8)
      .getBigUint64(0, true);
    mem.set(
      guest.kernel.space.mustU32(owner + pidOffset, "task_struct.pid"),
      hexOf(e.value)!,
    );
  }
  return mem;
}

function compareContents(
  agent: AgentMap,
  info: BpfMapInfo,
  guest: GuestMemMapAccessor,
  cpus: number,
  result: Comparison,
  same: (
    what: string,
    live: string | null | undefined,
    mem: string | null | undefined,
  ) => void,
  bad: (m: string) => void,
  tag: string,
  options: { threadsMayExit?: number },
): void {
  switch (agent.kind) {
    case "array": {
      const live = agent.data as (string | null)[];
      live.forEach((v, i) => {
        result.keys++;
        same(`${tag} key ${i}`, v, hexOf(guest.readArray(info, i)));
      });
      // both backends refuse an index past the end (one set of argument checks)
      let refused = false;
      try {
        guest.readArray(info, info.maxEntries);
      } catch (error) {
        refused = error instanceof MapArgumentError;
      }
      if (!refused) bad(`${tag}: key max_entries is not refused`);
      break;
    }
    case "global": {
      const d = agent.data as {
        value: string;
        part: string;
        btf: string | null;
      };
      result.keys++;
      same(
        `${tag} value`,
        d.value,
        hexOf(guest.readValue(info, 0, info.valueSize)),
      );
      same(`${tag} value[4..12]`, d.part, hexOf(guest.readValue(info, 4, 8)));
      same(`${tag} program BTF`, d.btf, hexOf(guest.loadProgramBtfBytes(info)));
      break;
    }
    case "percpu_array": {
      const live = agent.data as (string | null)[][];
      live.forEach((values, i) => {
        result.keys++;
        const mem = guest.readPercpuArray(info, i, values.length);
        values.forEach((v, cpu) => {
          result.cpuValues++;
          same(`${tag} key ${i} cpu ${cpu}`, v, hexOf(mem?.[cpu]));
        });
      });
      break;
    }
    case "hash": {
      const live = new Map(agent.data as [string, string][]);
      const mem = new Map(
        [...guest.iterHashMap(info)].map((
          e,
        ) => [hexOf(e.key)!, hexOf(e.value)!]),
      );
      if (live.size !== mem.size) {
        bad(`${tag}: live has ${live.size} entries, memory ${mem.size}`);
      }
      for (const [k, v] of live) {
        result.keys++;
        same(`${tag} key ${k}`, v, mem.get(k));
      }
      break;
    }
    case "percpu_hash": {
      const live = new Map(agent.data as [string, (string | null)[]][]);
      const width = cpus + 2;
      const mem = new Map(
        [...guest.iterPercpuHashMap(info, width)].map((
          e,
        ) => [hexOf(e.key)!, e.values.map(hexOf)]),
      );
      if (live.size !== mem.size) {
        bad(`${tag}: live has ${live.size} entries, memory ${mem.size}`);
      }
      for (const [k, values] of live) {
        result.keys++;
        const memValues = mem.get(k);
        values.forEach((v, cpu) => {
          result.cpuValues++;
          same(`${tag} key ${k} cpu ${cpu}`, v, memValues?.[cpu]);
        });
        for (let cpu = values.length; cpu < width; cpu++) {
          result.cpuValues++;
          if (memValues?.[cpu] !== null) {
            bad(`${tag} key ${k}: CPU ${cpu} beyond nr_cpu_ids is not null`);
          }
        }
      }
      break;
    }
    case "task_storage": {
      const d = agent.data as {
        expected: [number, string][];
        live: [number, string][];
      };
      const mem = storageByPid(guest, info);
      const live = new Map(d.live);
      if (live.size !== mem.size) {
        bad(`${tag}: live has ${live.size} owners, memory ${mem.size}`);
      }
      for (const [pid, v] of d.expected) {
        result.keys++;
        same(`${tag} pid ${pid} (live)`, v, live.get(pid));
        same(`${tag} pid ${pid} (memory)`, v, mem.get(pid));
      }
      break;
    }
    case "arena": {
      const d = agent.data as {
        userStart: string;
        pageSize?: number;
        expected: [number, string][];
        live: [number, string, string][];
      };
      const stride = BigInt(d.pageSize ?? 4096);
      const mem = guest.readArenaPages(info);
      const memPages = new Map(mem.pages.map((p) => [p.index, p]));
      const expected = new Map(d.expected);
      if (memPages.size !== expected.size) {
        bad(
          `${tag}: memory shows pages ${[...memPages.keys()]}, agent touched ${[
            ...expected.keys(),
          ]}`,
        );
      }
      for (const [index, v] of expected) {
        result.pages++;
        const page = memPages.get(index);
        same(`${tag} page ${index}`, v, hexOf(page?.bytes));
        if (
          page &&
          page.userAddress !== BigInt(d.userStart) + BigInt(index) * stride
        ) {
          bad(
            `${tag} page ${index}: user address ${page.userAddress} vs ${
              BigInt(d.userStart) + BigInt(index) * stride
            }`,
          );
        }
      }
      for (const [index, , v] of d.live) {
        same(`${tag} live page ${index}`, v, hexOf(memPages.get(index)?.bytes));
      }
      break;
    }
    case "task_storage_all": {
      // Live: every thread /proc lists, by tid. Memory: every element, by the
      // owner task_struct's pid. Both must name the same tasks.
      const rows = agent.data as [number, string, string?, number?][];
      const names = new Map(rows.map(([pid, , comm]) => [pid, comm ?? "?"]));
      const mem = storageByPid(guest, info);
      const exited = rows.filter(([pid, , , tgid]) =>
        !mem.has(pid) && options.threadsMayExit !== undefined &&
        tgid === options.threadsMayExit
      ).map(([pid]) => pid);
      result.exitedThreads += exited.length;
      const live = new Map(
        rows.filter(([pid]) => !exited.includes(pid)).map((
          [pid, v],
        ) => [pid, v]),
      );
      const missing = [...live.keys()].filter((pid) => !mem.has(pid));
      const extra = [...mem.keys()].filter((pid) => !live.has(pid));
      if (missing.length > 0 || extra.length > 0) {
        bad(
          `${tag}: tasks only live ${
            missing.slice(0, 8).map((p) => `${p}/${names.get(p)}`)
          }, only in memory ${extra.slice(0, 8)}`,
        );
      }
      for (const [pid, v] of live) {
        result.keys++;
        result.storageElements++;
        same(`${tag} pid ${pid}`, v, mem.get(pid));
      }
      break;
    }
    case "arena_live": {
      // bpf() sees arena pages only through a process that maps them (the
      // loader); guest memory also has pages only BPF programs touched.
      const d = agent.data as { pages: [number, string, string][] };
      const mem = guest.readArenaPages(info);
      const memPages = new Map(mem.pages.map((p) => [p.index, p]));
      for (const [index, userAddress, v] of d.pages) {
        result.pages++;
        const page = memPages.get(index);
        same(`${tag} page ${index}`, v, hexOf(page?.bytes));
        if (page && String(page.userAddress) !== userAddress) {
          bad(
            `${tag} page ${index}: user address ${page.userAddress} vs ${userAddress}`,
          );
        }
      }
      result.pagesOnlyInMemory += mem.pages.length - d.pages.length;
      break;
    }
    case "struct_ops": {
      result.keys++;
      same(
        `${tag} value`,
        agent.data as string,
        hexOf(guest.readValue(info, 0, info.valueSize)),
      );
      break;
    }
    default:
      bad(`${tag}: unknown kind ${agent.kind}`);
  }
}
