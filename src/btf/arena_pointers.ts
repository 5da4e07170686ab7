/**
 * Where a value may hold BPF arena pointers, from its BTF alone.
 *
 * clang does not say which pointers are arena pointers: `__arena` is
 * `address_space(1)`, and the BTF clang emits for
 * `struct sdt_chunk __arena *chunk` is a plain PTR (LLVM writes no type tag
 * for address spaces; only kfunc arguments carry the `arg:arena` decl tag).
 * Programs also keep arena pointers in `__u64` fields (scx_sdt's
 * allocator, scx_qmap's `cmask_arena_addr`). So every pointer and every
 * unsigned 64-bit integer is a candidate, and the reader (src/dump/arena.ts)
 * decides by value: a slot is an arena pointer when it holds an address
 * inside an arena's user range (`user_vm_start` .. `+ max_entries` pages;
 * kernel/bpf/arena.c: arena pointers are user addresses, the program
 * accesses `kern_vm_start + (u32)ptr`). Kernel pointers live in the upper
 * half and never fall in such a range.
 *
 * This module only reads BTF: no memory, no accessor.
 *
 * @module
 */

import type { Btf } from "./btf.ts";
import { cpumaskLayout } from "./cpumask.ts";
import { BtfKind } from "./kind.ts";

/** A place in a value that may hold an arena pointer. */
export interface PointerSlot {
  /** C-like path from the value's start: `data`, `pool.slab`, `descs[3]`. */
  path: string;
  /** Byte offset of the 8-byte slot in the value. */
  offset: number;
  /**
   * The pointee's type id for a pointer (a forward declaration replaced by
   * the complete struct/union of that name when the BTF has one; 0 for
   * `void`); undefined for a `u64`, whose pointee the BTF does not say.
   */
  pointee: number | undefined;
}

/** Bounds of {@linkcode pointerSlots}. */
export interface PointerSlotLimits {
  /** Most slots listed per type (default 1024: a 512-entry pointer array and more). */
  maxSlots?: number;
}

/** Nesting past which a type is treated as corrupt and its walk stops. */
const MAX_WALK_DEPTH = 32;

/**
 * Every pointer and unsigned 64-bit integer in type `typeId`, in layout
 * order, at most `maxSlots` of them (a value with more is cut there, which
 * only bounds what is followed). Bitfields, cpumasks and the bytes behind
 * a flexible array are never slots.
 *
 * @param btf the BTF the type lives in
 * @param typeId the value's type
 * @param limits bounds
 * @returns the slots
 */
export function pointerSlots(
  btf: Btf,
  typeId: number,
  limits: PointerSlotLimits = {},
): PointerSlot[] {
  const max = limits.maxSlots ?? 1024;
  const out: PointerSlot[] = [];
  // Whether a type holds any slot, so that an array of a million counters
  // is passed over at once instead of element by element.
  const holds = new Map<number, boolean>();
  const holdsSlots = (id: number, depth: number): boolean => {
    if (depth > MAX_WALK_DEPTH) return false;
    const t = btf.type(btf.resolve(id));
    const known = holds.get(t.id);
    if (known !== undefined) return known;
    let found = false;
    if (t.kind === BtfKind.PTR) found = true;
    else if (t.kind === BtfKind.INT) {
      found = t.size === 8 && !t.signed && !t.bool && t.bits === 64;
    } else if (t.kind === BtfKind.ARRAY) {
      found = t.nelems > 0 && holdsSlots(t.type, depth + 1);
    } else if (
      (t.kind === BtfKind.STRUCT || t.kind === BtfKind.UNION) &&
      !cpumaskLayout(btf, t.id)
    ) {
      found = t.members.some((m) =>
        !m.bitfieldSize && m.bitOffset % 8 === 0 &&
        holdsSlots(m.type, depth + 1)
      );
    }
    holds.set(t.id, found);
    return found;
  };
  const walk = (id: number, path: string, at: number, depth: number): void => {
    if (out.length >= max || depth > MAX_WALK_DEPTH) return;
    const t = btf.type(btf.resolve(id));
    switch (t.kind) {
      case BtfKind.PTR:
        out.push({ path, offset: at, pointee: completeType(btf, t.type) });
        return;
      case BtfKind.INT:
        if (t.size === 8 && !t.signed && !t.bool && t.bits === 64) {
          out.push({ path, offset: at, pointee: undefined });
        }
        return;
      case BtfKind.ARRAY: {
        if (t.nelems === 0) return;
        const size = btf.sizeOf(t.type);
        if (size === 0 || !holdsSlots(t.type, depth + 1)) return;
        for (let i = 0; i < t.nelems && out.length < max; i++) {
          walk(t.type, `${path}[${i}]`, at + i * size, depth + 1);
        }
        return;
      }
      case BtfKind.STRUCT:
      case BtfKind.UNION:
        if (cpumaskLayout(btf, t.id)) return;
        for (const m of t.members) {
          if (m.bitfieldSize || m.bitOffset % 8) continue;
          const name = m.name === ""
            ? path
            : path === ""
            ? m.name
            : `${path}.${m.name}`;
          walk(m.type, name, at + m.bitOffset / 8, depth + 1);
        }
        return;
      default:
        return;
    }
  };
  walk(typeId, "", 0, 0);
  return out;
}

/**
 * The type a pointer points to, qualifiers and typedefs kept for naming but
 * a forward declaration (`struct sdt_chunk;`, all a program's BTF has when
 * it only passes pointers around) replaced by the complete type of that
 * name when one exists; 0 for `void` or a pointer to a function.
 */
function completeType(btf: Btf, id: number): number {
  if (id === 0) return 0;
  const resolved = btf.type(btf.resolve(id));
  if (resolved.kind === BtfKind.FWD) {
    const kind = resolved.union ? BtfKind.UNION : BtfKind.STRUCT;
    const full = btf.findByName(resolved.name, kind);
    return full ? full.id : resolved.id;
  }
  if (
    resolved.kind === BtfKind.VOID || resolved.kind === BtfKind.FUNC_PROTO
  ) return 0;
  return id;
}

/**
 * A type's C name for notes and reports: `struct sdt_desc`, `sdt_desc_t`,
 * `u64`, `void`, `(anonymous struct)`.
 *
 * @param btf the BTF the type lives in
 * @param id the type id (0 is `void`)
 * @returns the name
 */
export function typeName(btf: Btf, id: number): string {
  if (id === 0) return "void";
  let t = btf.type(id);
  for (let steps = 0; steps < MAX_WALK_DEPTH; steps++) {
    if (
      t.kind !== BtfKind.CONST && t.kind !== BtfKind.VOLATILE &&
      t.kind !== BtfKind.RESTRICT && t.kind !== BtfKind.TYPE_TAG
    ) break;
    t = btf.type(t.type);
  }
  switch (t.kind) {
    case BtfKind.STRUCT:
      return t.name ? `struct ${t.name}` : "(anonymous struct)";
    case BtfKind.UNION:
      return t.name ? `union ${t.name}` : "(anonymous union)";
    case BtfKind.ENUM:
    case BtfKind.ENUM64:
      return t.name ? `enum ${t.name}` : "(anonymous enum)";
    case BtfKind.FWD:
      return `${t.union ? "union" : "struct"} ${t.name} (declared only)`;
    case BtfKind.PTR:
      return `${typeName(btf, t.type)} *`;
    case BtfKind.ARRAY:
      return `${typeName(btf, t.type)}[${t.nelems}]`;
    case BtfKind.VOID:
      return "void";
    default:
      return "name" in t && t.name ? t.name : "(anonymous)";
  }
}
