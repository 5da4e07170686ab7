import assert from "node:assert/strict";
import { btfFromElf, btfFromElfFile, elfSection } from "../src/btf/elf.ts";
import { BtfError, BtfNotFoundError } from "../src/btf/errors.ts";
import { ignoreUnlessCommands } from "./_support/env.ts";

const SHT_NOBITS = 8;

/** The (type, offset, size) of every section header. */
function sectionHeaders(
  bytes: Uint8Array,
): { type: number; offset: number; size: number }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  return Array.from({ length: shnum }, (_, i) => {
    const at = shoff + i * shentsize;
    return {
      type: view.getUint32(at + 4, true),
      offset: Number(view.getBigUint64(at + 0x18, true)),
      size: Number(view.getBigUint64(at + 0x20, true)),
    };
  });
}

Deno.test({
  name:
    "btfFromElf() reads a clang object whose .bss (NOBITS) is far larger than the file",
  ignore: ignoreUnlessCommands("clang"),
  fn(): void {
    const dir = Deno.makeTempDirSync();
    try {
      Deno.writeTextFileSync(
        `${dir}/big_bss.c`,
        [
          "char big_buffer[4 << 20];",
          "unsigned long long counter;",
          'int value __attribute__((section(".data"))) = 7;',
          "",
        ].join("\n"),
      );
      const cc = new Deno.Command("clang", {
        args: [
          "-target",
          "bpf",
          "-g",
          "-O2",
          "-c",
          "-o",
          `${dir}/big_bss.o`,
          `${dir}/big_bss.c`,
        ],
      }).outputSync();
      assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
      const bytes = Deno.readFileSync(`${dir}/big_bss.o`);
      // The premise: a NOBITS section whose size runs past the end of the file.
      const bss = sectionHeaders(bytes).find((s) => s.type === SHT_NOBITS);
      assert.ok(bss, "the object has a NOBITS section");
      assert.ok(
        bss.offset + bss.size > bytes.byteLength,
        "it is larger than the file",
      );

      const btf = btfFromElf(bytes, `${dir}/big_bss.o`);
      const names = new Set<string>();
      for (let id = 1; id < btf.typeCount; id++) {
        names.add(btf.type(id).name);
      }
      for (const name of ["big_buffer", "counter", "value", ".bss"]) {
        assert.ok(names.has(name), `BTF has ${name}`);
      }
      assert.deepEqual(elfSection(bytes, ".bss"), new Uint8Array(0));
      assert.equal(btfFromElfFile(`${dir}/big_bss.o`).typeCount, btf.typeCount);

      // A section that does claim file bytes past the end is still refused.
      const broken = bytes.slice();
      const view = new DataView(broken.buffer);
      const shoff = Number(view.getBigUint64(0x28, true));
      const shentsize = view.getUint16(0x3a, true);
      const index = sectionHeaders(bytes).findIndex((s) =>
        s.type === SHT_NOBITS
      );
      view.setUint32(shoff + index * shentsize + 4, 1, true); // PROGBITS
      assert.throws(() => btfFromElf(broken), /runs past the file end/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("btfFromElfFile() on an ELF without .BTF says so in one line naming the file", () => {
  // Any ordinary program will do; /bin/ls is on every Debian system.
  const path = "/bin/ls";
  assert.throws(
    () => btfFromElfFile(path),
    (error: unknown) =>
      error instanceof BtfNotFoundError && error instanceof BtfError &&
      error.message.startsWith("no .BTF section in /bin/ls;") &&
      !error.message.includes("\n"),
  );
  assert.throws(
    () => btfFromElf(Deno.readFileSync(path), path),
    /^BtfNotFoundError|no \.BTF section in \/bin\/ls/,
  );
});
