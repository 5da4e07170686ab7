/**
 * Decoded BTF type records, one interface per kind.
 *
 * @module
 */

import type { BtfKind } from "./kind.ts";

/** Fields every decoded type has. */
export interface BtfTypeBase {
  /** Type id (0 is `void`). */
  id: number;
  /** Name, empty for anonymous types. */
  name: string;
}

/** `void` (type id 0). */
export interface BtfVoid extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.VOID;
}

/** An integer, char or bool (`BTF_KIND_INT`). */
export interface BtfInt extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.INT;
  /** Storage size in bytes (1, 2, 4, 8 or 16). */
  size: number;
  /** `BTF_INT_SIGNED`. */
  signed: boolean;
  /** `BTF_INT_CHAR`. */
  char: boolean;
  /** `BTF_INT_BOOL`. */
  bool: boolean;
  /** Bit offset of the value inside its storage (legacy bitfields). */
  bitOffset: number;
  /** Number of value bits. */
  bits: number;
}

/** A pointer (`BTF_KIND_PTR`). */
export interface BtfPtr extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.PTR;
  /** Pointee type id. */
  type: number;
}

/** A fixed-size array (`BTF_KIND_ARRAY`). */
export interface BtfArray extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.ARRAY;
  /** Element type id. */
  type: number;
  /** Index type id. */
  indexType: number;
  /** Number of elements. */
  nelems: number;
}

/** A struct or union member. */
export interface BtfMember {
  /** Member name, empty for an anonymous struct or union member. */
  name: string;
  /** Member type id. */
  type: number;
  /** Offset from the start of the enclosing type, in bits. */
  bitOffset: number;
  /** Bitfield width in bits, 0 when the member is not a bitfield. */
  bitfieldSize: number;
}

/** A struct or union (`BTF_KIND_STRUCT`, `BTF_KIND_UNION`). */
export interface BtfComposite extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.STRUCT | typeof BtfKind.UNION;
  /** Size in bytes. */
  size: number;
  /** Members in declaration order. */
  members: BtfMember[];
}

/** One enumerator. */
export interface BtfEnumValue {
  /** Enumerator name. */
  name: string;
  /** Value, signed or unsigned according to the enum. */
  value: bigint;
}

/** An enum (`BTF_KIND_ENUM` or `BTF_KIND_ENUM64`). */
export interface BtfEnum extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.ENUM | typeof BtfKind.ENUM64;
  /** Size in bytes. */
  size: number;
  /** Whether values are signed (`kind_flag`). */
  signed: boolean;
  /** Enumerators. */
  values: BtfEnumValue[];
}

/** A forward declaration (`BTF_KIND_FWD`). */
export interface BtfFwd extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.FWD;
  /** True for `union x;`, false for `struct x;`. */
  union: boolean;
}

/** A typedef, qualifier or type tag: a name or attribute on another type. */
export interface BtfRef extends BtfTypeBase {
  /** Kind. */
  kind:
    | typeof BtfKind.TYPEDEF
    | typeof BtfKind.VOLATILE
    | typeof BtfKind.CONST
    | typeof BtfKind.RESTRICT
    | typeof BtfKind.TYPE_TAG;
  /** The type referred to. */
  type: number;
}

/** A function (`BTF_KIND_FUNC`). */
export interface BtfFunc extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.FUNC;
  /** FUNC_PROTO type id. */
  type: number;
  /** Linkage: 0 static, 1 global, 2 extern. */
  linkage: number;
}

/** A function parameter. */
export interface BtfParam {
  /** Parameter name (may be empty). */
  name: string;
  /** Parameter type id (0 for a trailing `...`). */
  type: number;
}

/** A function prototype (`BTF_KIND_FUNC_PROTO`). */
export interface BtfFuncProto extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.FUNC_PROTO;
  /** Return type id. */
  returnType: number;
  /** Parameters. */
  params: BtfParam[];
}

/** A global variable (`BTF_KIND_VAR`). */
export interface BtfVar extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.VAR;
  /** Variable type id. */
  type: number;
  /** Linkage: 0 static, 1 global, 2 extern. */
  linkage: number;
}

/** One variable of a data section. */
export interface BtfVarSecinfo {
  /** VAR (or FUNC) type id. */
  type: number;
  /** Byte offset in the section. */
  offset: number;
  /** Size in bytes. */
  size: number;
}

/** A data section (`BTF_KIND_DATASEC`): `.bss`, `.data`, `.rodata`, `.maps`. */
export interface BtfDatasec extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.DATASEC;
  /** Section size in bytes. */
  size: number;
  /** Variables in the section. */
  vars: BtfVarSecinfo[];
}

/** A floating-point type (`BTF_KIND_FLOAT`). */
export interface BtfFloat extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.FLOAT;
  /** Size in bytes (2, 4, 8, 12 or 16). */
  size: number;
}

/** A declaration tag (`BTF_KIND_DECL_TAG`); the name is the tag text. */
export interface BtfDeclTag extends BtfTypeBase {
  /** Kind. */
  kind: typeof BtfKind.DECL_TAG;
  /** Tagged type id. */
  type: number;
  /** Member or parameter index, -1 for the type itself. */
  componentIdx: number;
}

/**
 * Any decoded BTF type; switch on `kind`.
 *
 * @example Read a struct's members
 * ```ts
 * import { BtfKind, loadKernelBtf } from "./mod.ts";
 * const t = loadKernelBtf().findByName("bpf_map", BtfKind.STRUCT);
 * if (t?.kind === BtfKind.STRUCT) console.log(t.members.length);
 * ```
 */
export type BtfType =
  | BtfVoid
  | BtfInt
  | BtfPtr
  | BtfArray
  | BtfComposite
  | BtfEnum
  | BtfFwd
  | BtfRef
  | BtfFunc
  | BtfFuncProto
  | BtfVar
  | BtfDatasec
  | BtfFloat
  | BtfDeclTag;

/** Where a member lives, as {@linkcode Btf.memberOffset} reports it. */
export interface BtfMemberLocation {
  /** Byte offset of the member's first byte (bit offset / 8, rounded down). */
  offset: number;
  /** Offset in bits from the start of the outer struct. */
  bitOffset: number;
  /** Bitfield width in bits, 0 when not a bitfield. */
  bitfieldSize: number;
  /** The member's type id. */
  type: number;
}

/** A variable of a data section, with its name and section offset. */
export interface BtfDatasecVariable {
  /** Variable name. */
  name: string;
  /** The VAR type id. */
  varId: number;
  /** The variable's own type id (what the VAR points to). */
  type: number;
  /** Byte offset in the section. */
  offset: number;
  /** Size in bytes. */
  size: number;
}
