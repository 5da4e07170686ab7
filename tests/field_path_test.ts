/**
 * The field-path resolver and value encoder on BTF no compiler emits any
 * more (old-style INT bitfields) or that the fixtures lack (an array value
 * type, signed ENUM64, 128-bit bounds).
 *
 * @module
 */

import { deepEqual, equal, throws } from "node:assert/strict";
import { Btf } from "../src/btf/btf.ts";
import {
  encodeFieldValue,
  formatFieldValue,
  resolveFieldPath,
} from "../src/btf/field_path.ts";
import { FieldError } from "../src/errors.ts";
import { BtfBuilder } from "./btf_builder.ts";

function fixture(): { btf: Btf; slots: number; wide: number } {
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4);
  // an old-style bitfield: 6 bits at bit 4 of its own 4-byte INT
  const legacy = b.int("unsigned int", 4, false, 6, 0, 4);
  const s128 = b.int("__int128", 16, true);
  const f32 = b.float("float", 4);
  const e64 = b.enum64("big", [["BIG_NEG", -2n], ["BIG_TOP", 1n << 62n]], true);
  const slot = b.struct("slot", 48, [
    { name: "pid", type: u32, bitOffset: 0 },
    { name: "bits", type: legacy, bitOffset: 32 },
    { name: "v", type: s128, bitOffset: 128 },
    { name: "f", type: f32, bitOffset: 256 },
    { name: "e", type: e64, bitOffset: 320 },
  ]);
  const slots = b.array(slot, 4, u32);
  const wide = b.struct("wide", 8, [{ name: "x", type: u32, bitOffset: 0 }]);
  return { btf: Btf.parse(b.build()), slots, wide };
}

Deno.test("paths index an array value type and read old-style INT bitfields", () => {
  const { btf, slots } = fixture();
  const field = resolveFieldPath(btf, slots, "[2].bits");
  deepEqual(
    [field.byteOffset, field.byteSize, field.bitOffset, field.bitSize],
    [2 * 48 + 4, 2, 4, 6],
  );
  equal(field.typeName, "unsigned int : 6");
  const value = new Uint8Array(4 * 48).fill(0xff);
  encodeFieldValue(btf, field, "0", value);
  deepEqual([...value.subarray(100, 102)], [0x0f, 0xfc]);
  equal(formatFieldValue(btf, field, value), "0");
  throws(
    () => encodeFieldValue(btf, field, "64", value),
    /cannot hold 64: the range is 0\.\.63/,
  );
  throws(
    () => resolveFieldPath(btf, slots, "[4].pid"),
    /index 4 is past the end of the value \(struct slot\[4\]: indexes 0\.\.3\)/,
  );
  throws(
    () => resolveFieldPath(btf, slots, "pid"),
    /cannot take member "pid" of the value: it is struct slot\[4\]/,
  );
  throws(
    () => resolveFieldPath(btf, slots, "[0]pid"),
    /is not a path: unexpected "pid"/,
  );
});

Deno.test("128-bit, float and signed ENUM64 fields encode exactly", () => {
  const { btf, slots } = fixture();
  const value = new Uint8Array(4 * 48);
  const v = resolveFieldPath(btf, slots, "[1].v");
  const min = -(1n << 127n);
  encodeFieldValue(btf, v, String(min), value);
  equal(formatFieldValue(btf, v, value), String(min));
  throws(() => encodeFieldValue(btf, v, String(min - 1n), value), FieldError);
  const f = resolveFieldPath(btf, slots, "[1].f");
  encodeFieldValue(btf, f, "-1.5", value);
  equal(formatFieldValue(btf, f, value), "-1.5");
  const e = resolveFieldPath(btf, slots, "[1].e");
  encodeFieldValue(btf, e, "BIG_NEG", value);
  equal(formatFieldValue(btf, e, value), "BIG_NEG");
  deepEqual([...value.subarray(48 + 40, 48 + 48)], [
    0xfe,
    255,
    255,
    255,
    255,
    255,
    255,
    255,
  ]);
  encodeFieldValue(btf, e, "5", value);
  equal(formatFieldValue(btf, e, value), "5");
  throws(
    () => encodeFieldValue(btf, e, "BIG_MID", value),
    /\(enum big\) has no enumerator "BIG_MID" \(BIG_NEG, BIG_TOP; or give a number\)/,
  );
});

Deno.test("a field past the end of the value is refused", () => {
  const { btf, wide } = fixture();
  const x = resolveFieldPath(btf, wide, "x");
  throws(
    () => encodeFieldValue(btf, x, "1", new Uint8Array(2)),
    /ends at byte 4, past the 2-byte value/,
  );
});
