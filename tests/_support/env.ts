/**
 * How tests decide whether they can touch the kernel, QEMU or clang.
 *
 * A test that needs something missing is ignored locally, but in CI
 * (`BPFMAP_REQUIRE_PRIVILEGED=1`, set by `.ci/run`) it runs anyway so that
 * the missing piece fails loudly instead of skipping silently.
 *
 * @module
 */

/** True when CI demands that nothing privileged is skipped. */
export const REQUIRE_ALL: boolean =
  Deno.env.get("BPFMAP_REQUIRE_PRIVILEGED") === "1";

function probeRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** Whether this process is root (bpf() map enumeration needs CAP_SYS_ADMIN). */
export const IS_ROOT: boolean = probeRoot();

function hasCommand(name: string): boolean {
  try {
    const result = new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return result.success;
  } catch {
    return false;
  }
}

/**
 * The value for a test's `ignore:` when it needs root: ignored only when not
 * root and CI does not demand it (then the test runs and fails visibly).
 */
export function ignoreUnlessRoot(): boolean {
  return !IS_ROOT && !REQUIRE_ALL;
}

/** `ignore:` for tests that need these commands on PATH (clang, bpftool, qemu-system-x86_64). */
export function ignoreUnlessCommands(...names: string[]): boolean {
  if (REQUIRE_ALL) return false;
  return !IS_ROOT || !names.every(hasCommand);
}
