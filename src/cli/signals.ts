/**
 * Signal numbers, for the shell's `128 + n` exit statuses.
 *
 * @module
 */

/** Linux signal numbers by name (the ones a process is commonly ended with). */
const NUMBERS: Readonly<Record<string, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

/** The exit status a shell reports for a process ended by `signal`. */
export function signalExitStatus(signal: string): number {
  return 128 + (NUMBERS[signal] ?? 0);
}
