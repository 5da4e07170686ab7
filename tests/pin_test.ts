import assert from "node:assert/strict";
import {
  MapNameTooLongError,
  MapNotFoundError,
  MapVanishedError,
  openBpfMapFdByName,
  truncateMapName,
} from "../src/accessor/pin.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import type { OwnedFd } from "../src/sys/fd.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();

function createArray(name: string): OwnedFd {
  return BpfSyscallAccessor.createMap({
    type: MapType.ARRAY,
    keySize: 4,
    valueSize: 4,
    maxEntries: 1,
    name,
  });
}

Deno.test({
  name:
    "openBpfMapFdByName() returns the lowest-id map when two share a name, and holding it keeps it alive",
  ignore,
  fn(): void {
    const name = uniqueName("pin_twin");
    const first = createArray(name);
    using second = createArray(name);
    const firstId = mapGetInfo(first.fd).id;
    const secondId = mapGetInfo(second.fd).id;
    assert.ok(firstId < secondId);
    using held = openBpfMapFdByName(name);
    assert.equal(mapGetInfo(held.fd).id, firstId);
    // The creator lets go; our fd alone keeps the first map alive.
    first.close();
    assert.equal(new BpfSyscallAccessor().mapById(firstId)?.name, name);
    held.close();
    assert.equal(
      new BpfSyscallAccessor().mapById(firstId),
      null,
      "freed once the last fd closes",
    );
    using next = openBpfMapFdByName(name);
    assert.equal(mapGetInfo(next.fd).id, secondId);
  },
});

Deno.test({
  name: "openBpfMapFdByName() names every map seen and the causes on a miss",
  ignore,
  fn(): void {
    const present = uniqueName("pin_here");
    using _fd = createArray(present);
    const missing = uniqueName("pin_gone");
    try {
      openBpfMapFdByName(missing);
      assert.fail("a missing name must throw");
    } catch (caught) {
      assert.ok(caught instanceof MapNotFoundError);
      assert.ok(!(caught instanceof MapVanishedError));
      assert.match(caught.message, new RegExp(`"${missing}"`));
      assert.match(caught.message, new RegExp(`\\d+:${present}`));
      assert.match(caught.message, /maps scanned/);
      assert.match(caught.message, /not loaded yet/);
      assert.match(caught.message, /15 characters/);
      assert.match(caught.message, /already freed/);
      assert.ok(caught.seen.some((m) => m.name === present));
    }
  },
});

Deno.test({
  name:
    "openBpfMapFdByName() reports a map freed between enumeration and open by its id",
  ignore,
  fn(): void {
    const name = uniqueName("pin_toctou");
    const fd = createArray(name);
    const id = mapGetInfo(fd.fd).id;
    try {
      openBpfMapFdByName(name, {
        onEnumerated: (enumerated) => {
          if (enumerated === id) fd.close();
        },
      });
      assert.fail("the freed map must not be found");
    } catch (caught) {
      assert.ok(caught instanceof MapVanishedError, String(caught));
      assert.deepEqual(caught.vanishedIds, [id]);
      assert.match(
        caught.message,
        new RegExp(`id ${id} vanished between enumeration`),
      );
    } finally {
      fd.close();
    }
  },
});

Deno.test("openBpfMapFdByName() refuses a name longer than 15 characters up front with its truncated form", () => {
  const long = "rh_pcpu_hash_with_long_name";
  assert.throws(() => openBpfMapFdByName(long), (error: unknown) => {
    assert.ok(error instanceof MapNameTooLongError);
    assert.equal(error.truncated, "rh_pcpu_hash_wi");
    assert.match(error.message, /"rh_pcpu_hash_wi"/);
    assert.match(error.message, /27 characters/);
    return true;
  });
  assert.equal(truncateMapName("short"), "short");
});

Deno.test({
  name: "openBpfMapFdByName() finds a map whose name is exactly 15 characters",
  ignore,
  fn(): void {
    const name = uniqueName("pin_fifteen_chars").padEnd(15, "x").slice(0, 15);
    using _fd = createArray(name);
    using held = openBpfMapFdByName(name);
    assert.equal(mapGetInfo(held.fd).name, name);
  },
});

Deno.test({
  name: "bpfmap without CAP_SYS_ADMIN fails with one clear EPERM line",
  ignore,
  async fn(): Promise<void> {
    const deno = Deno.execPath();
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    const result = await new Deno.Command("setpriv", {
      args: [
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--",
        deno,
        "run",
        "--allow-all",
        "--no-lock",
        cli,
        "list",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 1, stderr);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.match(
      lines[0]!,
      /^bpfmap: error: BPF_MAP_GET_NEXT_ID failed .*EPERM \(operation not permitted\); the process is root but lacks CAP_SYS_ADMIN/,
    );
    assert.doesNotMatch(lines[0]!, /sudo/, "sudo cannot help a root process");
  },
});

Deno.test({
  name:
    "bpfmap as an ordinary user fails with one EPERM line that says to use sudo",
  ignore,
  async fn(): Promise<void> {
    const home = Deno.makeTempDirSync();
    Deno.chmodSync(home, 0o777);
    try {
      const result = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "env",
          `DENO_DIR=${home}`,
          `HOME=${home}`,
          Deno.execPath(),
          "run",
          "--allow-all",
          "--no-lock",
          new URL("../cli.ts", import.meta.url).pathname,
          "list",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(result.stderr);
      assert.equal(result.code, 1, stderr);
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      assert.match(
        stderr,
        /^bpfmap: error: BPF_MAP_GET_NEXT_ID failed .*EPERM \(operation not permitted\); needs root or CAP_SYS_ADMIN \(run with sudo\)$/m,
      );
    } finally {
      Deno.removeSync(home, { recursive: true });
    }
  },
});
