/**
 * The running-QEMU and /proc/kcore sources against the real things: a QEMU
 * started paused with bytes placed in guest RAM by its own `loader` device
 * (below and above the 4 GiB split), and this machine's kcore when it has
 * one (else its absence must be reported as such).
 */

import assert from "node:assert/strict";
import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { GuestSourceError } from "../src/guest/errors.ts";
import { openKcore } from "../src/guest/kcore.ts";
import { QmpClient } from "../src/guest/qmp.ts";
import {
  openQemuProcess,
  parseQemuCommandLine,
  qemuRamLayout,
} from "../src/guest/qemu_process.ts";
import { qemuX86Layout } from "../src/guest/phys.ts";
import { MapType } from "../src/sys/constants.ts";
import { mapCreate, mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { runCli } from "./_support/cli.ts";
import { ignoreUnless, REQUIRE_ALL } from "./_support/env.ts";

const GIB = 1n << 30n;

// This test boots no kernel, so it needs QEMU only (the "qemu" capability
// also boots a cached guest kernel).
function qemuRuns(): boolean {
  try {
    return new Deno.Command("qemu-system-x86_64", {
      args: ["-version"],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

function pattern(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

Deno.test("--guest-pid refuses a process that is not QEMU, naming what it is", () => {
  assert.throws(
    () => openQemuProcess(Deno.pid),
    (error: unknown) => {
      assert.ok(error instanceof GuestSourceError);
      assert.match(
        error.message,
        new RegExp(
          `^PID ${Deno.pid} is deno \\(.*\\), not a QEMU system emulator`,
        ),
      );
      assert.ok(!error.message.includes("\n"));
      return true;
    },
  );
  assert.throws(
    () => openQemuProcess(0x3fffffff),
    /^GuestSourceError: PID 1073741823 is not a running process; --guest-pid needs the PID of a running qemu-system-\* process/,
  );
});

Deno.test("QEMU's -m and machine rules place RAM as QEMU does", () => {
  assert.deepEqual(
    parseQemuCommandLine(["qemu-system-x86_64", "-m", "size=3840M,slots=2"]),
    { ramSize: 3840n << 20n, machine: "" },
  );
  assert.equal(
    parseQemuCommandLine(["qemu-system-x86_64"]).ramSize,
    128n << 20n,
  );
  assert.equal(parseQemuCommandLine(["q", "-m", "2048"]).ramSize, 2n * GIB);
  // pc keeps 3.25 GiB low; q35 splits at 2 GiB once RAM reaches 2.75 GiB
  assert.equal(qemuX86Layout(3n * GIB + (GIB >> 2n), "pc").length, 1);
  assert.deepEqual(
    qemuX86Layout(3n * GIB, "q35").map((
      r,
    ) => [r.gpa, r.size, r.fileOffset]),
    [[0n, 2n * GIB, 0], [4n * GIB, GIB, 2 * 2 ** 30]],
  );
});

for (const backing of ["anonymous", "shared-file"] as const) {
  Deno.test({
    name:
      `a running QEMU's ${backing} RAM is found in /proc/PID/maps and read at the right guest-physical addresses`,
    ignore: !REQUIRE_ALL && !qemuRuns(),
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "bpfmap-qemu-pid-" });
      const low = pattern(1, 8192);
      const high = pattern(2, 8192);
      Deno.writeFileSync(`${dir}/low.bin`, low);
      Deno.writeFileSync(`${dir}/high.bin`, high);
      const qmpPath = `${dir}/qmp.sock`;
      // 3840 MiB on pc: 3 GiB below 4 GiB, 768 MiB at 4 GiB. Untouched guest
      // RAM costs the host nothing; the loader writes only its two blobs.
      const child = new Deno.Command("qemu-system-x86_64", {
        args: [
          "-accel",
          "tcg",
          "-m",
          "3840M",
          // a RAM file is sparse on tmpfs: the loader's blobs are its only data
          ...(backing === "shared-file"
            ? [
              "-object",
              `memory-backend-file,id=mem,size=3840M,mem-path=/dev/shm/bpfmap-pid-${Deno.pid},share=on`,
              "-machine",
              "memory-backend=mem",
            ]
            : []),
          "-nographic",
          "-nodefaults",
          "-S",
          "-device",
          `loader,file=${dir}/low.bin,addr=0x200000,force-raw=on`,
          "-device",
          `loader,file=${dir}/high.bin,addr=0x120000000,force-raw=on`,
          "-qmp",
          `unix:${qmpPath},server,nowait`,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      try {
        const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 15_000 });
        try {
          // the loader writes its blobs at machine reset, done before QMP answers
          const ram = await qemuRamLayout(qmp);
          assert.equal(ram.ramSize, 3840n << 20n);
          for (
            const options of [{}, { ram, frozen: true }] as const
          ) {
            using source = openQemuProcess(child.pid, options);
            assert.deepEqual(source.memory.read(0x200000n, 8192), low);
            assert.deepEqual(source.memory.read(0x120000000n, 8192), high);
            // the 768 MiB above 4 GiB start at offset 3 GiB of the RAM block
            assert.ok(source.memory.has(4n * GIB + (767n << 20n)));
            assert.ok(!source.memory.has(0xd0000000n));
            assert.equal(source.notes?.length, "frozen" in options ? 0 : 1);
            // page-map runs: the blobs are there, untouched gigabytes are not
            const runs = source.memory.regions.flatMap((r) =>
              source.memory.dataRuns(r)
            );
            const bytes = runs.reduce((n, r) => n + (r.end - r.start), 0n);
            assert.ok(
              runs.some((r) => r.start <= 0x120000000n && r.end > 0x120000000n),
            );
            assert.ok(bytes < 64n << 20n, `${bytes} bytes in data runs`);
          }
          // a RAM size QEMU does not have: one line naming what was looked for
          assert.throws(
            () =>
              openQemuProcess(child.pid, {
                ram: { ramSize: 3n << 20n, regions: ram.regions },
              }),
            new RegExp(
              `^GuestSourceError: PID ${child.pid} has no guest RAM mapping: none of its \\d+ mappings is a rw- region of 3 MiB followed by QEMU's guard page`,
            ),
          );
          // the CLI: a guest with no kernel is found, and the error says so
          const cli = await runCli("list", "--guest-pid", String(child.pid));
          assert.equal(cli.code, 1);
          assert.match(cli.stderr, /VMCOREINFO|kernel/i);
          const bad = await runCli("list", "--guest-pid", "self");
          assert.match(bad.stderr, /--guest-pid wants the numeric PID/);
        } finally {
          await qmp.quit();
        }
      } finally {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
        await child.stderr.cancel();
        await Deno.remove(dir, { recursive: true });
        await Deno.remove(`/dev/shm/bpfmap-pid-${Deno.pid}`).catch(() => {});
      }
    },
  });
}

let kcoreReadable = false;
try {
  Deno.openSync("/proc/kcore").close();
  kcoreReadable = true;
} catch { /* absent, locked down, or not root: the next tests say which */ }

/** Without a readable /proc/kcore, --kcore says what is missing in one line. */
async function checkKcoreMissing(): Promise<void> {
  {
    let exists = true;
    try {
      Deno.statSync("/proc/kcore");
    } catch {
      exists = false;
    }
    assert.throws(
      () => openKcore(),
      exists
        ? /^GuestSourceError: \/proc\/kcore (is closed by kernel lockdown|cannot be opened)/
        : /^GuestSourceError: \/proc\/kcore does not exist: this kernel was built without CONFIG_PROC_KCORE;/,
    );
    const cli = await runCli("list", "--kcore");
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr.trim().split("\n").length, 1, cli.stderr);
    const mixed = await runCli("list", "--kcore", "--guest-pid", "1");
    assert.match(mixed.stderr, /give one source, not --guest-pid and --kcore/);
  }
}

// One test, whatever this kernel offers: a kernel with /proc/kcore must read
// as bpf() does; one without must say so in one line. (The VM tests prove the
// readable case on real guests, whose kernels have CONFIG_PROC_KCORE.)
Deno.test({
  name:
    "/proc/kcore reads this kernel's maps as bpf() does, or --kcore says in one line why it cannot",
  ignore: ignoreUnless("bpf"),
  sanitizeResources: false,
  fn: async () => {
    if (!kcoreReadable) {
      await checkKcoreMissing();
      return;
    }
    const live = new BpfSyscallAccessor();
    using array = mapCreate({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 24,
      maxEntries: 16,
      name: "kcore_arr",
    });
    using hash = mapCreate({
      type: MapType.HASH,
      keySize: 8,
      valueSize: 16,
      maxEntries: 64,
      name: "kcore_hash",
    });
    for (let i = 0; i < 16; i++) {
      mapUpdateElem(
        array.fd,
        new Uint8Array(new Uint32Array([i]).buffer),
        pattern(10 + i, 24),
      );
    }
    for (let i = 0; i < 40; i++) {
      mapUpdateElem(hash.fd, pattern(100 + i, 8), pattern(200 + i, 16));
    }
    using kcore = GuestMemMapAccessor.openKcore();
    assert.equal(kcore.release, Deno.osRelease());
    for (const fd of [array, hash]) {
      const a = live.mapById(mapGetInfo(fd.fd).id)!;
      const b = kcore.mapById(a.id)!;
      assert.equal(b.name, a.name);
      if (a.type === MapType.ARRAY) {
        for (let i = 0; i < 16; i++) {
          assert.deepEqual(kcore.readArray(b, i), live.readArray(a, i));
        }
      } else {
        const hex = (u: Uint8Array): string =>
          Array.from(u, (x) => x.toString(16).padStart(2, "0")).join("");
        const entries = (acc: typeof live | typeof kcore, m: typeof a) =>
          [...acc.iterHashMap(m)].map((e) => hex(e.key) + ":" + hex(e.value))
            .sort();
        assert.equal(entries(kcore, b).length, 40);
        assert.deepEqual(entries(kcore, b), entries(live, a));
      }
    }
    assert.equal(kcore.notes.length, 1);
  },
});
