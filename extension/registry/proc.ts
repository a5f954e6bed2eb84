// proc.ts — is a trainer process (found again after a window reload) still the one we started?
//
// A PID alone is not an identity: after the trainer exits, the kernel may hand the same PID to another process.
// The process start time (field 22 of /proc/<pid>/stat, in clock ticks since boot) never changes for a process
// and differs for a reused PID, so the registry stores both and a run is re-attached only when both match.
import { readdirSync, readFileSync } from 'node:fs';

interface ProcStat {
  /** One-letter state: R, S, D, Z (zombie), T, … */
  state: string;
  /** Process group id. */
  pgid: number;
  /** Start time in clock ticks since boot, as a decimal string (may exceed 2^53 on long uptimes). */
  startTime: string;
}

/** Parses /proc/<pid>/stat; undefined when the process does not exist (or /proc is unavailable). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')': split after the LAST ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = text.slice(close + 2).trim().split(/\s+/); // f[0] is field 3 (state)
  const state = f[0];
  const pgid = Number(f[2]); // field 5
  const startTime = f[19]; // field 22
  if (!state || !startTime || !Number.isInteger(pgid)) return undefined;
  return { state, pgid, startTime };
}

/** The start time to store beside a PID; undefined when the process is already gone. */
export function procStartTime(pid: number): string | undefined {
  return procStat(pid)?.startTime;
}

/** True when `pid` is alive (not a zombie) and is the same process that had `startTime`. */
export function isSameProcessAlive(pid: number, startTime: string | undefined): boolean {
  const st = procStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return startTime === undefined || st.startTime === startTime;
}

/** PIDs of every live process in process group `pgid` (to prove that nothing of a stopped run is left). */
export function processesInGroup(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirNumeric('/proc');
  } catch {
    return [];
  }
  return entries
    .map(Number)
    .filter((pid) => {
      const st = procStat(pid);
      return st !== undefined && st.pgid === pgid && st.state !== 'Z' && st.state !== 'X';
    });
}

function readdirNumeric(dir: string): string[] {
  return readdirSync(dir).filter((d) => /^\d+$/.test(d));
}
