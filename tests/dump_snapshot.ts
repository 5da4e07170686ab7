/**
 * Test support: a tiny snapshot helper. Compares text with
 * `fixtures/snapshots/<name>` and rewrites the file when `UPDATE=1`.
 *
 * @module
 */

import { equal } from "node:assert/strict";

const DIR = new URL("../fixtures/snapshots/", import.meta.url);

/** Asserts `actual` equals the stored snapshot `name` (or stores it with UPDATE=1). */
export function assertSnapshot(name: string, actual: string): void {
  const url = new URL(name, DIR);
  if (Deno.env.get("UPDATE") === "1") {
    Deno.mkdirSync(DIR, { recursive: true });
    Deno.writeTextFileSync(url, actual);
    return;
  }
  let expected: string;
  try {
    expected = Deno.readTextFileSync(url);
  } catch {
    throw new Error(
      `Snapshot ${name} is missing: run with UPDATE=1 to create it`,
    );
  }
  equal(actual, expected, `snapshot ${name} differs (UPDATE=1 rewrites it)`);
}
