/**
 * The "special fields" of a map value: kernel-owned objects (`bpf_timer`,
 * `bpf_spin_lock`, kptrs, list and rbtree roots, ...) that the kernel never
 * hands to user space. When bpf() copies a value out
 * (`bpf_map_copy_value` → `check_and_init_map_value` → `bpf_obj_init`) it
 * re-initialises each of them in the copy: zeros, except `bpf_refcount`,
 * which reads 1. A reader of raw kernel memory must do the same, or it would
 * leak kernel pointers and disagree with bpf().
 *
 * Which fields count is decided from the map's BTF exactly as the guest
 * kernel's `btf_parse_fields` (kernel/bpf/btf.c) decides it. That changed
 * over time, so the rules are a parameter ({@linkcode SpecialFieldRules}):
 *
 * - 6.1: only direct members (or data-section variables) named
 *   `bpf_spin_lock` / `bpf_timer`, and pointers tagged `kptr` / `kptr_ref`.
 * - 6.2+: the kinds are the enumerators of the kernel's own
 *   `enum btf_field_type`; 6.12 adds `bpf_wq`, 6.13 `uptr`, 6.15
 *   `bpf_res_spin_lock`, 7.x `bpf_task_work`. List and rbtree *nodes* are
 *   never special in a map value (they are not in `map_check_btf`'s mask).
 * - 6.11+ (`nested`): members of nested structs and arrays of fields count
 *   too, repeated per array element.
 *
 * @module
 */

import type { Btf } from "./btf.ts";
import { BtfKind } from "./kind.ts";
import type { BtfComposite, BtfType } from "./types.ts";

/** A kind of kernel-owned field. */
export type SpecialFieldKind =
  | "spin_lock"
  | "res_spin_lock"
  | "timer"
  | "wq"
  | "task_work"
  | "list_head"
  | "rb_root"
  | "refcount"
  | "kptr"
  | "uptr";

/** One kernel-owned field of a map value. */
export interface SpecialField {
  /** What it is. */
  kind: SpecialFieldKind;
  /** Byte offset in the value. */
  offset: number;
  /** Byte size (the kernel's `btf_field_type_size`). */
  size: number;
}

/** Which fields a kernel recognises; see the module doc. */
export interface SpecialFieldRules {
  /** Kinds this kernel treats as special in map values. */
  kinds: ReadonlySet<SpecialFieldKind>;
  /** Pointer type tags that make a kptr/uptr, with the kind each makes. */
  pointerTags: ReadonlyMap<string, "kptr" | "uptr">;
  /** Fields inside nested structs and arrays count (6.11+). */
  nested: boolean;
}

/** The struct each struct-shaped kind is recognised by (by name), its size and alignment on x86-64. */
const STRUCT_KINDS: readonly {
  kind: SpecialFieldKind;
  struct: string;
  size: number;
  align: number;
}[] = [
  { kind: "spin_lock", struct: "bpf_spin_lock", size: 4, align: 4 },
  { kind: "res_spin_lock", struct: "bpf_res_spin_lock", size: 4, align: 4 },
  { kind: "timer", struct: "bpf_timer", size: 16, align: 8 },
  { kind: "wq", struct: "bpf_wq", size: 16, align: 8 },
  { kind: "task_work", struct: "bpf_task_work", size: 8, align: 8 },
  { kind: "list_head", struct: "bpf_list_head", size: 16, align: 8 },
  { kind: "rb_root", struct: "bpf_rb_root", size: 16, align: 8 },
  { kind: "refcount", struct: "bpf_refcount", size: 4, align: 4 },
];

/** `enum btf_field_type` enumerators (6.2+) and the kind each stands for. */
const ENUMERATORS: ReadonlyMap<string, SpecialFieldKind> = new Map([
  ["BPF_SPIN_LOCK", "spin_lock"],
  ["BPF_RES_SPIN_LOCK", "res_spin_lock"],
  ["BPF_TIMER", "timer"],
  ["BPF_WORKQUEUE", "wq"],
  ["BPF_TASK_WORK", "task_work"],
  ["BPF_LIST_HEAD", "list_head"],
  ["BPF_RB_ROOT", "rb_root"],
  ["BPF_REFCOUNT", "refcount"],
  ["BPF_KPTR_REF", "kptr"],
  ["BPF_UPTR", "uptr"],
]);

