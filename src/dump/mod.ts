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

export {
  dumpState,
  type DumpStateOptions,
  type FailureDumpSummary,
  streamFailureDump,
} from "./dump_state.ts";
export {
  JsonReportWriter,
  reportToJson,
  type ReportToJsonOptions,
  reportToText,
  type TextOut,
  TextReportWriter,
} from "./format.ts";
export { writeFailureDump, type WriteFailureDumpOptions } from "./stream.ts";
export {
  type ArenaFollowOptions,
  type ArenaPointee,
  type ArenaPointers,
  type ArenaSpan,
  ArenaView,
  type DeclaredLayout,
  followArenaPointers,
} from "./arena.ts";
export { SDT_DATA, SDT_TASK_ALLOCATOR, sdtLayouts } from "./sdt.ts";
export {
  type AnySchedulerSection,
  gatherScheduler,
  isUnavailable,
  mapRoles,
  SCHEDULER_SECTIONS,
  type SchedulerGatherOptions,
  schedulerLines,
  type SchedulerReport,
  type SchedulerSection,
  type SectionUnavailable,
} from "./scheduler.ts";
export {
  type DumpArena,
  type DumpBloom,
  type DumpEntry,
  type DumpGlobal,
  type DumpQueue,
  type DumpRingbuf,
  type DumpSlotObject,
  type DumpStackFrame,
  type DumpStructOps,
  FAILURE_DUMP_SCHEMA,
  type FailureDumpHeader,
  type FailureDumpReport,
  type FailureDumpSink,
  type MapDump,
  type MapDumpHead,
  type MapDumpKind,
  type MapDumpTail,
} from "./report.ts";
export {
  diffReports,
  diffToJson,
  diffToText,
  type EntryChange,
  type MapChange,
  type MapPresence,
  type MapRef,
  type ProgramChange,
  REPORT_DIFF_SCHEMA,
  type ReportDiff,
  ReportFormatError,
  reportsDiffer,
  type ValueChange,
} from "./diff.ts";
