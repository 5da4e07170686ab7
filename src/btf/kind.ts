/**
 * BTF kind numbers (`BTF_KIND_*` in `include/uapi/linux/btf.h`).
 *
 * @module
 */

/**
 * Every BTF kind the kernel defines, by its UAPI number.
 *
 * @example Test a type's kind
 * ```ts
 * import { BtfKind } from "./kind.ts";
 * console.log(BtfKind.STRUCT); // 4
 * ```
 */
export const BtfKind = {
  /** The implicit type 0, `void`. */
  VOID: 0,
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/** One of the {@linkcode BtfKind} numbers. */
export type BtfKind = typeof BtfKind[keyof typeof BtfKind];

/** The highest kind number this reader understands. */
export const BTF_KIND_MAX = 19;

const KIND_NAMES: readonly string[] = Object.keys(BtfKind);

/**
 * The upper-case name of a kind number as bpftool prints it (`STRUCT`), or
 * `UNKNOWN(n)`.
 *
 * @param kind a kind number
 * @returns its name
 *
 * @example Name a kind
 * ```ts
 * import { btfKindName } from "./kind.ts";
 * console.log(btfKindName(19)); // "ENUM64"
 * ```
 */
export function btfKindName(kind: number): string {
  return KIND_NAMES[kind] ?? `UNKNOWN(${kind})`;
}