/** 6.1: spin locks, timers and `kptr`/`kptr_ref` pointers, direct members only. */
export const LEGACY_SPECIAL_FIELD_RULES: SpecialFieldRules = {
  kinds: new Set(["spin_lock", "timer", "kptr"]),
  pointerTags: new Map([["kptr", "kptr"], ["kptr_ref", "kptr"]]),
  nested: false,
};

/** Every kind 7.3 knows, nested fields included. */
export const CURRENT_SPECIAL_FIELD_RULES: SpecialFieldRules = {
  kinds: new Set(ENUMERATORS.values()),
  pointerTags: new Map([
    ["kptr_untrusted", "kptr"],
    ["kptr", "kptr"],
    ["percpu_kptr", "kptr"],
    ["uptr", "uptr"],
  ]),
  nested: true,
};

/**
 * The rules of a running kernel, from its own vmlinux BTF (the `BPF_*`
 * enumerators of `enum btf_field_type`, 6.2+; 6.1's enum of that name has
 * `BTF_FIELD_*` ones) and its release (nested fields from 6.11).
 *
 * @param vmlinux the kernel's BTF
 * @param release `uname -r` / VMCOREINFO `OSRELEASE`
 */
export function specialFieldRulesFor(
  vmlinux: Btf,
  release: string,
): SpecialFieldRules {
  const fieldType = vmlinux.findByName("btf_field_type", BtfKind.ENUM);
  const names = new Set(
    fieldType?.kind === BtfKind.ENUM ? fieldType.values.map((v) => v.name) : [],
  );
  // 6.1 has an enum of that name too, private to btf.c: BTF_FIELD_SPIN_LOCK, ...
  if (!names.has("BPF_SPIN_LOCK")) return LEGACY_SPECIAL_FIELD_RULES;
  const kinds = new Set<SpecialFieldKind>();
  for (const [name, kind] of ENUMERATORS) if (names.has(name)) kinds.add(kind);
  const tags = new Map<string, "kptr" | "uptr">([
    ["kptr_untrusted", "kptr"],
    ["kptr", "kptr"],
  ]);
  if (names.has("BPF_KPTR_PERCPU")) tags.set("percpu_kptr", "kptr");
  if (kinds.has("uptr")) tags.set("uptr", "uptr");
  const [major = 0, minor = 0] = release.split(/[.-]/, 2).map(Number);
  return {
    kinds,
    pointerTags: tags,
    nested: major > 6 || (major === 6 && minor >= 11),
  };
}

const MAX_DEPTH = 32; // the kernel's MAX_RESOLVE_DEPTH
const MAX_FIELDS = 1024;

/**
 * The special fields of a map value, in offset order: `valueTypeId` is the
 * map's `btf_value_type_id` (a struct, or a DATASEC for global data;
 * typedefs and qualifiers on it are looked through as `btf_type_id_size`
 * does). Values of other types have none.
 *
 * @example
 * ```ts ignore
 * const fields = findSpecialFields(btf, map.btfValueTypeId, CURRENT_SPECIAL_FIELD_RULES);
 * ```
 */
export function findSpecialFields(
  btf: Btf,
  valueTypeId: number,
  rules: SpecialFieldRules,
): SpecialField[] {
  if (valueTypeId === 0) return [];
  const top = btf.type(btf.resolve(valueTypeId));
  const found: SpecialField[] = [];
  if (top.kind === BtfKind.STRUCT) {
    structFields(btf, top, 0, rules, found, 0);
  } else if (top.kind === BtfKind.DATASEC) {
    for (const v of top.vars) {
      const variable = btf.type(v.type);
      if (variable.kind !== BtfKind.VAR) continue;
      fieldOne(btf, variable.type, v.offset, v.size, rules, found, 0);
    }
  }
  return found.sort((a, b) => a.offset - b.offset);
}

function structFields(
  btf: Btf,
  struct: BtfComposite,
  base: number,
  rules: SpecialFieldRules,
  out: SpecialField[],
  depth: number,
): void {
  for (const member of struct.members) {
    if (member.bitOffset % 8 !== 0) continue; // C never places a struct or pointer off a byte
    fieldOne(
      btf,
      member.type,
      base + member.bitOffset / 8,
      0,
      rules,
      out,
      depth,
    );
  }
}

