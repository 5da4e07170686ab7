/**
 * How long parsing vmlinux BTF takes, next to `bpftool btf dump file
 * /sys/kernel/btf/vmlinux > /dev/null` in the same run.
 *
 * Run: `deno run --allow-all bench/btf_parse_bench.ts [rounds]`
 *
 * @module
 */

import { Btf, BtfKind, VMLINUX_BTF_PATH } from "../src/btf/mod.ts";

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function time(fn: () => void): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

const rounds = Number(Deno.args[0] ?? 7);
const bytes = Deno.readFileSync(VMLINUX_BTF_PATH);
const parse: number[] = [];
const decodeAll: number[] = [];
const lookup: number[] = [];
const bpftool: number[] = [];
let types = 0;
for (let round = 0; round < rounds; round++) {
  let btf: Btf | undefined;
  parse.push(time(() => btf = Btf.parse(bytes)));
  types = btf!.typeCount;
  lookup.push(time(() => btf!.memberOffset("bpf_map", "name")));
  decodeAll.push(time(() => {
    for (let id = 1; id < btf!.typeCount; id++) {
      const t = btf!.type(id);
      if (t.kind === BtfKind.STRUCT) btf!.sizeOf(id);
    }
  }));
  bpftool.push(time(() => {
    const out = new Deno.Command("bpftool", {
      args: ["btf", "dump", "file", VMLINUX_BTF_PATH],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    if (!out.success) throw new Error("bpftool btf dump failed");
  }));
}
const p = median(parse);
const full = p + median(lookup) + median(decodeAll);
const b = median(bpftool);
console.log(
  `vmlinux BTF: ${bytes.byteLength} bytes, ${types} type ids, ${rounds} rounds (medians)`,
);
console.log(`Btf.parse (validate + index)         ${p.toFixed(1)} ms`);
console.log(
  `first memberOffset (builds name index) ${median(lookup).toFixed(1)} ms`,
);
console.log(
  `decode every type                    ${median(decodeAll).toFixed(1)} ms`,
);
console.log(`bpftool btf dump file > /dev/null    ${b.toFixed(1)} ms`);
console.log(`ratio parse / bpftool                ${(p / b).toFixed(3)}`);
console.log(`ratio parse+index+decode-all / bpftool ${(full / b).toFixed(3)}`);
