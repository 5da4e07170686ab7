import { deepEqual, equal, ok } from "node:assert/strict";
import { ignoreUnlessRoot } from "./_support/env.ts";
import { runCli } from "./_support/cli.ts";
import { uniqueName } from "./_support/maps.ts";
import { BtfBuilder } from "./btf_builder.ts";
import {
  Btf,
  formatValue,
  parseJsonExact,
  renderValue,
  toJson,
} from "../src/btf/mod.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { btfLoad, mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { dumpState, reportToJson, reportToText } from "../src/dump/mod.ts";

/**
 * What tracing tools emit and clang never does (clang-16 drops unnamed
 * bitfields and names every scalar member): a tuple key of two unnamed u64s
 * and a value `{char[16], u32}` with no names, plus an unnamed member next
 * to named ones inside and outside an anonymous struct.
 */
function unnamedBtf(): { bytes: Uint8Array; key: number; value: number } {
  const b = new BtfBuilder();
  const u64 = b.int("unsigned long long", 8);
  const u32 = b.int("unsigned int", 4);
  const char = b.int("char", 1, true);
  const comm = b.array(char, 16, u32);
  const key = b.struct("", 16, [
    { name: "", type: u64, bitOffset: 0 },
    { name: "", type: u64, bitOffset: 64 },
  ]);
  const inner = b.struct("", 8, [
    { name: "", type: u32, bitOffset: 0 },
    { name: "y", type: u32, bitOffset: 32 },
  ]);
  const value = b.struct("", 40, [
    { name: "", type: comm, bitOffset: 0 },
    { name: "", type: u32, bitOffset: 128 },
    { name: "pid", type: u32, bitOffset: 160 },
    { name: "", type: inner, bitOffset: 192 },
    // An unnamed bitfield between named ones: its bits are kept too.
    { name: "lo", type: u32, bitOffset: 256, bitfieldSize: 4 },
    { name: "", type: u32, bitOffset: 260, bitfieldSize: 4 },
    { name: "hi", type: u32, bitOffset: 264, bitfieldSize: 8 },
  ]);
  return { bytes: b.build(), key, value };
}

function keyBytes(a: bigint, b: bigint): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, a, true);
  view.setBigUint64(8, b, true);
  return bytes;
}

function valueBytes(comm: string, count: number, pid: number): Uint8Array {
  const bytes = new Uint8Array(40);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(comm));
  view.setUint32(16, count, true);
  view.setUint32(20, pid, true);
  view.setUint32(24, 77, true);
  view.setUint32(28, 88, true);
  bytes[32] = 0x5a; // lo = 0xa, the unnamed nibble = 5
  bytes[33] = 0xc3; // hi
  return bytes;
}

const EXPECTED_VALUE = {
  "#0": "curl",
  "#1": 3,
  pid: 42,
  "#3": 77,
  y: 88,
  lo: 10,
  "#6": 5,
  hi: 195,
};

Deno.test("renderValue() keeps unnamed members under unique positional keys", () => {
  const { bytes, key, value } = unnamedBtf();
  const btf = Btf.parse(bytes);
  const big = 0xfffffffffffffffen;
  deepEqual(renderValue(btf, key, keyBytes(1n, big)), { "#0": 1n, "#1": big });
  // Distinct keys stay distinct (they rendered as the same {} before).
  equal(
    toJson(renderValue(btf, key, keyBytes(1n, 2n))),
    '{"#0":1,"#1":2}',
  );
  ok(
    toJson(renderValue(btf, key, keyBytes(1n, 2n))) !==
      toJson(renderValue(btf, key, keyBytes(2n, 1n))),
  );
  equal(
    toJson(renderValue(btf, key, keyBytes(1n, big))),
    '{"#0":1,"#1":18446744073709551614}',
  );
  const rendered = renderValue(btf, value, valueBytes("curl", 3, 42));
  deepEqual(rendered, EXPECTED_VALUE);
  deepEqual(JSON.parse(toJson(rendered)), EXPECTED_VALUE);
  // Text shows unnamed members in order, without a key, like a C initializer.
  equal(
    formatValue(rendered),
    '{"curl", 3, pid = 42, 77, y = 88, lo = 10, 5, hi = 195}',
  );
  equal(formatValue(renderValue(btf, key, keyBytes(1n, big))), `{1, ${big}}`);
  // bpftool style keeps bpftool's repeated "" (the last one wins in JS).
  deepEqual(
    renderValue(btf, key, keyBytes(1n, 2n), { style: "bpftool" }),
    { "": 2n },
  );
});

Deno.test({
  name:
    "a kernel map typed by BTF with unnamed members shows every value in dump --json, dump and the failure dump",
  ignore: ignoreUnlessRoot(),
  async fn(): Promise<void> {
    const { bytes, key, value } = unnamedBtf();
    using btfFd = btfLoad(bytes);
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 16,
      valueSize: 40,
      maxEntries: 8,
      name: uniqueName("unnamed"),
      btfFd: btfFd.fd,
      btfKeyTypeId: key,
      btfValueTypeId: value,
    });
    const id = mapGetInfo(fd.fd).id;
    mapUpdateElem(fd.fd, keyBytes(1n, 2n), valueBytes("curl", 3, 42));
    mapUpdateElem(fd.fd, keyBytes(2n, 1n), valueBytes("sshd", 4, 43));

    const json = await runCli("dump", "--id", String(id), "--json");
    equal(json.code, 0, json.stderr);
    const elements = parseJsonExact(json.stdout) as {
      formatted: { key: Record<string, unknown>; value: unknown };
    }[];
    const byKey = new Map(
      elements.map((e) => [JSON.stringify(e.formatted.key), e.formatted]),
    );
    deepEqual([...byKey.keys()].sort(), [
      '{"#0":1,"#1":2}',
      '{"#0":2,"#1":1}',
    ]);
    deepEqual(byKey.get('{"#0":1,"#1":2}')!.value, EXPECTED_VALUE);
    deepEqual(byKey.get('{"#0":2,"#1":1}')!.value, {
      ...EXPECTED_VALUE,
      "#0": "sshd",
      "#1": 4,
      pid: 43,
    });

    const text = await runCli("dump", "--id", String(id));
    equal(text.code, 0, text.stderr);
    ok(
      text.stdout.includes(
        'key: {1, 2}  value: {"curl", 3, pid = 42, 77, y = 88, lo = 10, 5, hi = 195}\n',
      ),
      text.stdout,
    );
    ok(text.stdout.includes('key: {2, 1}  value: {"sshd", 4, pid = 43'));

    const report = dumpState(new BpfSyscallAccessor(), {
      filter: (m) => m.id === id,
    });
    equal(report.maps.length, 1);
    deepEqual(report.maps[0]!.errors, []);
    const entries = report.maps[0]!.entries;
    equal(entries.length, 2);
    const reportJson = parseJsonExact(reportToJson(report)) as {
      maps: { entries: { key: unknown; value: unknown }[] }[];
    };
    const first = reportJson.maps[0]!.entries.find((e) =>
      JSON.stringify(e.key) === '{"#0":1,"#1":2}'
    );
    deepEqual(first?.value, EXPECTED_VALUE);
    const reportText = reportToText(report);
    ok(
      reportText.includes(
        '  {1, 2}: {"curl", 3, pid = 42, 77, y = 88, lo = 10, 5, hi = 195}',
      ),
      reportText,
    );
  },
});
