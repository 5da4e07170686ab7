/**
 * The guest backend's programs on the synthetic image (tests/contract/
 * guest_image.ts): per-CPU run statistics summed exactly, the stats key
 * honoured, and hostile bytes in `prog_idr` or a program's records ending
 * in a recorded problem, never a hang or a wrong record.
 */

import assert from "node:assert/strict";
import type { BpfProgramInfo } from "../src/accessor/types.ts";
import { intBtfBlob } from "./_support/maps.ts";
import {
  buildGuestImage,
  GUEST_LAYOUT,
  GUEST_PROGRAM_LAYOUT,
  GUEST_PROGRAM_LOAD_TIME,
  GUEST_PROGRAM_UID,
  type GuestImage,
  PAGE_OFFSET,
} from "./contract/guest_image.ts";

function image(): GuestImage {
  return buildGuestImage(intBtfBlob());
}

function byName(
  guest: GuestImage,
  role: "plain" | "withMaps",
): BpfProgramInfo | undefined {
  return guest.accessor.programs().find((p) =>
    p.name === guest.programNames[role]
  );
}

const P = GUEST_PROGRAM_LAYOUT;

Deno.test("guest programs: run statistics are the per-CPU counters summed exactly (all 64 bits), and the record's other facts", () => {
  const guest = image();
  using _ = guest.accessor;
  const plain = byName(guest, "plain")!;
  // CPU 0 + CPU 1: 0x8000_0000_0000_0001 + 0x7fff_ffff_ffff_fffe needs all 64 bits.
  assert.equal(plain.runTimeNs, 0xffff_ffff_ffff_ffffn);
  assert.equal(plain.runCnt, 7n);
  assert.equal(plain.recursionMisses, 1n);
  assert.equal(plain.statsNote, undefined);
  assert.equal(plain.uid, GUEST_PROGRAM_UID);
  assert.equal(plain.loadTime, GUEST_PROGRAM_LOAD_TIME);
  assert.equal(plain.bytesMemlock, 4096n);
  assert.equal(plain.bytesJited, 20 + plain.id);
  assert.equal(plain.kernelAddress, PAGE_OFFSET + guest.programs.plain.prog);
  // Stats on (the key is set): counters of zero are still shown.
  const withMaps = byName(guest, "withMaps")!;
  assert.equal(withMaps.runCnt, 0n);
  assert.equal(withMaps.runTimeNs, 0n);
});

Deno.test("guest programs: with bpf_stats_enabled_key off, zero counters are absent with the reason, counted ones stay", () => {
  const guest = image();
  using _ = guest.accessor;
  guest.ram.u32(guest.statsKey + BigInt(P.staticKeyEnabled!), 0);
  const withMaps = byName(guest, "withMaps")!;
  assert.equal(withMaps.runCnt, undefined);
  assert.equal(withMaps.statsNote, "kernel.bpf_stats_enabled is 0");
  assert.equal(byName(guest, "plain")!.runCnt, 7n);
});

Deno.test("guest programs: an unmapped stats pointer leaves the statistics out with a reason, not the program", () => {
  const guest = image();
  using _ = guest.accessor;
  guest.ram.u64(guest.programs.plain.prog + BigInt(P.stats), 0xdead_0000n);
  const plain = byName(guest, "plain")!;
  assert.equal(plain.runCnt, undefined);
  assert.match(plain.statsNote ?? "", /bpf_prog_stats unreadable/);
  assert.deepEqual(guest.accessor.problems(), []);
});

Deno.test("guest programs: an implausible used_map_cnt skips that program with a problem; the others are listed", () => {
  const guest = image();
  using _ = guest.accessor;
  guest.ram.u32(guest.programs.withMaps.aux + BigInt(P.usedMapCnt), 0xffffffff);
  const names = guest.accessor.programs().map((p) => p.name);
  assert.deepEqual(names, [guest.programNames.plain]);
  const problems = guest.accessor.problems();
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.what, "program");
  assert.match(
    problems[0]!.message,
    new RegExp(`entry ${guest.programs.withMaps.id} .*used_map_cnt 4294967295`),
  );
});

