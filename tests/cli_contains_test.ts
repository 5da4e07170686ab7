import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { parseCandidate } from "../src/cli/commands/contains.ts";
import { UsageError } from "../src/cli/args.ts";
import { mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";
import { u32, uniqueName } from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();

Deno.test("contains KEY: integers little-endian in the value size, --hex bytes in memory order", () => {
  assert.deepEqual([...parseCandidate(["258"], false, 4)], [2, 1, 0, 0]);
  assert.deepEqual([...parseCandidate(["0x0102"], false, 2)], [2, 1]);
  assert.deepEqual([...parseCandidate(["-1"], false, 3)], [255, 255, 255]);
  assert.deepEqual(
    [...parseCandidate(["18446744073709551615"], false, 8)],
    [255, 255, 255, 255, 255, 255, 255, 255],
  );
  assert.deepEqual([...parseCandidate(["0a", "0x00", "0001"], true, 4)], [
    10,
    0,
    0,
    1,
  ]);
  for (
    const [args, hex, size] of [
      [["256"], false, 1],
      [["-129"], false, 1],
      [["12", "13"], false, 4],
      [["1.5"], false, 4],
      [["0g"], true, 1],
      [["01", "02"], true, 4],
      [[], false, 4],
    ] as const
  ) {
    assert.throws(
      () => parseCandidate([...args], hex, size),
      UsageError,
      `${args.join(" ")} (${hex ? "hex" : "integer"}, ${size} bytes)`,
    );
  }
});

Deno.test({
  name:
    "bpfmap contains: exit 0 maybe present, 1 absent, 2 usage or not a bloom filter",
  ignore,
  async fn(): Promise<void> {
    using bloom = BpfSyscallAccessor.createMap({
      type: MapType.BLOOM_FILTER,
      keySize: 0,
      valueSize: 4,
      maxEntries: 1000,
      name: uniqueName("cb"),
    });
    for (const n of [7, 4242, 0x01020304]) {
      mapUpdateElem(bloom.fd, null, u32(n));
    }
    const id = String(mapGetInfo(bloom.fd).id);
    for (const key of ["7", "4242", "0x01020304"]) {
      const run = await runCli("contains", "--id", id, key);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "maybe present\n");
    }
    const hex = await runCli("contains", "--id", id, "--hex", "04 03 02 01");
    assert.equal(hex.code, 0, hex.stderr);
    // 1000 entries, 5 hashes, 3 members: a false positive among 20 absent values is
    // possible but vanishingly rare (under 1e-9 for each)
    let absent = 0;
    for (let n = 100; n < 120; n++) {
      const run = await runCli("contains", "--id", id, String(n), "--json");
      if (run.code === 1) {
        assert.equal(run.stdout, `{"id":${id},"present":false}\n`);
        absent++;
      }
    }
    assert.equal(absent, 20);
    const wrongSize = await runCli("contains", "--id", id, "--hex", "01");
    assert.equal(wrongSize.code, 2);
    assert.match(wrongSize.stderr, /1 bytes but the filter's value size is 4/);
    using array = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: uniqueName("cb"),
    });
    const notBloom = await runCli(
      "contains",
      "--id",
      String(mapGetInfo(array.fd).id),
      "1",
    );
    assert.equal(notBloom.code, 2);
    assert.match(
      notBloom.stderr,
      /is a array map; contains tests bloom filters/,
    );
    const gone = await runCli("contains", "--id", "2147483647", "1");
    assert.equal(gone.code, 2);
  },
});

Deno.test({
  name:
    "bpfmap dump --recurse reads each inner map in place; without it, ids only",
  ignore,
  async fn(): Promise<void> {
    using inner = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 2,
      name: uniqueName("ri"),
    });
    mapUpdateElem(inner.fd, u32(1), u32(0xabcdef01));
    using outer = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY_OF_MAPS,
      keySize: 4,
      valueSize: 4,
      maxEntries: 3,
      name: uniqueName("ro"),
      innerMapFd: inner.fd,
    });
    mapUpdateElem(outer.fd, u32(2), u32(inner.fd));
    const id = String(mapGetInfo(outer.fd).id);
    const innerId = mapGetInfo(inner.fd).id;
    const plain = await runCli("dump", "--id", id, "--json");
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(JSON.parse(plain.stdout)[0].inner, undefined);
    const deep = await runCli("dump", "--id", id, "--json", "--recurse");
    assert.equal(deep.code, 0, deep.stderr);
    const [slot] = JSON.parse(deep.stdout);
    assert.equal(slot.inner.id, innerId);
    assert.deepEqual(slot.inner.elements[1], {
      key: ["0x01", "0x00", "0x00", "0x00"],
      value: ["0x01", "0xef", "0xcd", "0xab"],
    });
    const text = await runCli("dump", "--id", id, "--recurse");
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      new RegExp(`inner map ${innerId} ".*": 2 entries`),
    );
    const everything = await runCli("dump", "--recurse");
    assert.equal(everything.code, 2);
    assert.match(everything.stderr, /--recurse applies to one map's dump/);
    const help = await runCli("dump", "--help");
    assert.match(help.stdout, /--recurse/);
  },
});
