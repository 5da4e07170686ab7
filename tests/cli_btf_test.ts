import assert from "node:assert/strict";
import { runCli as run } from "./_support/cli.ts";
import {
  MapNameTooLongError,
  openBpfMapFdByName,
} from "../src/accessor/pin.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { parseJsonExact } from "../src/btf/json.ts";
import { mapGetInfo, mapUpdateElem, objGet } from "../src/sys/bpf.ts";
import { ignoreUnless } from "./_support/env.ts";
import { loadFixture } from "./btf_fixture.ts";

const ignore = ignoreUnless("clang", "bpf", "bpftool");

function bpftoolDump(id: number): unknown {
  const result = new Deno.Command("bpftool", {
    args: ["-j", "map", "dump", "id", String(id)],
  }).outputSync();
  return parseJsonExact(new TextDecoder().decode(result.stdout));
}

Deno.test({
  name:
    "bpfmap dump --json adds bpftool's formatted object for BTF maps, equal to bpftool's where bpftool is right",
  ignore,
  async fn(): Promise<void> {
    using fixture = loadFixture("kinds");
    const bss = fixture.info.get("kinds_bss") ??
      [...fixture.info.values()].find((i) => i.name.endsWith(".bss"));
    assert.ok(bss, `a .bss map among ${[...fixture.info.keys()]}`);
    {
      using fd = objGet(
        [...fixture.pins].find(([, path]) => {
          using probe = objGet(path);
          return mapGetInfo(probe.fd).id === bss.id;
        })![1],
      );
      const value = new Uint8Array(bss.valueSize);
      for (let i = 0; i < value.length; i++) value[i] = (i * 37 + 11) & 0xff;
      mapUpdateElem(fd.fd, new Uint8Array(4), value);
    }
    const ours = await run("dump", "--id", String(bss.id), "--json");
    assert.equal(ours.code, 0, ours.stderr);
    const parsedOurs = parseJsonExact(ours.stdout) as {
      key: string[];
      value: string[];
      formatted: unknown;
    }[];
    const theirs = bpftoolDump(bss.id) as {
      key: string[];
      value: string[];
      formatted: unknown;
    }[];
    assert.equal(parsedOurs.length, 1);
    assert.deepEqual(parsedOurs[0]!.key, theirs[0]!.key);
    assert.deepEqual(parsedOurs[0]!.value, theirs[0]!.value);
    // .bss holds plain integers and a struct of them: no documented difference applies.
    assert.deepEqual(parsedOurs[0]!.formatted, theirs[0]!.formatted);

    // Every BTF map of the fixture dumps as valid JSON with a formatted value per element.
    for (const info of fixture.info.values()) {
      if (info.btfId === 0) continue;
      const dumped = await run("dump", "--id", String(info.id), "--json");
      assert.equal(dumped.code, 0, `${info.name}: ${dumped.stderr}`);
      const elements = parseJsonExact(dumped.stdout) as {
        formatted?: unknown;
      }[];
      for (const element of elements) {
        assert.ok(element.formatted !== undefined, info.name);
      }
    }
  },
});

Deno.test({
  name:
    "bpfmap dump shows typed values instead of hex when the map has BTF, and hex with --hex",
  ignore,
  async fn(): Promise<void> {
    using fixture = loadFixture("kinds");
    const pcpu = [...fixture.info.values()].find((i) =>
      i.name === "kinds_pcpu"
    );
    assert.ok(pcpu);
    const typed = await run("dump", "--id", String(pcpu.id));
    assert.equal(typed.code, 0, typed.stderr);
    assert.match(
      typed.stdout,
      /^key: 0\n {2}value \(CPU 00\): \{id = 0, port = 0, pad = 0\}\n/,
    );
    const raw = await run("dump", "--id", String(pcpu.id), "--hex");
    assert.match(
      raw.stdout,
      /^key: 00 00 00 00\n {2}value \(CPU 00\): 00 00 00 00 00 00 00 00\n/,
    );
  },
});

Deno.test({
  name:
    "bpfmap find --full and openBpfMapFdByName({ match: 'full' }) find a map by its untruncated BTF name",
  ignore,
  async fn(): Promise<void> {
    using fixture = loadFixture("kinds");
    const longNames = [
      "kinds_array_with_a_very_long_name",
      "kinds_array_with_a_very_long_other",
    ];
    for (const full of longNames) {
      using fd = openBpfMapFdByName(full, { match: "full" });
      const info = new BpfSyscallAccessor().mapById(mapGetInfo(fd.fd).id);
      assert.equal(info?.name, "kinds_array_wit");
      assert.equal(info?.fullName, full);
      const ours = [...fixture.info.values()].find((i) =>
        i.name === "kinds_array_wit" && i.type === info?.type
      );
      assert.ok(ours && info!.id <= ours.id, "lowest id with that full name");
      const found = await run("find", full, "--full", "--json");
      assert.equal(found.code, 0, found.stderr);
      assert.equal(
        (JSON.parse(found.stdout) as { full_name: string }).full_name,
        full,
      );
    }
    // Without --full a long name is refused, but the error points at the map it recognises.
    assert.throws(() => openBpfMapFdByName(longNames[0]!), (error: unknown) => {
      assert.ok(error instanceof MapNameTooLongError);
      assert.match(
        error.message,
        /Map id \d+.*"kinds_array_wit".* has this full name in its BTF/,
      );
      return true;
    });
  },
});
