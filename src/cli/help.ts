/**
 * The CLI's help texts.
 *
 * @module
 */

import { SOURCE_HELP } from "./source.ts";

/** The CLI's version, as `--version` prints it. */
export const VERSION = "0.1.0";

/** `bpfmap --help`. */
export const MAIN_HELP = `bpfmap ${VERSION}: find, hold and read Linux BPF maps

Usage: bpfmap <command> [options]

Commands:
  list                       List every map (aligned table, or --json like bpftool -j)
  show  (--id N | --name NAME)  Show one map's details
  dump  [--id N | --name NAME] Dump a map's entries, or every map (bpftool's JSON with --json)
  contains --id N KEY        Test a bloom filter for KEY (exit 0 maybe present, 1 absent)
  find  NAME                 Find the lowest-id map with this kernel-visible name
  pin   NAME PATH            Pin the map named NAME at a bpffs PATH
  hold  NAME... [-- CMD ...] Keep maps alive while CMD runs, or until SIGINT/SIGTERM
  diff  BEFORE.json AFTER.json  What changed between two failure-dump reports
  progs                      List every BPF program (table, or --json like bpftool prog show -j)
  write (--id N | --name NAME) FIELD=VALUE...  Set fields of one element by BTF path
  scx                        The sched_ext scheduler: which is attached, its maps, the outgoing ones
  help  [COMMAND]            Show help for a command

Options:
  -h, --help                 Show help (also after any command)
  -V, --version              Show the version

Needs root (or CAP_SYS_ADMIN): the kernel refuses to enumerate maps otherwise.
Exit status: 0 ok, 1 runtime error (or data skipped without --partial),
2 usage error.
`;

const PARTIAL_HELP =
  `      --partial    Exit 0 even when some data had to be skipped (each skip
                   is still a "bpfmap: warning:" line on stderr)`;

