import assert from "node:assert/strict";
import { parseSystemMap, relocateSymbols } from "../src/guest/symbol_files.ts";

Deno.test("parseSystemMap keeps the first address of each name", () => {
  const symbols = parseSystemMap(
    "0000000000000000 D fixed_percpu_data\nffffffff82a4e5c0 b map_idr\nffffffff80000000 t map_idr\n(garbage line)\n",
  );
  assert.equal(symbols.get("map_idr"), 0xffffffff82a4e5c0n);
  assert.equal(symbols.get("fixed_percpu_data"), 0n);
  assert.equal(symbols.size, 2);
});

Deno.test("relocateSymbols slides kernel-image addresses only", () => {
  const moved = relocateSymbols(
    new Map([["map_idr", 0xffffffff82a4e5c0n], ["fixed_percpu_data", 0x1000n]]),
    0x28600000n,
  );
  assert.equal(moved.get("map_idr"), 0xffffffff82a4e5c0n + 0x28600000n);
  assert.equal(moved.get("fixed_percpu_data"), 0x1000n);
});
