/**
 * Reaching local-storage elements (task, cgroup, socket, inode) from user
 * space: they are keyed by an owner fd, so each candidate owner is opened and
 * looked up.
 *
 * @module
 */

import {
  mapLookupElemErrno,
  openReadOnly,
  pidfdGetfd,
  pidfdOpen,
} from "../sys/bpf.ts";
import { MapType } from "../sys/constants.ts";
import type { OwnedFd } from "../sys/fd.ts";
import type { LocalStorageEntry } from "./types.ts";

function numericEntries(path: string): number[] {
  const result: number[] = [];
  try {
    for (const entry of Deno.readDirSync(path)) {
      if (/^\d+$/.test(entry.name)) result.push(Number(entry.name));
    }
  } catch {
    // The process exited while we looked: nothing to report for it.
  }
  return result.sort((a, b) => a - b);
}

function keyFor(fd: number): Uint8Array {
  const key = new Uint8Array(new ArrayBuffer(4));
  new DataView(key.buffer).setUint32(0, fd, true);
  return key;
}

function tryOpen(open: () => OwnedFd): OwnedFd | null {
  try {
    return open();
  } catch {
    return null;
  }
}

/** One candidate owner: how to name it and how to open an fd on it (null when it is gone). */
interface Candidate {
  owner: string;
  open(): OwnedFd | null;
}

/** The facts of a storage map the walk needs. */
export interface LocalStorageMap {
  /** `enum bpf_map_type` (one of the four storage types). */
  type: number;
  /** Value size in bytes. */
  valueSize: number;
}

/**
 * Threads as candidates. PIDFD_THREAD (6.9+) reaches every thread; before
 * it only thread-group leaders can be opened, so the walk falls back.
 */
function* tasks(): Generator<Candidate> {
  let threadPidfds = true;
  for (const pid of numericEntries("/proc")) {
    for (const tid of numericEntries(`/proc/${pid}/task`)) {
      if (!threadPidfds && tid !== pid) continue;
      yield {
        owner: String(tid),
        open(): OwnedFd | null {
          if (threadPidfds) {
            try {
              return pidfdOpen(tid, true);
            } catch (error) {
              if ((error as { errno?: number }).errno !== 22) return null;
              threadPidfds = false;
            }
          }
          return tid === pid ? tryOpen(() => pidfdOpen(tid)) : null;
        },
      };
    }
  }
}

/** Mount points of cgroup v2 (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid systems). */
export function cgroup2Mounts(): string[] {
  try {
    return Deno.readTextFileSync("/proc/self/mounts").split("\n")
      .map((line) => line.split(" "))
      .filter((fields) => fields[2] === "cgroup2" && fields[1] !== undefined)
      .map((fields) => fields[1]!.replace(/\\040/g, " "));
  } catch {
    return [];
  }
}

function* cgroups(): Generator<Candidate> {
  // The same hierarchy may be mounted twice; walk it once.
  const root = cgroup2Mounts()[0];
  if (root === undefined) return;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    yield {
      owner: dir === root ? "/" : dir.slice(root.length),
      open: () => tryOpen(() => openReadOnly(dir, true)),
    };
    try {
      const children: string[] = [];
      for (const entry of Deno.readDirSync(dir)) {
        if (entry.isDirectory) children.push(`${dir}/${entry.name}`);
      }
      stack.push(...children.sort().reverse());
    } catch {
      // Removed while walking.
    }
  }
}

function* openFiles(sockets: boolean): Generator<Candidate> {
  const seen = new Set<string>();
  for (const pid of numericEntries("/proc")) {
    for (const fdNumber of numericEntries(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${fdNumber}`);
      } catch {
        continue;
      }
      const isSocket = target.startsWith("socket:[");
      if (isSocket !== sockets) continue;
      if (!sockets && !target.startsWith("/")) continue;
      let identity = target;
      if (!sockets) {
        try {
          const stat = Deno.statSync(`/proc/${pid}/fd/${fdNumber}`);
          identity = `${stat.dev}:${stat.ino}`;
        } catch {
          continue;
        }
      }
      if (seen.has(identity)) continue;
      seen.add(identity);
      yield {
        owner: sockets ? `${pid}/${fdNumber} ${target}` : target,
        open(): OwnedFd | null {
          if (!sockets) {
            return tryOpen(() => openReadOnly(`/proc/${pid}/fd/${fdNumber}`));
          }
          const pidfd = tryOpen(() => pidfdOpen(pid));
          if (pidfd === null) return null;
          try {
            return tryOpen(() => pidfdGetfd(pidfd.fd, fdNumber));
          } finally {
            pidfd.close();
          }
        },
      };
    }
  }
}

function candidatesOf(type: number): Generator<Candidate> {
  switch (type) {
    case MapType.TASK_STORAGE:
      return tasks();
    case MapType.CGRP_STORAGE:
      return cgroups();
    case MapType.SK_STORAGE:
      return openFiles(true);
    default:
      return openFiles(false);
  }
}

/** Candidates looked up per map fd: a few hundred lookups share one open. */
const CANDIDATES_PER_OPEN = 256;

/**
 * Walks the candidate owners of a local-storage map and yields those that
 * hold an element. Candidates are looked up in chunks, each under a fresh
 * map fd from `openMap` that is closed (with every owner fd) before the
 * chunk's entries are yielded: a suspended or abandoned walk holds no fd.
 */
export function* iterLocalStorageLive(
  map: LocalStorageMap,
  openMap: () => OwnedFd,
): Generator<LocalStorageEntry, void, undefined> {
  const candidates = candidatesOf(map.type);
  let exhausted = false;
  while (!exhausted) {
    const found: LocalStorageEntry[] = [];
    {
      using mapFd = openMap();
      for (let looked = 0; looked < CANDIDATES_PER_OPEN; looked++) {
        const next = candidates.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        const owner = next.value.open();
        if (owner === null) continue;
        try {
          const key = keyFor(owner.fd);
          const value = new Uint8Array(new ArrayBuffer(map.valueSize));
          // ENOENT: no storage; EBADF/EINVAL: the owner vanished or is of
          // the wrong kind. Either way this owner has nothing to list.
          if (mapLookupElemErrno(mapFd.fd, key, value) === 0) {
            found.push({ owner: next.value.owner, key, value });
          }
        } finally {
          owner.close();
        }
      }
    }
    yield* found;
  }
}
