/**
 * Test support: compile a `fixtures/bpf/*.bpf.c` program with clang, load it
 * with bpftool (a test oracle only) and pin its maps in a private bpffs
 * directory that is removed on dispose.
 *
 * @module
 */

import { mapGetInfo, objGet, type RawMapInfo } from "../src/sys/bpf.ts";
import { bpfClang, has } from "./_support/env.ts";

const FIXTURES = new URL("../fixtures/bpf/", import.meta.url);

function run(cmd: string, args: string[]): string {
  const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" })
    .outputSync();
  const decoder = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `Command failed: ${cmd} ${args.join(" ")}: ${decoder.decode(out.stderr)}${
        decoder.decode(out.stdout)
      }`,
    );
  }
  return decoder.decode(out.stdout);
}

/** The clang that compiles the fixtures: one that emits ENUM64 when there is one. */
export function clangCommand(): string {
  return bpfClang();
}

/** Whether that clang emits BTF ENUM64 (LLVM 15+), by compiling a 64-bit enum. */
export function clangHasEnum64(): boolean {
  return has("clang-enum64");
}

/** Compiles fixture `name` (without `.bpf.c`) into `dir`; returns the object path. */
export function compileFixture(name: string, dir: string): string {
  const source = new URL(`${name}.bpf.c`, FIXTURES).pathname;
  const object = `${dir}/${name}.o`;
  const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
  run(clangCommand(), [
    "-O2",
    "-g",
    "-target",
    "bpf",
    "-I/usr/include",
    `-I/usr/include/${arch}-linux-gnu`,
    "-c",
    source,
    "-o",
    object,
  ]);
  return object;
}

function ensureBpffs(): void {
  try {
    const mounts = Deno.readTextFileSync("/proc/mounts");
    if (
      mounts.split("\n").some((l) =>
        l.split(" ")[1] === "/sys/fs/bpf" && l.split(" ")[2] === "bpf"
      )
    ) {
      return;
    }
  } catch {
    // fall through to mount
  }
  run("mount", ["-t", "bpf", "bpf", "/sys/fs/bpf"]);
}

/** A fixture loaded into the kernel with its maps pinned. */
export interface LoadedFixture extends Disposable {
  /** Temp dir holding the object file. */
  tmpDir: string;
  /** The compiled object. */
  object: string;
  /** bpffs dir with the maps pinned under `maps/`. */
  pinDir: string;
  /** Pin path per pin name (`kinds_hash`, `kinds_bss`, ...). */
  pins: Map<string, string>;
  /** Kernel info per pin name. */
  info: Map<string, RawMapInfo>;
}

/**
 * Compiles and loads fixture `name`; dispose to unpin everything (which
 * frees the programs and maps).
 */
export function loadFixture(name: string): LoadedFixture {
  ensureBpffs();
  const tmpDir = Deno.makeTempDirSync({ prefix: "bpfmap-btf-" });
  const pinDir = `/sys/fs/bpf/bpfmap_test_${name}_${Deno.pid}_${
    Math.floor(Math.random() * 1e9)
  }`;
  const cleanup = (): void => {
    Deno.removeSync(pinDir, { recursive: true });
    Deno.removeSync(tmpDir, { recursive: true });
  };
  try {
    const object = compileFixture(name, tmpDir);
    run("bpftool", [
      "prog",
      "loadall",
      object,
      pinDir,
      "pinmaps",
      `${pinDir}/maps`,
    ]);
    const pins = new Map<string, string>();
    const info = new Map<string, RawMapInfo>();
    for (const entry of Deno.readDirSync(`${pinDir}/maps`)) {
      const path = `${pinDir}/maps/${entry.name}`;
      pins.set(entry.name, path);
      using fd = objGet(path);
      info.set(entry.name, mapGetInfo(fd.fd));
    }
    return {
      tmpDir,
      object,
      pinDir,
      pins,
      info,
      [Symbol.dispose]: () => {
        try {
          cleanup();
        } catch {
          // already gone
        }
      },
    };
  } catch (error) {
    try {
      cleanup();
    } catch {
      // nothing was created
    }
    throw error;
  }
}

/** Runs bpftool and parses its `-j` output exactly (bigint above 2^53). */
export function bpftoolJson(args: string[]): string {
  return run("bpftool", ["-j", ...args]);
}

/** `"0x1f"` strings as bpftool prints raw bytes, back into bytes. */
export function hexBytes(hex: readonly string[]): Uint8Array {
  return Uint8Array.from(hex, (h) => parseInt(h, 16));
}

/** A small deterministic PRNG (mulberry32) so failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` deterministic random bytes. */
export function randomBytes(next: () => number, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
}

/** The path and both sides of the first difference between two JSON-ish values, or undefined. */
export function firstDifference(
  a: unknown,
  b: unknown,
  path = "$",
): string | undefined {
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b)) {
    return `${path}: ${String(a)} (${typeof a}) vs ${String(b)} (${typeof b})`;
  }
  if (a === null || b === null || typeof a !== "object") {
    return a === b ? undefined : `${path}: ${String(a)} vs ${String(b)}`;
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const key of keys) {
    const diff = firstDifference(ra[key], rb[key], `${path}.${key}`);
    if (diff) return diff;
  }
  return undefined;
}
