/**
 * Runs inside a 7.3 test guest (see tools/vm/build_initramfs.sh): starts one
 * of the kernel's own sched_ext schedulers with its C loader
 * (`/scx/scx_<name>`, arg `scx=<name>`) under load, and reports every map the
 * loader created as bpfmap's live backend reads it, in two phases:
 *
 * 1. `BPFMAP-RUNMAP` lines (every map, as bpf() reads it then) and
 *    `BPFMAP-SCX-RUNNING {...}` once `/sys/kernel/sched_ext/state` is
 *    `enabled` and the busy processes have run under it; the agent then
 *    sleeps 4 s of guest time (the guest clock stands still while QMP holds
 *    it) for the host to freeze, read and resume the guest.
 * 2. The agent stops the loader (SIGSTOP keeps its arena mapping and its map
 *    fds) and the busy processes, disables the scheduler with sysrq `S`, waits
 *    for `disabled`, and reads every map twice until two reads agree: a map
 *    read while BPF programs still write to it cannot match a later RAM image
 *    byte for byte. It prints one `BPFMAP-MAP` line per map (the kinds
 *    `compare.ts` knows) and `BPFMAP-AGENT-READY`.
 *
 * @module
 */
// deno-lint-ignore-file no-console

import {
  type BpfMapInfo,
  BpfSyscallAccessor,
  MapType,
  possibleCpuCount,
} from "../../mod.ts";
import { mapGetFdById } from "../../src/sys/bpf.ts";

const accessor = new BpfSyscallAccessor();
const cpus = possibleCpuCount();
const held: unknown[] = [];
const hexOf = (b: Uint8Array | null | undefined): string | null =>
  b === null || b === undefined
    ? null
    : Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

const STATE = "/sys/kernel/sched_ext/state";
const readState = (): string => {
  try {
    return Deno.readTextFileSync(STATE).trim();
  } catch {
    return "missing";
  }
};

async function waitState(want: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (readState() !== want) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `${STATE} is "${readState()}", not "${want}" after ${timeoutMs} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - started;
}

/** The thread's name, for reports. */
function commOf(tid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${tid}/comm`).trim();
  } catch {
    return "?";
  }
}

