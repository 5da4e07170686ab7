/**
 * `programs()` on the running kernel, held against `bpftool prog show -j`
 * (the oracle) for programs this test loads, and the run statistics against
 * test runs counted under BPF_ENABLE_STATS.
 */

import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type { BpfProgramInfo } from "../src/accessor/types.ts";
import { MapType } from "../src/sys/constants.ts";
import { progLoad, progTestRun, ProgType } from "../src/sys/prog.ts";
import { enableRunTimeStats } from "../src/sys/prog_info.ts";
import { ignoreUnless } from "./_support/env.ts";
import {
  loadRingbufOutputProgram,
  loadTrivialProgram,
  loadXdpProgram,
} from "./_support/bpf_prog.ts";
import { uniqueName } from "./_support/maps.ts";

interface BpftoolProg {
  id: number;
  type: string | number;
  name?: string;
  tag: string;
  "gpl_compatible"?: boolean;
  "run_time_ns"?: number;
  "run_cnt"?: number;
  "loaded_at"?: number;
  uid?: number;
  "bytes_xlated": number;
  jited: boolean;
  "bytes_jited"?: number;
  "bytes_memlock": number;
  "map_ids"?: number[];
  "btf_id"?: number;
}

function bpftoolProgs(): BpftoolProg[] {
  const out = new Deno.Command("bpftool", { args: ["prog", "show", "-j"] })
    .outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout)) as BpftoolProg[];
}

/** The facts bpftool prints, from bpfmap's record, in bpftool's shape. */
function asBpftool(p: BpfProgramInfo): Record<string, unknown> {
  return {
    id: p.id,
    type: p.typeName,
    name: p.name,
    tag: p.tag,
    "gpl_compatible": p.gplCompatible,
    uid: p.uid,
    "bytes_xlated": p.bytesXlated,
    jited: p.jited,
    "bytes_jited": p.bytesJited,
    "bytes_memlock": Number(p.bytesMemlock),
    "map_ids": p.mapIds.length > 0 ? p.mapIds : undefined,
    "btf_id": p.btfId === 0 ? undefined : p.btfId,
  };
}

function fromBpftool(p: BpftoolProg): Record<string, unknown> {
  return {
    id: p.id,
    type: p.type,
    name: p.name,
    tag: p.tag,
    "gpl_compatible": p["gpl_compatible"],
    uid: p.uid,
    "bytes_xlated": p["bytes_xlated"],
    jited: p.jited,
    "bytes_jited": p["bytes_jited"] ?? 0,
    "bytes_memlock": p["bytes_memlock"],
    "map_ids": p["map_ids"],
    "btf_id": p["btf_id"],
  };
}

