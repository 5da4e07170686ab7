/**
 * Kernel addresses to `symbol+0xoffset`, from the running kernel's
 * `/proc/kallsyms`, parsed once per table and searched by bisection.
 *
 * @module
 */

/** A sorted symbol table. */
export class KernelSymbols {
  readonly #addresses: BigUint64Array;
  readonly #names: string[];

  private constructor(addresses: BigUint64Array, names: string[]) {
    this.#addresses = addresses;
    this.#names = names;
  }

  /**
   * Parses kallsyms text (`ADDRESS TYPE NAME [MODULE]` lines). Only text
   * symbols are kept: stack frames point into code, and data symbols in
   * between would name a return address after the wrong thing.
   */
  static parse(text: string): KernelSymbols {
    const entries: { address: bigint; type: string; name: string }[] = [];
    for (const line of text.split("\n")) {
      const first = line.indexOf(" ");
      if (first !== 16 || line.length < 20) continue;
      const type = line[17];
      if (type !== "t" && type !== "T" && type !== "w" && type !== "W") {
        continue;
      }
      const address = BigInt(`0x${line.slice(0, 16)}`);
      // Addresses read as zero without CAP_SYSLOG; a table of zeros names nothing.
      if (address === 0n) continue;
      const rest = line.slice(19);
      const tab = rest.indexOf("\t");
      entries.push({
        address,
        type,
        name: tab < 0 ? rest : rest.slice(0, tab),
      });
    }
    return KernelSymbols.fromSymbols(entries);
  }

  /**
   * A table from decoded symbols (a guest's kallsyms); like {@linkcode parse},
   * only text symbols are kept.
   */
  static fromSymbols(
    symbols: Iterable<{ address: bigint; type: string; name: string }>,
  ): KernelSymbols {
    const entries: [bigint, string][] = [];
    for (const { address, type, name } of symbols) {
      if (address === 0n || !"tTwW".includes(type) || type.length !== 1) {
        continue;
      }
      entries.push([address, name]);
    }
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const addresses = new BigUint64Array(entries.length);
    const names = new Array<string>(entries.length);
    entries.forEach(([address, name], i) => {
      addresses[i] = address;
      names[i] = name;
    });
    return new KernelSymbols(addresses, names);
  }

  /** The running kernel's table (`/proc/kallsyms`). */
  static load(path = "/proc/kallsyms"): KernelSymbols {
    return KernelSymbols.parse(Deno.readTextFileSync(path));
  }

  /**
   * This table plus `extra` (text symbols only), merged in one pass: a large
   * table kept once, with a few symbols that change (BPF programs) added per
   * read.
   */
  with(
    extra: Iterable<{ address: bigint; type: string; name: string }>,
  ): KernelSymbols {
    const more = KernelSymbols.fromSymbols(extra);
    const a = this.#addresses;
    const b = more.#addresses;
    const addresses = new BigUint64Array(a.length + b.length);
    const names = new Array<string>(addresses.length);
    let i = 0;
    let j = 0;
    for (let k = 0; k < addresses.length; k++) {
      if (j >= b.length || (i < a.length && a[i]! <= b[j]!)) {
        addresses[k] = a[i]!;
        names[k] = this.#names[i++]!;
      } else {
        addresses[k] = b[j]!;
        names[k] = more.#names[j++]!;
      }
    }
    return new KernelSymbols(addresses, names);
  }

  /** How many symbols the table holds. */
  get size(): number {
    return this.#addresses.length;
  }

  /** The symbol at or below `address` and the distance to it, or null below the first. */
  lookup(address: bigint): { name: string; offset: bigint } | null {
    const addresses = this.#addresses;
    let low = 0;
    let high = addresses.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (addresses[middle]! <= address) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    if (found < 0) return null;
    return { name: this.#names[found]!, offset: address - addresses[found]! };
  }

  /** `name+0xoff`, or null when no symbol is at or below `address`. */
  symbolize(address: bigint): string | null {
    const hit = this.lookup(address);
    return hit === null ? null : `${hit.name}+0x${hit.offset.toString(16)}`;
  }
}
