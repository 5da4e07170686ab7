import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { readMapTypeLive } from "../src/accessor/maptypes/mod.ts";
import { readStructOpsLive } from "../src/accessor/maptypes/struct_ops.ts";
import { MapType } from "../src/sys/constants.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnlessCommands } from "./_support/env.ts";
import { compileFixture } from "./btf_fixture.ts";

function run(cmd: string, ...args: string[]): string {
  const out = new Deno.Command(cmd, { args }).outputSync();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")}: ${
        new TextDecoder().decode(out.stderr)
      }${text}`,
    );
  }
  return text;
}

/** Program ids by full name (bpftool reads it from the program's BTF), from bpftool (the oracle). */
function bpftoolProgIds(): Map<string, number> {
  const progs = JSON.parse(run("bpftool", "-j", "prog", "show")) as {
    id: number;
    name?: string;
  }[];
  return new Map(progs.map((p) => [p.name ?? "", p.id]));
}

Deno.test({
  name:
    "struct_ops: a registered tcp_congestion_ops, data typed and callbacks as program ids and names",
  ignore: ignoreUnlessCommands("bpftool", "clang"),
  async fn(): Promise<void> {
    const dir = Deno.makeTempDirSync({ prefix: "bpfmap-so-" });
    // A stale registration from an aborted run would make register fail (EEXIST).
    new Deno.Command("bpftool", {
      args: ["struct_ops", "unregister", "name", "bpfmap_cc"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    try {
      const object = compileFixture("tcp_cc", dir);
      run("bpftool", "struct_ops", "register", object);
      try {
        const accessor = new BpfSyscallAccessor();
        const map = accessor.maps().find((m) =>
          m.type === MapType.STRUCT_OPS && m.name === "bpfmap_cc"
        );
        assert.ok(map, "the registered struct_ops map is listed");
        const ops = readStructOpsLive(map);
        assert.equal(ops.structName, "tcp_congestion_ops");
        assert.equal(ops.state, "BPF_STRUCT_OPS_STATE_INUSE");
        const ids = bpftoolProgIds();
        const byName = new Map(ops.members.map((m) => [m.name, m]));
        for (const callback of ["ssthresh", "cong_avoid", "undo_cwnd"]) {
          const member = byName.get(callback)!;
          assert.equal(member.kind, "prog");
          // The kernel keeps 15 characters of a program name.
          assert.equal(member.progName, `bpfmap_${callback}`.slice(0, 15));
          assert.equal(member.progId, ids.get(`bpfmap_${callback}`));
        }
        assert.deepEqual(
          [byName.get("init")!.kind, byName.get("init")!.progId],
          ["prog", 0],
        );
        assert.equal(byName.get("name")!.value, "bpfmap_cc");
        assert.equal(byName.get("flags")!.value, 0);
        assert.equal(readMapTypeLive(map)?.reader, "struct_ops");

        const ours = await runCli("dump", "--id", String(map.id), "--json");
        assert.equal(ours.code, 0, ours.stderr);
        const theirs = run(
          "bpftool",
          "-j",
          "map",
          "dump",
          "id",
          String(map.id),
        );
        assert.deepEqual(JSON.parse(ours.stdout), JSON.parse(theirs));
        const text = await runCli("dump", "--id", String(map.id));
        assert.match(
          text.stdout,
          /^struct_ops tcp_congestion_ops, state BPF_STRUCT_OPS_STATE_INUSE, refcnt \d+\n/,
        );
        assert.match(
          text.stdout,
          /\n {2}ssthresh: prog \d+ "bpfmap_ssthresh"\n/,
        );
        assert.match(text.stdout, /\n {2}name: "bpfmap_cc"\n/);
      } finally {
        run("bpftool", "struct_ops", "unregister", "name", "bpfmap_cc");
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
