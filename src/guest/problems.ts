/**
 * What a guest walk had to skip, recorded instead of dropped: the guest
 * layer's record of a skipped map, bucket, element, owner or page. Its shape
 * is the accessor's `ReadProblem` (src/accessor/types.ts), so the accessor
 * hands these out as they are; it is declared here because the guest layer
 * sits below the accessor and cannot import from it.
 *
 * @module
 */

/** One thing a walk skipped. */
export interface GuestProblem {
  /** What was skipped. */
  what: "map" | "bucket" | "element" | "page" | "owner" | "program";
  /** The map it belongs to, when known. */
  mapId?: number;
  /** The guest kernel address involved, when there is one. */
  address?: bigint;
  /** One line: what was skipped and why. */
  message: string;
}

/** Collects problems in order, capped so a hostile image cannot exhaust memory. */
export class ProblemLog {
  readonly #items: GuestProblem[] = [];
  readonly #limit: number;
  #dropped = 0;

  /** @param limit most problems kept; the rest are counted in one last entry */
  constructor(limit = 10_000) {
    this.#limit = limit;
  }

  /** Records one problem. */
  add(problem: GuestProblem): void {
    if (this.#items.length < this.#limit) this.#items.push(problem);
    else this.#dropped++;
  }

  /** Everything recorded, oldest first (plus a count of what did not fit). */
  list(): GuestProblem[] {
    return this.#dropped === 0 ? [...this.#items] : [...this.#items, {
      what: "element",
      message: `${this.#dropped} more problems were not kept`,
    }];
  }

  /** Number recorded (kept or not). */
  get size(): number {
    return this.#items.length + this.#dropped;
  }
}
