import assert from "node:assert/strict";
import { ByteKeySet } from "../src/accessor/key_set.ts";

Deno.test("ByteKeySet: every distinct key once, through growth, by value not identity", () => {
  const set = new ByteKeySet(5, 4);
  const bytes = new Uint8Array(5 * 3000);
  for (let i = 0; i < 3000; i++) {
    // keys that differ only in their last byte, and in their first
    bytes[i * 5] = i & 0xff;
    bytes[i * 5 + 4] = i >> 8;
  }
  for (let i = 0; i < 3000; i++) assert.equal(set.add(bytes, i * 5), true);
  assert.equal(set.size, 3000);
  for (let i = 0; i < 3000; i++) {
    const copy = bytes.slice(i * 5, i * 5 + 5);
    assert.equal(set.has(copy), true);
    assert.equal(set.add(copy), false, `key ${i} added twice`);
  }
  assert.equal(set.has(new Uint8Array([0, 0, 0, 0, 12])), false);
  assert.equal(set.size, 3000);
});