/** The thread group a thread belongs to (0 when it is gone). */
function tgidOf(tid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${tid}/status`);
    return Number(/^Tgid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

type StorageRow = [number, string, string, number];

/**
 * How one map's read moved between two rounds. A task storage element that
 * disappears is a thread that exited (its storage goes with it: the kernel's
 * own doing, nothing bpfmap reads differently); any other change counts.
 */
function movement(before: string | undefined, after: string): {
  settled: boolean;
  what: string;
} {
  if (before === after) return { settled: true, what: "" };
  const a = JSON.parse(after);
  if (before === undefined || a.kind !== "task_storage_all") {
    return { settled: false, what: a.meta.name };
  }
  const old = new Map(
    (JSON.parse(before).data as StorageRow[]).map((r) => [r[0], r]),
  );
  const now = new Map((a.data as StorageRow[]).map((r) => [r[0], r]));
  const gone = [...old.keys()].filter((tid) => !now.has(tid));
  const born = [...now.keys()].filter((tid) => !old.has(tid));
  const changed = [...now.keys()].filter((tid) =>
    old.has(tid) && old.get(tid)![1] !== now.get(tid)![1]
  );
  // comm and tgid are read from /proc beside the element, not from the map
  const renamed = [...now.keys()].filter((tid) =>
    old.has(tid) && old.get(tid)![1] === now.get(tid)![1] &&
    old.get(tid)!.join() !== now.get(tid)!.join()
  );
  const name = (rows: Map<number, StorageRow>, tid: number) =>
    `${tid}/${rows.get(tid)![2]}`;
  const parts = [
    gone.length ? `exited ${gone.map((t) => name(old, t)).join(",")}` : "",
    born.length ? `new ${born.map((t) => name(now, t)).join(",")}` : "",
    changed.length
      ? `changed ${changed.map((t) => name(now, t)).join(",")}`
      : "",
    renamed.length
      ? `renamed ${
        renamed.map((t) => `${name(old, t)}->${now.get(t)![2]}`).join(",")
      }`
      : "",
  ].filter(Boolean);
  return {
    settled: born.length === 0 && changed.length === 0,
    what: `${a.meta.name} (${parts.join("; ")})`,
  };
}

/** What bpf() returns for one map, in a shape compare.ts knows. */
function readMap(info: BpfMapInfo, loaderPid: number): {
  kind: string;
  data: unknown;
} {
  switch (info.type) {
    case MapType.ARRAY:
      return {
        kind: "array",
        data: Array.from(
          { length: info.maxEntries },
          (_, i) => hexOf(accessor.readArray(info, i)),
        ),
      };
    case MapType.PERCPU_ARRAY:
      return {
        kind: "percpu_array",
        data: Array.from(
          { length: info.maxEntries },
          (_, i) => accessor.readPercpuArray(info, i, cpus + 2)!.map(hexOf),
        ),
      };
    case MapType.HASH:
    case MapType.LRU_HASH:
      return {
        kind: "hash",
        data: [...accessor.iterHashMap(info)].map((e) => [
          hexOf(e.key),
          hexOf(e.value),
        ]),
      };
    case MapType.TASK_STORAGE:
      return {
        kind: "task_storage_all",
        data: [...accessor.iterTaskStorage(info)].map((e) => [
          Number(e.owner),
          hexOf(e.value),
          commOf(Number(e.owner)),
          tgidOf(Number(e.owner)),
        ]).sort((a, b) => (a[0] as number) - (b[0] as number)),
      };
    case MapType.ARENA: {
      const live = accessor.readArenaPages(info);
      return {
        kind: "arena_live",
        data: {
          holder: loaderPid,
          notes: live.notes,
          pages: live.pages.map((p) => [
            p.index,
            String(p.userAddress),
            hexOf(p.bytes),
          ]),
        },
      };
    }
    case MapType.STRUCT_OPS:
      return {
        kind: "struct_ops",
        data: hexOf(accessor.readValue(info, 0, info.valueSize)),
      };
    default:
      return { kind: `unsupported type ${info.type}`, data: null };
  }
}

function meta(info: BpfMapInfo): Record<string, unknown> {
  return {
    id: info.id,
    name: info.name,
    type: info.type,
    keySize: info.keySize,
    valueSize: info.valueSize,
    maxEntries: info.maxEntries,
    flags: info.flags,
    btfId: info.btfId,
    btfKeyTypeId: info.btfKeyTypeId,
    btfValueTypeId: info.btfValueTypeId,
    mapExtra: String(info.mapExtra),
    frozen: info.frozen,
  };
}

async function main(args: string[]): Promise<void> {
  const opts = Object.fromEntries(
    args.map((a) => a.split("=") as [string, string]),
  );
  const name = opts.scx;
  if (!name) throw new Error("no scx=<scheduler> argument");
  console.log(
    `BPFMAP-AGENT cpus=${cpus} kernel=${Deno.osRelease()} scheduler=${name} state=${readState()}`,
  );
  const before = new Set(accessor.maps().map((m) => m.id));
  const loader = new Deno.Command(`/scx/scx_${name}`, {
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const loaderErrors = (async () => {
    let text = "";
    for await (const chunk of loader.stderr) {
      text += new TextDecoder().decode(chunk);
    }
    return text;
  })();
  let enabledMs: number;
  try {
    // loading (verifying qmap's programs) takes seconds of TCG time
    enabledMs = await waitState("enabled", 90_000);
  } catch (error) {
    loader.kill("SIGKILL");
    throw new Error(
      `${(error as Error).message}; loader: ${await loaderErrors}`,
    );
  }
  // Then busy processes, so the scheduler has runnable tasks to enqueue and dispatch.
  const busy = Array.from(
    { length: 3 },
    () =>
      new Deno.Command("/bin/sh", {
        args: ["-c", "while :; do :; done"],
        stdout: "null",
        stderr: "null",
      }).spawn(),
  );
  await new Promise((r) => setTimeout(r, 1500)); // run under load
  const ops = Deno.readTextFileSync("/sys/kernel/sched_ext/root/ops").trim();
  const maps = accessor.maps().filter((m) => !before.has(m.id));
  // Our own fds keep every map alive whatever the loader does.
  for (const m of maps) held.push(mapGetFdById(m.id));
  // What bpf() returns while the scheduler runs, just before the host freezes
  // the guest: maps no BPF program writes must already agree.
  for (const info of maps) {
    const { kind, data } = readMap(info, loader.pid);
    console.log(
      "BPFMAP-RUNMAP " + JSON.stringify({ kind, meta: meta(info), data }),
    );
  }
  // Every program, for the host to list from RAM while the scheduler runs
  // (compare_programs.ts reads it; only this file is copied into the guest).
  console.log(
    "BPFMAP-PROGS " +
      JSON.stringify(
        accessor.programs(),
        (_, v) => typeof v === "bigint" ? v.toString() : v,
      ),
  );
  console.log(
    "BPFMAP-SCX-RUNNING " + JSON.stringify({
      ops,
      state: readState(),
      enabledMs: Math.round(enabledMs),
      loaderPid: loader.pid,
      maps: maps.map(meta),
    }),
  );
  // The host freezes the guest now, reads it while the scheduler runs, and resumes it.
  await new Promise((r) => setTimeout(r, 4000));

  Deno.kill(loader.pid, "SIGSTOP");
  for (const b of busy) Deno.kill(b.pid, "SIGSTOP");
  Deno.writeTextFileSync("/proc/sysrq-trigger", "S");
  const disabledMs = await waitState("disabled", 10_000);
  // BPF timers (qmap's) may still fire after the scheduler is gone, and
  // threads that exit take their task storage with them (Deno's idle tokio
  // workers do, for up to ~10 s): read until a read adds and changes nothing
  // against the one before (threads may only have exited), naming what moved.
  const readAll = (): Map<number, string> =>
    new Map(
      accessor.maps().filter((m) => !before.has(m.id)).map((info) => {
        const { kind, data } = readMap(info, loader.pid);
        return [info.id, JSON.stringify({ kind, meta: meta(info), data })];
      }),
    );
  let previous = new Map<number, string>();
  let current = new Map<number, string>();
  let rounds = 0;
  const moved: string[] = [];
  const lastMoves: string[] = [];
  for (; rounds < 15; rounds++) {
    await new Promise((r) => setTimeout(r, 1200));
    current = readAll();
    if (rounds === 0) {
      previous = current;
      continue;
    }
    const moves = [...current].map(([id, line]) =>
      movement(previous.get(id), line)
    ).filter((m) => m.what !== "");
    previous = current;
    if (moves.every((m) => m.settled)) {
      lastMoves.push(...moves.map((m) => m.what));
      break;
    }
    moved.push(moves.map((m) => m.what).join(" "));
  }
  const lines = [...current.values()];
  console.log(
    "BPFMAP-SCX-QUIET " + JSON.stringify({
      disabledMs: Math.round(disabledMs),
      rounds,
      stable: rounds < 15,
      moved,
      lastMoves,
      agentPid: Deno.pid,
      state: readState(),
    }),
  );
  for (const line of lines) console.log("BPFMAP-MAP " + line);
  console.log("BPFMAP-AGENT-READY");
}

try {
  await main(Deno.args);
} catch (error) {
  console.log("BPFMAP-AGENT-ERROR " + String((error as Error)?.stack ?? error));
}
setInterval(() => {}, 1 << 30);