Deno.test("guest programs: an aux pointer into unmapped memory and a used map pointer to nowhere are problems naming the entry", () => {
  const guest = image();
  using _ = guest.accessor;
  guest.ram.u64(
    guest.programs.plain.prog + BigInt(P.aux),
    0xffff_ffff_dead_0000n,
  );
  const used = guest.ram.bytes.subarray(
    Number(guest.programs.withMaps.aux + BigInt(P.usedMaps)),
  );
  const usedArray = new DataView(used.buffer, used.byteOffset)
    .getBigUint64(0, true) - PAGE_OFFSET;
  guest.ram.u64(usedArray + 8n, 0x1234n);
  assert.deepEqual(guest.accessor.programs(), []);
  const messages = guest.accessor.problems().map((p) => p.message);
  assert.equal(messages.length, 2);
  assert.match(messages[0]!, /entry 5 .*bpf_prog\.aux|entry 5 .*unreadable/);
  assert.match(messages[1]!, /entry 9 .*used_maps\[1\]/);
});

Deno.test("guest programs: an xa_node that points back at itself ends the walk with a problem, not a hang", () => {
  const guest = image();
  using _ = guest.accessor;
  const slot = guest.progNode + BigInt(GUEST_LAYOUT.xarray.nodeSlots + 20 * 8);
  guest.ram.u64(slot, (PAGE_OFFSET + guest.progNode) | 2n);
  const ids = guest.accessor.programs().map((p) => p.id);
  assert.deepEqual(ids, [5, 9]);
  const problems = guest.accessor.problems();
  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /^prog_idr: /);
});

Deno.test("guest programs: an entry whose record has another id is listed under its own id and the mismatch recorded", () => {
  const guest = image();
  using _ = guest.accessor;
  guest.ram.u32(guest.programs.plain.aux + BigInt(P.auxId), 77);
  assert.equal(guest.accessor.programById(77)?.name, guest.programNames.plain);
  assert.equal(guest.accessor.programById(5), null);
  assert.match(
    guest.accessor.problems()[0]?.message ?? "",
    /entry 5 points at 0x[0-9a-f]+ whose id is 77/,
  );
});

Deno.test("guest programs: refresh() rereads prog_idr after the guest ran", () => {
  const guest = image();
  using _ = guest.accessor;
  assert.equal(guest.accessor.programs().length, 2);
  guest.ram.u64(
    guest.progNode + BigInt(GUEST_LAYOUT.xarray.nodeSlots + 9 * 8),
    0n,
  );
  assert.equal(guest.accessor.programs().length, 2, "cached until refresh");
  guest.accessor.refresh();
  assert.deepEqual(guest.accessor.programs().map((p) => p.id), [5]);
});

Deno.test("guest programs: a program with subprograms reports the sum of their jited_len, as bpf() does; an absurd func_cnt is a problem", () => {
  const guest = image();
  using _ = guest.accessor;
  const { aux } = guest.programs.withMaps;
  const subs = P.subprograms!;
  const array = guest.ram.alloc();
  [100, 30].forEach((length, i) => {
    const sub = guest.ram.alloc();
    guest.ram.u32(sub + BigInt(P.jitedLen), length);
    guest.ram.u64(array + BigInt(i * 8), PAGE_OFFSET + sub);
  });
  guest.ram.u32(aux + BigInt(subs.funcCnt), 2);
  guest.ram.u64(aux + BigInt(subs.func), PAGE_OFFSET + array);
  const withMaps = byName(guest, "withMaps")!;
  assert.equal(withMaps.bytesJited, 130);
  assert.equal(withMaps.jited, true);
  guest.ram.u32(aux + BigInt(subs.funcCnt), 100_000);
  guest.accessor.refresh();
  assert.equal(byName(guest, "withMaps"), undefined);
  assert.match(
    guest.accessor.problems()[0]?.message ?? "",
    /entry 9 .*func_cnt 100000 is past 256/,
  );
});
