/**
 * Failure dumps: the state of every BPF map at one moment, built from any
 * accessor (live kernel or guest memory) and written as exact JSON or text.
 *
 * ```ts ignore
 * import { BpfSyscallAccessor } from "../accessor/syscall.ts";
 * import { dumpState, reportToText } from "./mod.ts";
 * console.error(reportToText(dumpState(new BpfSyscallAccessor())));
 * ```
 *
 * @module
 */

export { dumpState, type DumpStateOptions } from "./dump_state.ts";
export {
  reportToJson,
  type ReportToJsonOptions,
  reportToText,
} from "./format.ts";
export {
  type DumpArena,
  type DumpEntry,
  type DumpGlobal,
  FAILURE_DUMP_SCHEMA,
  type FailureDumpReport,
  type MapDump,
  type MapDumpKind,
} from "./report.ts";
export {
  diffReports,
  diffToJson,
  diffToText,
  type EntryChange,
  type MapChange,
  type MapPresence,
  type MapRef,
  REPORT_DIFF_SCHEMA,
  type ReportDiff,
  ReportFormatError,
  reportsDiffer,
  type ValueChange,
} from "./diff.ts";