Deno.test({
  name:
    "programs() lists loaded programs exactly as bpftool prog show -j does (ids, names, tags, map ids, sizes)",
  ignore: ignoreUnless("bpf", "bpftool"),
  fn(): void {
    const names = [uniqueName("pt_plain"), uniqueName("pt_rb")];
    const ringName = uniqueName("pt_ring");
    using ring = BpfSyscallAccessor.createMap({
      type: MapType.RINGBUF,
      keySize: 0,
      valueSize: 0,
      maxEntries: 4096,
      name: ringName,
    });
    using _plain = loadTrivialProgram(names[0]!, 3);
    using _rb = loadRingbufOutputProgram(names[1]!, ring.fd);
    const xdpName = uniqueName("pt_xdp");
    using _xdp = loadXdpProgram(xdpName, "devmap");
    names.push(xdpName);
    // A bpf-to-bpf call: JITed as two functions, whose sizes the kernel adds.
    const subName = uniqueName("pt_sub");
    using _sub = progLoad({
      type: ProgType.SOCKET_FILTER,
      name: subName,
      insns: Uint8Array.from([
        ...[0x85, 0x10, 0, 0, 1, 0, 0, 0], // call pc+1 (BPF_PSEUDO_CALL)
        ...[0x95, 0, 0, 0, 0, 0, 0, 0], // exit
        ...[0xb7, 0, 0, 0, 9, 0, 0, 0], // r0 = 9
        ...[0x95, 0, 0, 0, 0, 0, 0, 0], // exit
      ]),
    });
    names.push(subName);

    const accessor = new BpfSyscallAccessor();
    const mine = accessor.programs().filter((p) => names.includes(p.name));
    assert.equal(mine.length, 4, "each loaded program listed once");
    const oracle = new Map(bpftoolProgs().map((p) => [p.id, p]));
    for (const program of mine) {
      const theirs = oracle.get(program.id);
      assert.ok(theirs, `bpftool lists program ${program.id}`);
      assert.deepEqual(asBpftool(program), fromBpftool(theirs), program.name);
    }
    const ringMap = accessor.maps().find((m) => m.name === ringName);
    assert.deepEqual(
      mine.find((p) => p.name === names[1])?.mapIds,
      [ringMap?.id],
      "the ring buffer program uses the ring buffer",
    );
    assert.deepEqual(
      mine.map((p) => p.typeName),
      ["socket_filter", "raw_tracepoint", "xdp", "socket_filter"],
    );
    const ids = accessor.programs().map((p) => p.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "id order");
  },
});

Deno.test({
  name:
    "programById() is null once a program is freed, and programs() no longer lists it",
  ignore: ignoreUnless("bpf"),
  async fn(): Promise<void> {
    const accessor = new BpfSyscallAccessor();
    const name = uniqueName("pt_gone");
    const fd = loadTrivialProgram(name);
    const id = accessor.programs().find((p) => p.name === name)?.id;
    assert.ok(id !== undefined, "listed while held");
    assert.equal(accessor.programById(id)?.name, name);
    fd.close();
    // The last fd's close frees the program; the id leaves prog_idr with it
    // (through an RCU grace period on some kernels): wait a bounded time.
    for (let i = 0; i < 100 && accessor.programById(id) !== null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(accessor.programById(id), null);
    assert.ok(!accessor.programs().some((p) => p.id === id));
  },
});

Deno.test({
  name:
    "run statistics: absent with a reason when off, exact counts of test runs under BPF_ENABLE_STATS",
  ignore: ignoreUnless("bpf", "bpftool"),
  fn(): void {
    const accessor = new BpfSyscallAccessor();
    const name = uniqueName("pt_stats");
    using prog = loadTrivialProgram(name, 1);
    const id = accessor.programs().find((p) => p.name === name)!.id;
    const before = accessor.programById(id)!;
    let enabledElsewhere = false;
    try {
      enabledElsewhere =
        Deno.readTextFileSync("/proc/sys/kernel/bpf_stats_enabled").trim() !==
          "0";
    } catch {
      // no sysctl: the note path below is still taken
    }
    if (!enabledElsewhere) {
      assert.equal(before.runTimeNs, undefined);
      assert.equal(before.runCnt, undefined);
      assert.match(before.statsNote ?? "", /bpf_stats_enabled/);
    }
    {
      using _stats = enableRunTimeStats();
      progTestRun(prog.fd, { data: new Uint8Array(64), repeat: 5 });
      const during = accessor.programById(id)!;
      assert.equal(during.runCnt, 5n, "five test runs counted");
      assert.equal(typeof during.runTimeNs, "bigint");
      assert.ok(during.runTimeNs! > 0n);
      assert.equal(during.statsNote, undefined);
      const theirs = bpftoolProgs().find((p) => p.id === id)!;
      assert.equal(theirs["run_cnt"], 5);
      assert.equal(BigInt(theirs["run_time_ns"]!), during.runTimeNs);
    }
    // Counted once: the numbers stay after stats are switched off again.
    const after = accessor.programById(id)!;
    assert.equal(after.runCnt, 5n);
  },
});
