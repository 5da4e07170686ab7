import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { pageSize } from "../src/sys/elem.ts";
import type { OwnedFd } from "../src/sys/fd.ts";
import { progTestRun } from "../src/sys/prog.ts";
import { writeTypeDump } from "../src/cli/dump_types.ts";
import { MemorySink, OutputWriter } from "../src/cli/writer.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnlessCommands, ignoreUnlessRoot } from "./_support/env.ts";
import {
  loadRingbufOutputProgram,
  loadStackIdProgram,
  loadTrivialProgram,
  loadXdpProgram,
} from "./_support/bpf_prog.ts";
import { UdpSocket } from "./_support/libc.ts";
import { u32, u64, uniqueName } from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();
const ignoreBpftool = ignoreUnlessCommands("bpftool");

function create(
  type: number,
  keySize: number,
  valueSize: number,
  maxEntries: number,
  innerMapFd?: number,
): OwnedFd {
  return BpfSyscallAccessor.createMap({
    type,
    keySize,
    valueSize,
    maxEntries,
    name: uniqueName("ct"),
    ...(innerMapFd !== undefined ? { innerMapFd } : {}),
  });
}

function idOf(fd: OwnedFd): string {
  return String(mapGetInfo(fd.fd).id);
}

function bpftool(...args: string[]): string {
  const run = new Deno.Command("bpftool", { args }).outputSync();
  return new TextDecoder().decode(run.stdout);
}

async function sameAsBpftool(fd: OwnedFd, what: string): Promise<unknown> {
  const ours = await runCli("dump", "--id", idOf(fd), "--json");
  assert.equal(ours.code, 0, `${what}: ${ours.stderr}`);
  const theirs = bpftool("-j", "map", "dump", "id", idOf(fd));
  assert.deepEqual(JSON.parse(ours.stdout), JSON.parse(theirs), what);
  return JSON.parse(ours.stdout);
}

Deno.test({
  name:
    "bpfmap dump --json matches bpftool for object slots, stack traces and maps of maps, errors included",
  ignore: ignoreBpftool,
  async fn(): Promise<void> {
    using prog = loadTrivialProgram("ct_prog");
    using xdpDev = loadXdpProgram("ct_xdp_dev", "devmap");
    using xdpCpu = loadXdpProgram("ct_xdp_cpu", "cpumap");
    using socket = new UdpSocket();
    const pair = (a: number, b: number): Uint8Array =>
      new Uint8Array([...u32(a), ...u32(b)]);

    using progArray = create(MapType.PROG_ARRAY, 4, 4, 4);
    mapUpdateElem(progArray.fd, u32(1), u32(prog.fd));
    const progs = await sameAsBpftool(progArray, "prog_array") as unknown[];
    assert.equal(progs.length, 1);

    using devmap = create(MapType.DEVMAP, 4, 8, 3);
    mapUpdateElem(devmap.fd, u32(2), pair(1, xdpDev.fd));
    const devs = await sameAsBpftool(devmap, "devmap") as {
      value: unknown;
    }[];
    assert.deepEqual(devs[0]!.value, { error: "No such file or directory" });

    using cpumap = create(MapType.CPUMAP, 4, 8, 2);
    mapUpdateElem(cpumap.fd, u32(0), pair(64, xdpCpu.fd));
    await sameAsBpftool(cpumap, "cpumap");

    using perf = create(MapType.PERF_EVENT_ARRAY, 4, 4, 2);
    await sameAsBpftool(perf, "perf_event_array");
    using xsk = create(MapType.XSKMAP, 4, 4, 2);
    await sameAsBpftool(xsk, "xskmap");

    using sockmap = create(MapType.SOCKMAP, 4, 8, 2);
    mapUpdateElem(sockmap.fd, u32(0), u64(BigInt(socket.fd)));
    await sameAsBpftool(sockmap, "sockmap");

    using stacks = create(MapType.STACK_TRACE, 4, 8 * 32, 8);
    using stackProg = loadStackIdProgram("ct_stackid", stacks.fd);
    progTestRun(stackProg.fd, { ctx: new Uint8Array(8) });
    const shown = await sameAsBpftool(stacks, "stack_trace") as unknown[];
    assert.equal(shown.length, 1);

    using inner = create(MapType.ARRAY, 4, 8, 2);
    using arrayOfMaps = create(MapType.ARRAY_OF_MAPS, 4, 4, 3, inner.fd);
    mapUpdateElem(arrayOfMaps.fd, u32(1), u32(inner.fd));
    await sameAsBpftool(arrayOfMaps, "array_of_maps");
    using hashOfMaps = create(MapType.HASH_OF_MAPS, 4, 4, 3, inner.fd);
    mapUpdateElem(hashOfMaps.fd, u32(7), u32(inner.fd));
    await sameAsBpftool(hashOfMaps, "hash_of_maps");
  },
});

