import assert from "node:assert/strict";
import { ALL_LAYOUTS, type AttrLayout } from "../src/sys/attr.ts";
import { SYSCALL_NUMBERS, syscallNumbers } from "../src/sys/syscall_numbers.ts";
import { BpfmapError } from "../src/errors.ts";
import { ignoreUnlessCommands, REQUIRE_ALL } from "./_support/env.ts";

/** x86-64 has its own syscall table; arm64 uses the generic one. */
function unistdHeader(): string {
  return Deno.build.arch === "x86_64"
    ? "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    : "/usr/include/asm-generic/unistd.h";
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("attr field tables: no two fields overlap and every field is naturally aligned", () => {
  for (const layout of ALL_LAYOUTS as AttrLayout<string>[]) {
    const fields = Object.values(layout.fields).sort((a, b) =>
      a.offset - b.offset
    );
    assert.ok(fields.length > 0, layout.what);
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!;
      assert.ok([4, 8, 16].includes(field.size), field.cName);
      // char[16] names are byte arrays; integers sit at their own alignment.
      const align = field.size === 16 ? 1 : field.size;
      assert.equal(field.offset % align, 0, `${layout.what} ${field.cName}`);
      const next = fields[i + 1];
      if (next) {
        assert.ok(
          field.offset + field.size <= next.offset,
          `${layout.what}: ${field.cName} overlaps ${next.cName}`,
        );
      }
    }
    assert.equal(
      layout.size,
      Math.max(...fields.map((f) => f.offset + f.size)),
    );
  }
});

Deno.test({
  name:
    "attr field tables match offsetof/sizeof of the kernel's own linux/bpf.h, compiled with clang",
  ignore: ignoreUnlessCommands("clang"),
  fn(): void {
    const header = "/usr/include/linux/bpf.h";
    // linux-libc-dev: the oracle must exist, or the test fails.
    const headerText = Deno.readTextFileSync(header);
    // A field newer than the installed header (Debian 12 ships 6.1's) is
    // padding there: it is checked by the overlap test only.
    const known = (field: { cName: string; since?: string }): boolean =>
      field.since === undefined ||
      new RegExp(`\\b${field.cName.split(".").pop()}\\b`).test(headerText);
    const lines: string[] = [];
    for (const layout of ALL_LAYOUTS as AttrLayout<string>[]) {
      for (const field of Object.values(layout.fields).filter(known)) {
        lines.push(
          `printf("%s %s %zu %zu\\n", "${layout.cType}", "${field.cName}", offsetof(${layout.cType}, ${field.cName}), sizeof(((${layout.cType} *)0)->${field.cName}));`,
        );
      }
    }
    const dir = Deno.makeTempDirSync();
    try {
      Deno.writeTextFileSync(
        `${dir}/layout.c`,
        `#include <stddef.h>\n#include <stdio.h>\n#include <linux/bpf.h>\nint main(void) {\n${
          lines.join("\n")
        }\nreturn 0;\n}\n`,
      );
      const cc = new Deno.Command("clang", {
        args: ["-o", `${dir}/layout`, `${dir}/layout.c`],
      }).outputSync();
      assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
      const run = new Deno.Command(`${dir}/layout`).outputSync();
      assert.ok(run.success);
      const kernel = new Map<string, [number, number]>();
      for (
        const line of new TextDecoder().decode(run.stdout).trim().split("\n")
      ) {
        const parts = line.split(" ");
        const size = Number(parts.pop());
        const offset = Number(parts.pop());
        kernel.set(parts.join(" "), [offset, size]);
      }
      let checked = 0;
      for (const layout of ALL_LAYOUTS as AttrLayout<string>[]) {
        for (const field of Object.values(layout.fields).filter(known)) {
          assert.deepEqual(
            kernel.get(`${layout.cType} ${field.cName}`),
            [field.offset, field.size],
            `${layout.what}: ${field.cName}`,
          );
          checked++;
        }
      }
      assert.equal(checked, lines.length);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("syscallNumbers() picks bpf() by architecture and refuses one it does not know", () => {
  assert.equal(syscallNumbers("x86_64").bpf, 321n);
  assert.equal(syscallNumbers("aarch64").bpf, 280n);
  for (const numbers of Object.values(SYSCALL_NUMBERS)) {
    assert.equal(numbers.pidfdOpen, 434n);
    assert.equal(numbers.pidfdGetfd, 438n);
  }
  assert.throws(
    () => syscallNumbers("riscv64"),
    (error: unknown) =>
      error instanceof BpfmapError &&
      /no system call numbers for architecture "riscv64"/.test(error.message) &&
      /src\/sys\/syscall_numbers\.ts/.test(error.message),
  );
});

Deno.test({
  name:
    "syscallNumbers() agrees with the installed kernel headers for this machine's architecture",
  // linux-libc-dev holds the oracle; CI installs it (every skip fails there).
  ignore: !REQUIRE_ALL && !existsSync(unistdHeader()),
  fn(): void {
    const text = Deno.readTextFileSync(unistdHeader());
    const number = (name: string): bigint =>
      BigInt(new RegExp(`#define __NR_${name} (\\d+)`).exec(text)![1]!);
    const ours = syscallNumbers();
    assert.equal(ours.bpf, number("bpf"));
    assert.equal(ours.pidfdOpen, number("pidfd_open"));
    assert.equal(ours.pidfdGetfd, number("pidfd_getfd"));
    // The generic table is also arm64's: check it whatever we run on.
    const generic = Deno.readTextFileSync("/usr/include/asm-generic/unistd.h");
    assert.equal(
      SYSCALL_NUMBERS.aarch64!.bpf,
      BigInt(/#define __NR_bpf (\d+)/.exec(generic)![1]!),
    );
  },
});
