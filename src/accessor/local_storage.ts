/**
 * Reaching local-storage elements (task, cgroup, socket, inode) from user
 * space: they are keyed by an owner fd, so each candidate owner is opened and
 * looked up.
 *
 * @module
 */

import {
  mapLookupElem,
  openReadOnly,
  pidfdGetfd,
  pidfdOpen,
} from "../sys/bpf.ts";
import { MapType } from "../sys/constants.ts";
import type { OwnedFd } from "../sys/fd.ts";
import type { BpfMapInfo, LocalStorageEntry } from "./types.ts";

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

function lookupWith(
  mapFd: number,
  ownerFd: OwnedFd,
  valueSize: number,
  owner: string,
): LocalStorageEntry | null {
  const key = keyFor(ownerFd.fd);
  const value = new Uint8Array(new ArrayBuffer(valueSize));
  try {
    return mapLookupElem(mapFd, key, value) ? { owner, key, value } : null;
  } catch {
    // EBADF/EINVAL: the owner vanished or is of the wrong kind; skip it.
    return null;
  }
}

function* tasks(mapFd: number, map: BpfMapInfo): Generator<LocalStorageEntry> {
  let threadPidfds = true;
  for (const pid of numericEntries("/proc")) {
    for (const tid of numericEntries(`/proc/${pid}/task`)) {
      let fd: OwnedFd | null = null;
      if (threadPidfds) {
        try {
          fd = pidfdOpen(tid, true);
        } catch (error) {
          // Before 6.9 PIDFD_THREAD is EINVAL: fall back to leaders only.
          if ((error as { errno?: number }).errno === 22) threadPidfds = false;
        }
      }
      if (fd === null && tid === pid) fd = tryOpen(() => pidfdOpen(tid));
      if (fd === null) continue;
      try {
        const entry = lookupWith(mapFd, fd, map.valueSize, String(tid));
        if (entry) yield entry;
      } finally {
        fd.close();
      }
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

function* cgroups(
  mapFd: number,
  map: BpfMapInfo,
): Generator<LocalStorageEntry> {
  // The same hierarchy may be mounted twice; walk it once.
  const root = cgroup2Mounts()[0];
  if (root === undefined) return;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const fd = tryOpen(() => openReadOnly(dir, true));
    if (fd !== null) {
      try {
        const owner = dir === root ? "/" : dir.slice(root.length);
        const entry = lookupWith(mapFd, fd, map.valueSize, owner);
        if (entry) yield entry;
      } finally {
        fd.close();
      }
    }
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

function* openFiles(
  mapFd: number,
  map: BpfMapInfo,
  sockets: boolean,
): Generator<LocalStorageEntry> {
  const seen = new Set<string>();
  for (const pid of numericEntries("/proc")) {
    let pidfd: OwnedFd | null = null;
    try {
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
        let fd: OwnedFd | null;
        if (sockets) {
          pidfd ??= tryOpen(() => pidfdOpen(pid));
          if (pidfd === null) break;
          const pidfdNumber = pidfd.fd;
          fd = tryOpen(() => pidfdGetfd(pidfdNumber, fdNumber));
        } else {
          fd = tryOpen(() => openReadOnly(`/proc/${pid}/fd/${fdNumber}`));
        }
        if (fd === null) continue;
        try {
          const owner = sockets ? `${pid}/${fdNumber} ${target}` : target;
          const entry = lookupWith(mapFd, fd, map.valueSize, owner);
          if (entry) yield entry;
        } finally {
          fd.close();
        }
      }
    } finally {
      pidfd?.close();
    }
  }
}

/**
 * Walks the candidate owners of a local-storage map and yields those that
 * hold an element. `openMap` is called once; its fd is closed when the walk
 * ends or is abandoned.
 */
export function* iterLocalStorageLive(
  map: BpfMapInfo,
  openMap: () => OwnedFd,
): Generator<LocalStorageEntry, void, undefined> {
  using mapFd = openMap();
  switch (map.type) {
    case MapType.TASK_STORAGE:
      yield* tasks(mapFd.fd, map);
      return;
    case MapType.CGRP_STORAGE:
      yield* cgroups(mapFd.fd, map);
      return;
    case MapType.SK_STORAGE:
      yield* openFiles(mapFd.fd, map, true);
      return;
    case MapType.INODE_STORAGE:
      yield* openFiles(mapFd.fd, map, false);
      return;
  }
}