Deno.test({
  name:
    "bpfmap dump: ringbuf records, queue head and bloom filter in the documented shapes",
  ignore,
  async fn(): Promise<void> {
    using ring = create(MapType.RINGBUF, 0, 0, pageSize());
    using output = loadRingbufOutputProgram("ct_rb_out", ring.fd);
    const ctx = new Uint8Array(16);
    new DataView(ctx.buffer).setBigUint64(8, 0xffffffffffffffffn, true);
    progTestRun(output.fd, { ctx });
    const json = await runCli("dump", "--id", idOf(ring), "--json");
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout);
    assert.deepEqual(
      { ...parsed, records: parsed.records.length },
      {
        type: "ringbuf",
        capacity: pageSize(),
        consumer_pos: 0,
        producer_pos: 24,
        pending_bytes: 24,
        records: 1,
        problems: [],
      },
    );
    assert.deepEqual(parsed.records[0].data.slice(8), Array(8).fill("0xff"));
    const text = await runCli("dump", "--id", idOf(ring));
    assert.match(
      text.stdout,
      /^ringbuf: capacity \d+, consumer 0, producer 24, 24 bytes pending\n/,
    );
    assert.match(
      text.stdout,
      /record at 0: 16 bytes: 00 00 00 00 00 00 00 00 ff ff ff ff ff ff ff ff\n/,
    );
    assert.match(text.stdout, /Found 1 pending record\n$/);

    using queue = create(MapType.QUEUE, 0, 4, 4);
    mapUpdateElem(queue.fd, null, u32(5));
    mapUpdateElem(queue.fd, null, u32(6));
    const q = await runCli("dump", "--id", idOf(queue), "--json");
    const head = JSON.parse(q.stdout);
    assert.deepEqual(head.head, ["0x05", "0x00", "0x00", "0x00"]);
    assert.equal(head.type, "queue");
    assert.match(head.note, /only the head is visible/);
    const qText = await runCli("dump", "--id", idOf(queue));
    assert.match(qText.stdout, /head: 05 00 00 00\n/);

    using bloom = BpfSyscallAccessor.createMap({
      type: MapType.BLOOM_FILTER,
      keySize: 0,
      valueSize: 4,
      maxEntries: 16,
      name: uniqueName("ct"),
    });
    const b = await runCli("dump", "--id", idOf(bloom), "--json");
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(JSON.parse(b.stdout), {
      type: "bloom_filter",
      hashes: 0,
      value_size: 4,
      note:
        "a bloom filter only answers membership tests; its contents cannot be listed",
    });
  },
});

Deno.test({
  name:
    "bpfmap dump text: failed slots read like bpftool's, decoded objects named",
  ignore,
  async fn(): Promise<void> {
    using prog = loadTrivialProgram("ct_named");
    using progArray = create(MapType.PROG_ARRAY, 4, 4, 2);
    mapUpdateElem(progArray.fd, u32(0), u32(prog.fd));
    const text = await runCli("dump", "--id", idOf(progArray));
    assert.match(
      text.stdout,
      /^key: 00 00 00 00 {2}value: [0-9a-f ]{11} {2}\(prog \d+ "ct_named"\)\nFound 1 element\n$/,
    );
    using perf = create(MapType.PERF_EVENT_ARRAY, 4, 4, 1);
    const perfText = await runCli("dump", "--id", idOf(perf));
    assert.equal(
      perfText.stdout,
      "key:\n00 00 00 00\nvalue:\nUnknown error 524\nFound 0 elements\n",
    );
  },
});

Deno.test({
  name:
    "dump of an unknown type or a vanished map fails in one line and writes nothing",
  ignore,
  fn(): void {
    const fake = {
      id: 0x7ffffff0,
      name: "gone",
      keySize: 4,
      valueSize: 4,
      maxEntries: 4096,
      flags: 0,
      btfId: 0,
      btfKeyTypeId: 0,
      btfValueTypeId: 0,
      btfVmlinuxValueTypeId: 0,
      mapExtra: 0n,
      frozen: false,
      memlock: 0n,
    };
    const accessor = new BpfSyscallAccessor();
    for (
      const [type, pattern] of [
        [
          99,
          /^map "gone" \(id 2147483632\) is unreadable: map type 99 is not known to bpfmap/,
        ],
        // A vanished map is MapGoneError, as on every other read.
        [
          MapType.RINGBUF,
          /^map "gone" \(id 2147483632\) was freed while it was being read/,
        ],
        [
          MapType.PROG_ARRAY,
          /^map "gone" \(id 2147483632\) was freed while it was being read/,
        ],
      ] as const
    ) {
      const sink = new MemorySink();
      const out = new OutputWriter(sink);
      assert.throws(
        () => writeTypeDump(out, accessor, { ...fake, type }, { json: true }),
        (error: Error) =>
          pattern.test(error.message) && !error.message.includes("\n"),
      );
      out.flush();
      assert.equal(sink.text(), "", `type ${type}`);
    }
  },
});

Deno.test({
  name: "recursive map-of-maps dump nests each inner map's elements in place",
  ignore,
  fn(): void {
    using inner = create(MapType.HASH, 4, 8, 4);
    mapUpdateElem(inner.fd, u32(3), u64(0xffffffffffffffffn));
    using outer = create(MapType.HASH_OF_MAPS, 4, 4, 2, inner.fd);
    mapUpdateElem(outer.fd, u32(1), u32(inner.fd));
    const map = new BpfSyscallAccessor().mapById(Number(idOf(outer)))!;
    const sink = new MemorySink();
    {
      using out = new OutputWriter(sink);
      writeTypeDump(out, new BpfSyscallAccessor(), map, {
        json: true,
        recurse: true,
      });
      out.end();
    }
    assert.deepEqual(JSON.parse(sink.text()), [{
      key: ["0x01", "0x00", "0x00", "0x00"],
      value: [...u32(Number(idOf(inner)))].map((b) =>
        `0x${b.toString(16).padStart(2, "0")}`
      ),
      inner: {
        id: Number(idOf(inner)),
        name: mapGetInfo(inner.fd).name,
        elements: [{
          key: ["0x03", "0x00", "0x00", "0x00"],
          value: Array(8).fill("0xff"),
        }],
      },
    }]);
  },
});
