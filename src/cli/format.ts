/**
 * How maps look on the command line: bpftool-compatible JSON objects and
 * aligned tables.
 *
 * @module
 */

import type { BpfMapInfo } from "../accessor/types.ts";
import { mapTypeName } from "../sys/constants.ts";

/**
 * A map as the JSON object `bpftool map show -j` prints, with the same keys
 * and values; u64 fields are written as exact integer digits. `full_name` is
 * bpfmap's addition, present when the BTF name is longer than the kernel's.
 */
export function mapInfoJson(map: BpfMapInfo): string {
  const type = mapTypeName(map.type);
  const parts = [
    `"id":${map.id}`,
    `"type":${typeof type === "number" ? type : JSON.stringify(type)}`,
  ];
  if (map.name !== "") parts.push(`"name":${JSON.stringify(map.name)}`);
  if (map.fullName !== undefined && map.fullName !== map.name) {
    parts.push(`"full_name":${JSON.stringify(map.fullName)}`);
  }
  parts.push(
    `"flags":${map.flags}`,
    `"bytes_key":${map.keySize}`,
    `"bytes_value":${map.valueSize}`,
    `"max_entries":${map.maxEntries}`,
    `"bytes_memlock":${map.memlock.toString()}`,
    `"frozen":${map.frozen ? 1 : 0}`,
  );
  if (map.btfId !== 0) parts.push(`"btf_id":${map.btfId}`);
  if (map.mapExtra !== 0n) parts.push(`"map_extra":${map.mapExtra.toString()}`);
  return `{${parts.join(",")}}`;
}

/** Human-readable byte count (`4KiB`, `1.5MiB`), as bpftool's `memlock` column shows sizes. */
export function formatBytes(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 || value >= 100
    ? value.toFixed(0)
    : value.toFixed(1).replace(/\.0$/, "");
  return `${text}${units[unit]}`;
}

/** Renders rows as a left-aligned table with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, column) =>
    Math.max(h.length, ...rows.map((row) => (row[column] ?? "").length))
  );
  const line = (cells: string[]): string =>
    cells.map((cell, column) => cell.padEnd(widths[column]!)).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** The `list` table: one row per map. */
export function mapTable(maps: readonly BpfMapInfo[]): string {
  return table(
    [
      "ID",
      "TYPE",
      "NAME",
      "KEY",
      "VALUE",
      "MAX",
      "FLAGS",
      "MEMLOCK",
      "FROZEN",
      "BTF",
    ],
    maps.map((map) => [
      String(map.id),
      String(mapTypeName(map.type)),
      map.fullName && map.fullName !== map.name
        ? `${map.name} (${map.fullName})`
        : map.name,
      String(map.keySize),
      String(map.valueSize),
      String(map.maxEntries),
      `0x${map.flags.toString(16)}`,
      formatBytes(map.memlock),
      map.frozen ? "yes" : "no",
      map.btfId === 0 ? "-" : String(map.btfId),
    ]),
  );
}
