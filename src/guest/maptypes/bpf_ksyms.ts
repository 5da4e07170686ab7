/**
 * The symbols of JIT-compiled BPF programs, trampolines and dispatchers
 * (`bpf_prog_<tag>_<name>`, ...): the guest's kallsyms tables hold only the
 * kernel image's symbols, and the kernel adds these at run time to the
 * `bpf_kallsyms` list of `struct bpf_ksym`, which `/proc/kallsyms` also
 * lists. Reading that list lets a stack frame inside a BPF program be named
 * from memory as bpf() in the guest would name it.
 *
 * @module
 */

import type { Btf } from "../../btf/mod.ts";
import type { KernelAddressSpace } from "../paging.ts";

/** `struct bpf_ksym`. */
export interface BpfKsymLayout {
  /** `start` (unsigned long). */
  start: number;
  /** `name` (char array). */
  name: number;
  /** Bytes of `name` (`KSYM_NAME_LEN`). */
  nameLength: number;
  /** `lnode` (`struct list_head`, `next` first). */
  lnode: number;
}

/** The layout, or null when the guest's BTF lacks `struct bpf_ksym`. */
export function bpfKsymLayoutFromBtf(btf: Btf): BpfKsymLayout | null {
  try {
    const name = btf.memberOffset("bpf_ksym", "name");
    return {
      start: btf.memberOffset("bpf_ksym", "start").offset,
      name: name.offset,
      nameLength: btf.sizeOf(name.type),
      lnode: btf.memberOffset("bpf_ksym", "lnode").offset,
    };
  } catch {
    return null;
  }
}

/** Most entries walked: a corrupt list never loops forever. */
const MAX_KSYMS = 1 << 16;

/**
 * Every `bpf_ksym` on the list headed at `head` (the `bpf_kallsyms` symbol),
 * as text symbols. Stops at an unreadable entry or after `MAX_KSYMS`: what
 * was read is still right, and a frame left unnamed is only less helpful.
 */
export function readBpfKsyms(
  space: KernelAddressSpace,
  layout: BpfKsymLayout,
  head: bigint,
): { address: bigint; type: string; name: string }[] {
  const out: { address: bigint; type: string; name: string }[] = [];
  let node = space.u64(head);
  const decoder = new TextDecoder();
  while (
    node !== null && node !== head && node !== 0n && out.length < MAX_KSYMS
  ) {
    const entry = node - BigInt(layout.lnode);
    const start = space.u64(entry + BigInt(layout.start));
    const name = space.read(entry + BigInt(layout.name), layout.nameLength);
    if (start === null || name === null) break;
    const end = name.indexOf(0);
    out.push({
      address: start,
      type: "t",
      name: decoder.decode(end < 0 ? name : name.subarray(0, end)),
    });
    node = space.u64(node);
  }
  return out;
}