/** Help per command. */
export const HELP: Readonly<Record<string, string>> = {
  list: `Usage: bpfmap list [--json] [--partial] [SOURCE]

List every BPF map in id order.

Options:
  -j, --json       One JSON array of bpftool-style objects (id, type, name, flags,
                   bytes_key, bytes_value, max_entries, bytes_memlock, frozen, btf_id)
${PARTIAL_HELP}
  -h, --help       Show this help

${SOURCE_HELP}`,
  show: `Usage: bpfmap show (--id N | --name NAME) [--json] [--partial] [SOURCE]

Show one map. --name matches the kernel-visible name exactly; several matches
are all shown (a JSON array when more than one, as bpftool does).

Options:
      --id N       Map id
      --name NAME  Kernel-visible map name (at most 15 characters)
  -j, --json       bpftool's JSON object
${PARTIAL_HELP}
  -h, --help       Show this help

${SOURCE_HELP}`,
  dump:
    `Usage: bpfmap dump [--id N | --name NAME] [--json] [--max-entries N] [--batch-size N] [--hex] [--recurse] [--follow-arena] [--partial] [SOURCE]

Dump a map's entries. Hash and array maps are read in LOOKUP_BATCH runs and
written as they arrive. Per-CPU maps show one value per possible CPU. Maps
with BTF are shown typed: --json adds bpftool's "formatted" object, text
shows values instead of hex. An entry whose value cannot be read is listed
with its error ({"key":[...],"value":{"error":"..."}}); an error that stops
a dump is the last element ({"error":"..."}), so the output stays valid.

Without --id or --name, dump every map (the failure dump): each map's info
and up to --max-entries (default 64) rendered entries, grouped per map; with
--json, the report schema "bpfmap.failure-dump/3". The report starts with the
sched_ext scheduler (as \`bpfmap scx\` shows it) and every program with its run
statistics; maps of the scheduler are marked "role": "active" or "outgoing"
(a previous instance's map still held). Maps with a type reader
(ring buffers, program and perf-event arrays, stack traces, queues...) show
what it reads; slots the kernel never shows user space are one note each.

Options:
      --id N             Map id
      --name NAME        Kernel-visible (or full BTF) map name; every match is dumped
  -j, --json             bpftool's JSON: [{"key":["0x00",...],"value":[...]}, ...]
      --max-entries N    Write at most N entries per map (the rest are counted)
      --batch-size N     Entries per LOOKUP_BATCH call, 1 to 1048576 (default
                         4096; batches stay under 4 MiB whatever N is)
      --hex              Raw bytes only, even when the map has BTF
      --recurse          Maps of maps: read each inner map in place (its
                         entries, or its type's contents) under "inner";
                         4 levels deep, each map shown once
      --follow-arena     Failure dump only: pointers (and u64s) in values and
                         globals that hold an address in a BPF arena are read
                         from the arena's pages and shown with their pointee
                         type ("-> path: type at ADDR: value"), 3 levels deep,
                         32 pointers and 64 KiB per value; a page no process
                         has mapped (live) or a type BTF lacks is a note
${PARTIAL_HELP}
  -h, --help             Show this help

${SOURCE_HELP}`,
  contains: `Usage: bpfmap contains --id N [--hex] [--json] KEY... [SOURCE]

Test whether KEY may be in the BLOOM_FILTER map N. Prints "maybe present"
(bloom filters have false positives) or "absent" (certain). Live, the kernel
answers (BPF_MAP_LOOKUP_ELEM); from guest memory, bpfmap hashes KEY with the
filter's seed and reads its bits, as the guest kernel would.

KEY is one integer (decimal or 0x hex, negative as two's complement), stored
little-endian in the filter's value size; with --hex, hex bytes in memory
order: 0a 00 00 01, 0x0a 0x00 0x00 0x01 or 0a000001.

Options:
      --id N       The bloom filter's map id
      --hex        KEY is hex bytes, not an integer
  -j, --json       {"id":N,"present":"maybe"|false}
  -h, --help       Show this help

Exit status: 0 maybe present, 1 absent, 2 usage error or any other error
(as grep: a failure never reads as "absent").

${SOURCE_HELP}`,
  find: `Usage: bpfmap find NAME [--json] [--full] [--partial] [SOURCE]

Walk map ids in increasing order and print the first map whose kernel-visible
name equals NAME (the pin helper). Exit 1 with the reason when none matches.

Options:
      --full       Also match the full source name kept in the map's BTF, for
                   names longer than the kernel's 15 characters
  -j, --json       bpftool's JSON object
${PARTIAL_HELP}
  -h, --help       Show this help

${SOURCE_HELP}`,
  pin: `Usage: bpfmap pin NAME PATH [--partial]

Pin the lowest-id map named NAME at PATH on a bpffs mount (e.g.
/sys/fs/bpf/mymap), so it outlives every process.

Options:
${PARTIAL_HELP}
  -h, --help       Show this help
`,
  hold: `Usage: bpfmap hold NAME... [-- COMMAND [ARGS...]]

Open every named map (lowest id wins) and keep the fds open: while COMMAND
runs, or without COMMAND until SIGINT or SIGTERM. Prints the held ids on
stderr. SIGINT, SIGTERM and SIGHUP are passed on to COMMAND, and the maps are
held until it has exited; the exit status is COMMAND's (128 + the signal's
number when a signal ended it).

Options:
  -h, --help   Show this help
`,
  progs: `Usage: bpfmap progs [--json] [--partial] [SOURCE]

List every BPF program in id order: type, name, tag, the ids of the maps it
uses, instruction and machine-code sizes, memlock, and run count and time
when kernel.bpf_stats_enabled is (or was) on.

Options:
  -j, --json       One JSON array with bpftool prog show -j's keys (id, type,
                   name, tag, gpl_compatible, run_time_ns, run_cnt, loaded_at,
                   uid, bytes_xlated, jited, bytes_jited, bytes_memlock,
                   map_ids, btf_id, verified_insns); a guest's programs have
                   load_time_ns (since the guest's boot) for loaded_at
${PARTIAL_HELP}
  -h, --help       Show this help

${SOURCE_HELP}`,
  scx: `Usage: bpfmap scx [--json] [--dsq-tasks N] [--partial] [SOURCE]

Show the sched_ext scheduler's state, section by section. "active scheduler":
which scheduler is attached (ops name, struct, enable state when sysfs shows
it), its struct_ops map, the programs attached through it, the maps those
programs use (active) and the maps named like them that it does not use
(outgoing: a previous instance's maps, still held open during a swap). The
rule that decided is printed with its reason: "struct_ops" (the attached ops
map -> its programs -> their used_maps), or "name" (same-named maps grouped
by object prefix, the newest taken as active) when struct_ops cannot decide.
Then the scheduler the way a person debugging a stall reads it: "root
scheduler" (sched_ext's enable state as /sys/kernel/sched_ext/state prints
it, the root scheduler's ops name, exit kind, exit reason and message, exit
code, watchdog timeout), "events" (the SCX_EV_* counters summed over CPUs,
named as root/events names them; text shows the non-zero ones), "cpus"
(each possible CPU's rq->scx: nr_running, flags, the running task, the local
DSQ and its first tasks) and "dsqs" (the global DSQ per node, the user DSQs
of the scheduler's dsq_hash, busy bypass DSQs), each task with pid, comm,
weight, dsq_vtime, slice, DSQ id and scx flags. From a guest's memory all
of it; from the live kernel what sysfs shows (root, events). A scheduler
that already exited (scx_root cleared) is still found while its loader holds
the struct_ops link. A section that cannot be gathered says "unavailable"
and why.

Options:
  -j, --json       One JSON object, one member per section (the failure
                   report's "scheduler"), each its data or
                   {"unavailable":"reason"}; every u64 exact
      --dsq-tasks N  Tasks listed per DSQ (default 8; nr still counts all)
${PARTIAL_HELP}
  -h, --help       Show this help

${SOURCE_HELP}`,
  write:
    `Usage: bpfmap write (--id N | --name NAME) [--key K] [--allow-rodata] FIELD=VALUE... [SOURCE]

Set fields of one map element, named by BTF path as in the program's C source:
a global variable of a .bss/.data map (g_counter=0, cfg.mode=MODE_RR), a
member of a struct value (stats.slots[3].pid=7), through anonymous structs and
unions. Every FIELD=VALUE is checked before anything is written; then each
changed field is printed as "FIELD: OLD -> NEW".

Values: integers (decimal, 0x, 0o, 0b; range-checked for the field's size and
signedness, bitfields included), enums by enumerator name or number, bools
(true, false, 1, 0), floats, and char arrays from a string (NUL-padded, at
most one byte shorter than the array). Structs, pointers and kernel-owned
fields (locks, timers, kptrs) are refused.

Live, the element is read, changed and written back whole (BPF_MAP_UPDATE_ELEM):
a program's store to another field in between is lost. Frozen maps (.rodata)
are refused. In a guest (--guest-mem), only the fields' bytes are stored in
its RAM file; give --qmp to freeze it for the write.

Options:
      --id N          Map id
      --name NAME     Kernel-visible map name (must name one map)
      --key K         Which element: an ARRAY index (default 0, the global
                      data's one element), or a HASH key as an integer
                      (little-endian in the key size) or bytes ("0x01 0 0 0")
      --allow-rodata  Guest only: write a frozen map (.rodata) anyway. The
                      verifier usually folds const volatile knobs into the
                      programs at load time, so this often changes nothing
  -h, --help          Show this help

${SOURCE_HELP}`,
  diff: `Usage: bpfmap diff BEFORE.json AFTER.json [--json]

Compare two failure-dump reports (written by \`bpfmap dump --json\` without a
selector, or reportToJson()): maps only in one report, and for maps in both
the info fields, global variables and entries (matched by key) that differ,
down to each changed leaf. Maps pair by id, then by name and type (a new run's
maps have new ids). Entries beyond a report's --max-entries are counted, not
called removed. Reads files only: no root needed.

Options:
  -j, --json   One JSON document, schema "bpfmap.report-diff/1" (u64 exact)
  -h, --help   Show this help
`,
};
