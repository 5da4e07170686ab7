/**
 * The one error model: every error bpfmap raises is a {@linkcode BpfmapError}
 * (carrying `cause` and, where there is one, advice), and the same mistake is
 * the same class on every backend. Layer-specific errors (`BpfError`,
 * `BtfError`, `GuestMemoryError`, ...) extend it; the map errors below are
 * shared by every backend, so callers never have to know which one they hold.
 *
 * This file imports nothing: every layer may use it.
 *
 * @module
 */

/** Options every {@linkcode BpfmapError} takes. */
export interface BpfmapErrorOptions {
  /** The lower-level error this one wraps. */
  cause?: unknown;
  /** What the reader can do about it; appended to the message after `; `. */
  hint?: string | undefined;
}

/**
 * The base of every error bpfmap raises. The message is one line: what failed,
 * the input that made it fail, and (after `; `) what to do.
 *
 * @example Tell bpfmap's errors from bugs
 * ```ts
 * import { BpfmapError } from "./errors.ts";
 * const error = new BpfmapError("map 7 is not an array", { hint: "use iterHashMap" });
 * console.log(error instanceof Error, error.message);
 * ```
 */
export class BpfmapError extends Error {
  /** Advice for the reader, when there is some (also in the message). */
  readonly hint: string | undefined;

  /**
   * Builds the one-line message.
   *
   * @param message what failed and which input made it fail
   * @param options the wrapped cause and advice
   */
  constructor(message: string, options: BpfmapErrorOptions = {}) {
    super(
      options.hint ? `${message}; ${options.hint}` : message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** The few facts of a map an error needs to name it. */
export interface MapIdentity {
  /** Kernel map id. */
  id: number;
  /** Kernel-visible name. */
  name: string;
}

/** `map "NAME" (id N)`, the way every message names a map. */
export function describeMap(map: MapIdentity): string {
  return `map "${map.name}" (id ${map.id})`;
}

/**
 * The map is not of a type the operation reads (e.g. `iterHashMap` on an
 * array). The same class on every backend.
 */
export class MapTypeError extends BpfmapError {
  /** The map's `enum bpf_map_type` number. */
  readonly mapType: number;

  /**
   * Builds the one-line message.
   *
   * @param map the map that was passed
   * @param mapType its type number
   * @param expected what the operation reads, e.g. `"a HASH or LRU_HASH map"`
   * @param options cause and advice
   */
  constructor(
    map: MapIdentity,
    mapType: number,
    expected: string,
    options: BpfmapErrorOptions = {},
  ) {
    super(
      `${describeMap(map)} is not ${expected} (its type is ${mapType})`,
      options,
    );
    this.mapType = mapType;
  }
}

/**
 * An argument does not fit the map: a key or value of the wrong size, an
 * index or CPU count out of range, a batch size that cannot be allocated.
 * Raised before anything touches the kernel or guest memory.
 */
export class MapArgumentError extends BpfmapError {
  /** The argument's name, e.g. `"key"`. */
  readonly argument: string;

  /**
   * Builds the one-line message.
   *
   * @param map the map (or null when not tied to one)
   * @param argument the argument's name
   * @param problem what is wrong with it, e.g. `"is 1 byte but the key size is 4"`
   * @param options cause and advice
   */
  constructor(
    map: MapIdentity | null,
    argument: string,
    problem: string,
    options: BpfmapErrorOptions = {},
  ) {
    super(
      `${argument} ${problem}${map ? ` for ${describeMap(map)}` : ""}`,
      options,
    );
    this.argument = argument;
  }
}

/**
 * The map was freed while it was being read (its id no longer opens, or the
 * guest's `map_idr` no longer holds it). The same class on every backend.
 */
export class MapGoneError extends BpfmapError {
  /** The map's id. */
  readonly mapId: number;

  /**
   * Builds the one-line message.
   *
   * @param map the map that vanished
   * @param options cause and advice
   */
  constructor(map: MapIdentity, options: BpfmapErrorOptions = {}) {
    super(`${describeMap(map)} was freed while it was being read`, options);
    this.mapId = map.id;
  }
}

/**
 * The map changed under a walk so much that the result would be wrong, e.g.
 * GET_NEXT_KEY restarted more often than the map has entries.
 */
export class MapChangedError extends BpfmapError {
  /**
   * Builds the one-line message.
   *
   * @param map the map being walked
   * @param what what was observed
   * @param options cause and advice
   */
  constructor(
    map: MapIdentity,
    what: string,
    options: BpfmapErrorOptions = {},
  ) {
    super(`${describeMap(map)} changed during the walk: ${what}`, options);
  }
}

/**
 * The map exists (its id is known) but its contents or record cannot be
 * read: a corrupt guest image, an unmapped pointer.
 */
export class MapUnreadableError extends BpfmapError {
  /** The map's id. */
  readonly mapId: number;

  /**
   * Builds the one-line message.
   *
   * @param map the map
   * @param reason why it cannot be read
   * @param options cause and advice
   */
  constructor(
    map: MapIdentity,
    reason: string,
    options: BpfmapErrorOptions = {},
  ) {
    super(`${describeMap(map)} is unreadable: ${reason}`, options);
    this.mapId = map.id;
  }
}

/**
 * A field path or value given to a field write does not fit the map's value
 * type: no such member, an index past the array, a value out of range for the
 * field's size and signedness, a type bpfmap does not write by text. It is a
 * {@linkcode MapArgumentError} (raised before anything is written), with the
 * field and its C type apart so a harness can report them without parsing.
 */
export class FieldError extends MapArgumentError {
  /** The path as given, e.g. `"cfg.slice_ns"`. */
  readonly field: string;
  /** The field's C type (`"unsigned int"`, `"enum mode"`, `"char[16]"`), or `""` when the path named no field. */
  readonly typeName: string;
  /** What is wrong, without the field or map. */
  readonly problem: string;

  /**
   * Builds the one-line message.
   *
   * @param map the map (null while only a type is known)
   * @param field the path as given
   * @param typeName the field's C type, `""` when unknown
   * @param problem what is wrong, e.g. `"cannot hold 300: range is 0..255"`
   * @param options cause and advice
   */
  constructor(
    map: MapIdentity | null,
    field: string,
    typeName: string,
    problem: string,
    options: BpfmapErrorOptions = {},
  ) {
    super(
      map,
      `field "${field}"${typeName ? ` (${typeName})` : ""}`,
      problem,
      options,
    );
    this.field = field;
    this.typeName = typeName;
    this.problem = problem;
  }

  /** The same error, naming `map` (the BTF layer raises it before a map is known). */
  forMap(map: MapIdentity): FieldError {
    return new FieldError(map, this.field, this.typeName, this.problem, {
      cause: this.cause,
      hint: this.hint,
    });
  }
}

/**
 * A write was refused because the map is read-only to user space: frozen
 * (`BPF_MAP_FREEZE`, as libbpf does to `.rodata`). The same class on every
 * backend; the guest backend raises it unless told `allowReadonly`.
 */
export class MapReadOnlyError extends BpfmapError {
  /** The map's id. */
  readonly mapId: number;

  /**
   * Builds the one-line message.
   *
   * @param map the map
   * @param why why it is read-only, e.g. `"is frozen (BPF_MAP_FREEZE)"`
   * @param options cause and advice
   */
  constructor(map: MapIdentity, why: string, options: BpfmapErrorOptions = {}) {
    super(`${describeMap(map)} ${why}`, options);
    this.mapId = map.id;
  }
}
