import assert from "node:assert/strict";
import { BpfmapError } from "../src/errors.ts";
import { parseCpuList } from "../src/sys/cpus.ts";
import { BpfError, permissionHint } from "../src/sys/errors.ts";
import { errnoName, errnoText, knownErrnos } from "../src/sys/errno.ts";
import {
  commandName,
  Errno,
  mapTypeName,
  parseMapType,
} from "../src/sys/constants.ts";
import { formatBytes, mapInfoJson } from "../src/cli/format.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";

Deno.test("parseCpuList() counts slots up to the highest possible CPU", () => {
  assert.equal(parseCpuList("0\n"), 1);
  assert.equal(parseCpuList("0-1\n"), 2);
  assert.equal(parseCpuList("0-3,8-11"), 12);
  assert.equal(parseCpuList("0,2"), 3);
  assert.throws(() => parseCpuList(""), BpfmapError);
  assert.throws(() => parseCpuList("0-x"), /Bad CPU list "0-x"/);
  assert.throws(() => parseCpuList("3-1"), /Bad CPU range "3-1"/);
});

Deno.test("BpfError names the command, errno and a readable text, never 'Unknown error 524'", () => {
  const unsupported = new BpfError(4, Errno.ENOTSUPP, { action: "map fd 5" });
  assert.equal(unsupported.commandName, "BPF_MAP_GET_NEXT_KEY");
  assert.equal(unsupported.code, "ENOTSUPP");
  assert.equal(unsupported.errno, 524);
  assert.equal(
    unsupported.message,
    "BPF_MAP_GET_NEXT_KEY failed (map fd 5): ENOTSUPP (operation not supported for this map type)",
  );
  const denied = new BpfError(12, Errno.EPERM, {
    hint: permissionHint({ euid: 1000, sysAdmin: false }),
  });
  assert.match(
    denied.message,
    /EPERM \(operation not permitted\); needs root or CAP_SYS_ADMIN \(run with sudo\)$/,
  );
  assert.equal(
    new BpfError(-1, 9, { action: "pidfd_open(3)" }).message,
    "pidfd_open(3) failed: EBADF (bad file descriptor)",
  );
  assert.match(
    new BpfError(99, 200).message,
    /^bpf command 99 failed: errno 200$/,
  );
  assert.equal(commandName(24), "BPF_MAP_LOOKUP_BATCH");
});

Deno.test("permissionHint() tells sudo only to a caller that is not root", () => {
  assert.match(
    permissionHint({ euid: 1000, sysAdmin: false }),
    /run with sudo/,
  );
  for (
    const privileges of [
      { euid: 0, sysAdmin: true },
      { euid: 0, sysAdmin: false },
      { euid: 0, sysAdmin: null },
      { euid: 1000, sysAdmin: true },
    ]
  ) {
    const hint = permissionHint(privileges);
    assert.doesNotMatch(hint, /sudo/, JSON.stringify(privileges));
    assert.match(hint, /CAP_SYS_ADMIN/);
  }
  assert.match(
    permissionHint({ euid: 0, sysAdmin: false }),
    /lacks CAP_SYS_ADMIN/,
  );
});

Deno.test("errnoName() and errnoText() cover every errno of the kernel's headers", () => {
  assert.equal(errnoName(36), "ENAMETOOLONG");
  assert.equal(errnoText(36), "file name too long");
  assert.equal(errnoName(24), "EMFILE");
  assert.equal(errnoText(24), "too many open files");
  assert.equal(
    new BpfError(6, 36, { action: "pin to /sys/fs/bpf/x" }).message.split(
      ";",
    )[0],
    "BPF_OBJ_PIN failed (pin to /sys/fs/bpf/x): ENAMETOOLONG (file name too long)",
  );
  assert.equal(errnoName(4000), "errno 4000");
  // The headers are the oracle where they are installed (linux-libc-dev).
  let headers = "";
  for (const file of ["errno-base.h", "errno.h"]) {
    try {
      headers += Deno.readTextFileSync(`/usr/include/asm-generic/${file}`);
    } catch {
      // Not installed: the spot checks above stand.
    }
  }
  const defined = [...headers.matchAll(/^#define\s+(E[A-Z0-9]+)\s+(\d+)/gm)];
  if (headers !== "") assert.ok(defined.length > 120, "headers parsed");
  for (const [, name, number] of defined) {
    assert.equal(errnoName(Number(number)), name);
    assert.ok(errnoText(Number(number)), `${name} has a text`);
  }
  const known = new Set(knownErrnos());
  for (let errno = 1; errno <= 133; errno++) {
    if (errno !== 41 && errno !== 58) {
      assert.ok(known.has(errno), `errno ${errno}`);
    }
  }
});

Deno.test("mapTypeName() spells types as bpftool does and shows unknown numbers as numbers", () => {
  assert.equal(mapTypeName(1), "hash");
  assert.equal(mapTypeName(33), "arena");
  assert.equal(mapTypeName(99), 99);
  assert.equal(parseMapType("lru_percpu_hash"), 10);
  assert.equal(parseMapType("7"), 7);
  assert.equal(parseMapType("nope"), undefined);
});

Deno.test("mapInfoJson() writes u64 fields exactly and omits what bpftool omits", () => {
  const json = mapInfoJson({
    id: 7,
    name: "",
    type: 99,
    keySize: 4,
    valueSize: 8,
    maxEntries: 1,
    flags: 0,
    btfId: 0,
    btfKeyTypeId: 0,
    btfValueTypeId: 0,
    btfVmlinuxValueTypeId: 0,
    mapExtra: 18446744073709551615n,
    frozen: true,
    memlock: 9007199254740993n,
  });
  assert.equal(
    json,
    '{"id":7,"type":99,"flags":0,"bytes_key":4,"bytes_value":8,"max_entries":1,"bytes_memlock":9007199254740993,"frozen":1,"map_extra":18446744073709551615}',
  );
  assert.equal(formatBytes(1536n), "1.5KiB");
  assert.equal(formatBytes(100n), "100B");
});

Deno.test({
  name:
    "OwnedFd never hands out fd 0: a map created while fd 0 is free is moved off it",
  ignore: ignoreUnlessRoot(),
  async fn(): Promise<void> {
    const script = `
      import { getLibc } from "${
      new URL("../src/sys/ffi.ts", import.meta.url).href
    }";
      import { mapCreate, mapGetInfo } from "${
      new URL("../src/sys/bpf.ts", import.meta.url).href
    }";
      getLibc().close(0);
      using fd = mapCreate({ type: 2, keySize: 4, valueSize: 4, maxEntries: 1, name: "fd0_probe" });
      console.log(JSON.stringify({ fd: fd.fd, name: mapGetInfo(fd.fd).name }));
    `;
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-lock", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(result.success, new TextDecoder().decode(result.stderr));
    const { fd, name } = JSON.parse(new TextDecoder().decode(result.stdout));
    assert.notEqual(fd, 0);
    assert.equal(name, "fd0_probe");
  },
});
