/**
 * How tests decide whether they can run: by what this machine can do, never
 * by whether a tool's name is on PATH. A capability is probed once, the
 * first time a test file asks for it: bpf() creates a map, clang compiles a
 * BPF object (and emits ENUM64), bpftool talks to the kernel, QEMU boots the
 * cached kernel.
 *
 * A test that needs something missing is ignored locally, but in CI
 * (`BPFMAP_REQUIRE_PRIVILEGED=1`, set by `.ci/run`) it runs anyway so that
 * the missing piece fails loudly instead of skipping silently.
 *
 * @module
 */

import { btfFromElf } from "../../src/btf/elf.ts";
import { BtfKind } from "../../src/btf/kind.ts";
import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import { MapType } from "../../src/sys/constants.ts";

/** True when CI demands that nothing privileged is skipped. */
export const REQUIRE_ALL: boolean =
  Deno.env.get("BPFMAP_REQUIRE_PRIVILEGED") === "1";

/** What a test may need. */
export type Capability =
  /** bpf() creates maps and walks map ids (root or CAP_SYS_ADMIN + CAP_BPF). */
  | "bpf"
  /** bpftool lists the kernel's maps (the test oracle). */
  | "bpftool"
  /** A clang compiles a BPF object with BTF (`-target bpf -g`). */
  | "clang"
  /** That clang emits BTF_KIND_ENUM64 (LLVM 15+): the fixture's 64-bit enums. */
  | "clang-enum64"
  /** QEMU boots the kernel `tools/vm/setup.sh` cached (TCG, serial console). */
  | "qemu";

const ROOT = new URL("../../", import.meta.url).pathname;

function succeeds(command: string, args: string[], timeoutMs = 20_000): {
  ok: boolean;
  stdout: string;
} {
  try {
    const result = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(timeoutMs),
    }).outputSync();
    return {
      ok: result.success,
      stdout: new TextDecoder().decode(result.stdout),
    };
  } catch {
    return { ok: false, stdout: "" };
  }
}

function probeBpf(): boolean {
  try {
    using _map = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: "probe",
    });
    new BpfSyscallAccessor().maps();
    return true;
  } catch {
    return false;
  }
}

/** The clang `tools/test_setup.sh` installs. */
const PREFERRED_CLANG = "clang-16";

const ENUM64_PROBE = `enum wide { WIDE_HIGH = 0x100000000ULL };
enum wide probe_value __attribute__((used));
`;

/**
 * The clangs worth trying: clang-16 first (what the test setup installs, so
 * results match CI), then other versioned ones newest first, then `clang`.
 */
function clangCandidates(): string[] {
  const versioned = new Set<string>();
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      for (const entry of Deno.readDirSync(dir || ".")) {
        if (/^clang-\d+$/.test(entry.name)) versioned.add(entry.name);
      }
    } catch {
      // unreadable PATH entry
    }
  }
  versioned.delete(PREFERRED_CLANG);
  return [
    PREFERRED_CLANG,
    ...[...versioned].sort((a, b) => Number(b.slice(6)) - Number(a.slice(6))),
    "clang",
  ];
}

interface ClangProbe {
  /** The first clang that compiles a BPF object, preferring one with ENUM64. */
  command: string | null;
  enum64: boolean;
}

let clangProbe: ClangProbe | undefined;

function probeClang(): ClangProbe {
  if (clangProbe) return clangProbe;
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-clang-probe-" });
  try {
    Deno.writeTextFileSync(`${dir}/probe.c`, ENUM64_PROBE);
    let compiles: string | null = null;
    for (const clang of clangCandidates()) {
      const object = `${dir}/${clang}.o`;
      const result = succeeds(clang, [
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-c",
        `${dir}/probe.c`,
        "-o",
        object,
      ]);
      if (!result.ok) continue;
      compiles ??= clang;
      try {
        const btf = btfFromElf(Deno.readFileSync(object));
        for (let id = 1; id < btf.typeCount; id++) {
          if (btf.kindOf(id) === BtfKind.ENUM64) {
            return clangProbe = { command: clang, enum64: true };
          }
        }
      } catch {
        // no usable BTF from this one
      }
    }
    return clangProbe = { command: compiles, enum64: false };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * The clang the BPF fixtures should be compiled with: one that emits ENUM64
 * when there is one, else any that compiles BPF, else plain `clang` (so the
 * failure names it).
 */
export function bpfClang(): string {
  return probeClang().command ?? "clang";
}

/** A kernel image `tools/vm/setup.sh` cached, or null. */
function cachedKernel(): string | null {
  try {
    const names = [...Deno.readDirSync(`${ROOT}.vm-cache`)]
      // the probe boots it with qemu-system-x86_64: only the x86-64 images
      // (k*), not an aarch64 one (a*) that sorts first and never prints
      .filter((entry) => entry.isDirectory && entry.name.startsWith("k"))
      .map((entry) => entry.name)
      .sort();
    for (const name of names) {
      const path = `${ROOT}.vm-cache/${name}/vmlinuz`;
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // not unpacked
      }
    }
  } catch {
    // no cache
  }
  return null;
}

/**
 * Boots the cached kernel without a root file system until it prints its
 * banner on the serial console: proves QEMU, TCG and the image together.
 */
function probeQemu(): boolean {
  const kernel = cachedKernel();
  if (!kernel) return false;
  try {
    const child = new Deno.Command("qemu-system-x86_64", {
      args: [
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
        "-kernel",
        kernel,
        "-append",
        "console=ttyS0 panic=-1",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(60_000),
    }).outputSync();
    // The kernel panics without a root fs and QEMU exits (-no-reboot): the
    // banner shows it started.
    return /Linux version/.test(new TextDecoder().decode(child.stdout));
  } catch {
    return false;
  }
}

const probes: Record<Capability, () => boolean> = {
  bpf: probeBpf,
  bpftool: () => succeeds("bpftool", ["-j", "map", "list"]).ok,
  clang: () => probeClang().command !== null,
  "clang-enum64": () => probeClang().enum64,
  qemu: probeQemu,
};
const known = new Map<Capability, boolean>();

/** Whether this machine has `capability` (probed once per process). */
export function has(capability: Capability): boolean {
  let value = known.get(capability);
  if (value === undefined) {
    value = probes[capability]();
    known.set(capability, value);
  }
  return value;
}

/**
 * The value for a test's `ignore:`: true when one of `capabilities` is
 * missing, never under `BPFMAP_REQUIRE_PRIVILEGED=1` (then the test runs and
 * fails visibly).
 */
export function ignoreUnless(...capabilities: Capability[]): boolean {
  if (REQUIRE_ALL) return false;
  return !capabilities.every(has);
}

/** `ignore:` for tests that need bpf() (root or CAP_SYS_ADMIN). */
export function ignoreUnlessRoot(): boolean {
  return ignoreUnless("bpf");
}

/**
 * @deprecated Use {@linkcode ignoreUnless} with capabilities. Kept for test
 * files not yet moved over: each tool name maps to what it proves
 * (`clang` → clang, `bpftool` → bpf + bpftool, `qemu-system-x86_64` → qemu).
 */
export function ignoreUnlessCommands(...names: string[]): boolean {
  const capabilities = names.flatMap((name): Capability[] => {
    switch (name) {
      case "clang":
        return ["clang"];
      case "bpftool":
        return ["bpf", "bpftool"];
      case "qemu-system-x86_64":
        return ["qemu"];
      default:
        throw new Error(`no capability for the command "${name}"`);
    }
  });
  return ignoreUnless(...capabilities);
}