/** `btf_find_field_one`: `expectedSize` is the data-section variable's size (0 for members). */
function fieldOne(
  btf: Btf,
  typeId: number,
  offset: number,
  expectedSize: number,
  rules: SpecialFieldRules,
  out: SpecialField[],
  depth: number,
): void {
  if (depth >= MAX_DEPTH || out.length > MAX_FIELDS) return;
  let type = btf.type(typeId);
  let nelems = 1;
  if (rules.nested) {
    for (let i = 0; i < MAX_DEPTH && type.kind === BtfKind.ARRAY; i++) {
      nelems *= type.nelems;
      type = btf.type(type.type);
    }
    if (nelems === 0 || type.kind === BtfKind.ARRAY) return;
  }
  const struct = type.kind === BtfKind.STRUCT ? type : null;
  const known = struct
    ? STRUCT_KINDS.find((k) =>
      k.struct === struct.name && rules.kinds.has(k.kind)
    )
    : undefined;
  if (struct && known) {
    if (expectedSize !== 0 && expectedSize !== known.size * nelems) return;
    if (offset % known.align !== 0 || struct.size !== known.size) return;
    // only pointer-like fields repeat over arrays; the kernel rejects arrays of the rest
    if (nelems > 1 && known.kind !== "list_head" && known.kind !== "rb_root") {
      return;
    }
    for (let i = 0; i < nelems; i++) {
      out.push({
        kind: known.kind,
        offset: offset + i * known.size,
        size: known.size,
      });
    }
    return;
  }
  if (struct) {
    if (!rules.nested) return;
    if (expectedSize !== 0 && expectedSize !== struct.size * nelems) return;
    for (let i = 0; i < nelems; i++) {
      structFields(
        btf,
        struct,
        offset + i * struct.size,
        rules,
        out,
        depth + 1,
      );
    }
    return;
  }
  const pointer = pointerKind(btf, type, rules);
  if (!pointer) return;
  if (expectedSize !== 0 && expectedSize !== 8 * nelems) return;
  if (offset % 8 !== 0) return;
  for (let i = 0; i < nelems; i++) {
    out.push({ kind: pointer, offset: offset + i * 8, size: 8 });
  }
}

/** `btf_find_kptr`: a pointer (volatile allowed) whose pointee chain carries one kptr/uptr type tag. */
function pointerKind(
  btf: Btf,
  type: BtfType,
  rules: SpecialFieldRules,
): "kptr" | "uptr" | null {
  if (!rules.kinds.has("kptr") && !rules.kinds.has("uptr")) return null;
  let t = type;
  if (t.kind === BtfKind.VOLATILE && rules.nested) t = btf.type(t.type);
  if (t.kind !== BtfKind.PTR) return null;
  let found: "kptr" | "uptr" | null = null;
  let id = t.type;
  for (let i = 0; i < MAX_DEPTH; i++) {
    const next = btf.type(id);
    if (
      next.kind !== BtfKind.TYPEDEF && next.kind !== BtfKind.VOLATILE &&
      next.kind !== BtfKind.CONST && next.kind !== BtfKind.RESTRICT &&
      next.kind !== BtfKind.TYPE_TAG
    ) break;
    if (next.kind === BtfKind.TYPE_TAG) {
      const kind = rules.pointerTags.get(next.name);
      if (kind) found = kind;
    }
    id = next.type;
  }
  return found && rules.kinds.has(found) ? found : null;
}

/**
 * Re-initialises the special fields in `bytes`, a copy of value bytes
 * `[start, start + bytes.length)`, as the kernel does before copying a value
 * to user space: zeros, and 1 in a `bpf_refcount`. (A `bpf_list_head` comes
 * back from the kernel pointing at itself inside a temporary kernel buffer,
 * an address nobody can reproduce; it is zeroed here.)
 *
 * @param fields from {@linkcode findSpecialFields}
 * @param bytes the copy to fix, modified in place
 * @param start the value offset `bytes[0]` holds
 */
export function initSpecialFields(
  fields: readonly SpecialField[],
  bytes: Uint8Array,
  start = 0,
): void {
  const end = start + bytes.length;
  for (const field of fields) {
    const from = Math.max(field.offset, start);
    const to = Math.min(field.offset + field.size, end);
    if (from >= to) continue;
    bytes.fill(0, from - start, to - start);
    if (field.kind === "refcount" && field.offset >= start) {
      bytes[field.offset - start] = 1; // refcount_set(1), little-endian
    }
  }
}
