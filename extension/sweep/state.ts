// state.ts — <sweep>/sweep-state.json (schemas/sweep-state.schema.json) and the sweep's lock.
//
// - Atomic: every write goes to a temp file in the same folder, is fsynced, and is renamed over the old file, so a
//   kill at any moment leaves either the old or the new state, never a partial one.
// - Validated on read: a state file that does not parse or match the schema is an error naming the file; it is
//   never silently replaced (the user decides: fix it, or start over, which moves the folder aside).
// - Change detection: planChanges() compares the sweep file's cells with the state's by id and fingerprint: new
//   cells, cells whose config changed, cells no longer in the file.
// - The lock (<sweep>/sweep.lock, created with O_EXCL) holds the PID and process start time of the one process
//   running the sweep; a lock whose process is gone (killed) is stale and taken over.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';

import type { SweepState, StateCell } from '../../schemas/generated/sweep-state';
import { HqError, errnoCode } from '../core/errors';
import { describeAjvErrors } from '../core/schemaProblems';
import { isSameProcessAlive, procStartTime } from '../registry/proc';
import type { LoadedSweep } from './spec';
import { validateSweepState } from './schemas';

export type { SweepState, StateCell };
export type CellStatus = StateCell['status'];

export const STATE_FILE = 'sweep-state.json';
export const LOCK_FILE = 'sweep.lock';

/** Writes `text` to `file` atomically: temp file in the same folder, fsync, rename. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export function statePath(sweepDir: string): string {
  return path.join(sweepDir, STATE_FILE);
}

/** The state of the sweep in `sweepDir`, or undefined when it never started. */
export function readState(sweepDir: string): SweepState | undefined {
  const file = statePath(sweepDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new HqError(`cannot read the sweep state: ${(err as Error).message}`, { file }, 'check the permissions of the sweep folder');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HqError('the sweep state file is not valid JSON', { file },
      'it is written atomically, so something else changed it: restore it, or start the sweep over (--restart moves the old folder aside)');
  }
  if (!validateSweepState(value)) {
    throw new HqError(`the sweep state file does not match schemas/sweep-state.schema.json: ${describeAjvErrors(validateSweepState.errors)}`,
      { file }, 'restore it, or start the sweep over (--restart moves the old folder aside)');
  }
  return value;
}

export function writeState(sweepDir: string, state: SweepState): void {
  state.updated = new Date().toISOString();
  writeFileAtomic(statePath(sweepDir), `${JSON.stringify(state, null, 2)}\n`);
}

/** A fresh state for every cell of `sweep` (all queued). */
export function newState(sweep: LoadedSweep): SweepState {
  const now = new Date().toISOString();
  return {
    v: 1, sweep_file: sweep.file, name: sweep.name, created: now, updated: now, eval_fingerprint: sweep.evalFingerprint,
    cells: sweep.cells.map((c) => newCell(sweep, c.id, c.fingerprint)),
  };
}

function newCell(sweep: LoadedSweep, id: string, fingerprint: string): StateCell {
  return { id, fingerprint, status: 'queued', run_dir: path.join(sweep.dir, 'cells', id), attempts: 0, pid: null, pid_start: null, error: null, eval_fingerprint: null };
}

export interface SweepChanges {
  added: string[];
  changed: string[];
  removed: string[];
  /** The eval settings changed: finished cells are scored again (no training is lost). */
  evalChanged: boolean;
}

export function planChanges(sweep: LoadedSweep, state: SweepState): SweepChanges {
  const old = new Map(state.cells.filter((c) => c.status !== 'removed').map((c) => [c.id, c]));
  const now = new Map(sweep.cells.map((c) => [c.id, c]));
  return {
    added: sweep.cells.filter((c) => !old.has(c.id)).map((c) => c.id),
    changed: sweep.cells.filter((c) => old.has(c.id) && old.get(c.id)?.fingerprint !== c.fingerprint).map((c) => c.id),
    removed: [...old.keys()].filter((id) => !now.has(id)),
    evalChanged: state.eval_fingerprint !== sweep.evalFingerprint,
  };
}

export function hasStructuralChanges(ch: SweepChanges): boolean {
  return ch.added.length + ch.changed.length + ch.removed.length > 0;
}

/** One line per kind of change, for the question to the user. */
export function describeChanges(ch: SweepChanges): string {
  const parts: string[] = [];
  if (ch.added.length) parts.push(`${ch.added.length} new cell(s): ${ch.added.join(', ')}`);
  if (ch.changed.length) parts.push(`${ch.changed.length} changed cell(s): ${ch.changed.join(', ')}`);
  if (ch.removed.length) parts.push(`${ch.removed.length} cell(s) no longer in the file: ${ch.removed.join(', ')}`);
  return parts.join('; ');
}

/**
 * Applies the sweep file's changes to the state ("add the new cells"): new cells are queued; a changed cell's old
 * run folder is moved aside to <id>.old-<n> and the cell starts again; a removed cell is marked removed (its
 * folder is kept). Nothing is deleted.
 */
export function addCells(sweep: LoadedSweep, state: SweepState, ch: SweepChanges): string[] {
  const moved: string[] = [];
  const byId = new Map(state.cells.map((c) => [c.id, c]));
  for (const id of ch.removed) {
    const c = byId.get(id);
    if (c) c.status = 'removed';
  }
  for (const id of ch.changed) {
    const c = byId.get(id);
    if (!c) continue;
    if (existsSync(c.run_dir)) moved.push(moveAside(c.run_dir));
    Object.assign(c, newCell(sweep, id, sweep.cells.find((x) => x.id === id)?.fingerprint ?? ''));
  }
  const cells: StateCell[] = [];
  for (const sc of sweep.cells) {
    const existing = byId.get(sc.id);
    if (existing && existing.status === 'removed') Object.assign(existing, newCell(sweep, sc.id, sc.fingerprint));
    cells.push(existing ?? newCell(sweep, sc.id, sc.fingerprint));
  }
  // Removed cells stay in the state (after the sweep's own cells), so their folders are not forgotten.
  for (const c of state.cells) if (!sweep.cells.some((x) => x.id === c.id)) cells.push(c);
  state.cells = cells;
  return moved;
}

/** Renames `p` to the first free `<p>.old-<n>`; returns the new path. */
export function moveAside(p: string): string {
  for (let n = 1; ; n++) {
    const to = `${p}.old-${n}`;
    if (!existsSync(to)) {
      renameSync(p, to);
      return to;
    }
  }
}

export interface Lock {
  release(): void;
}

/** Takes the sweep's lock, or fails naming the live process that holds it. */
export function acquireLock(sweepDir: string): Lock {
  const file = path.join(sweepDir, LOCK_FILE);
  const mine = `${JSON.stringify({ pid: process.pid, pid_start: procStartTime(process.pid) ?? null })}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, mine);
      closeSync(fd);
      return {
        release: () => {
          try {
            if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    let holder: { pid?: number; pid_start?: string | null } = {};
    try {
      holder = JSON.parse(readFileSync(file, 'utf8')) as typeof holder;
    } catch {
      /* half-written by a process killed at that moment: stale */
    }
    if (typeof holder.pid === 'number' && holder.pid !== process.pid && isSameProcessAlive(holder.pid, holder.pid_start ?? undefined)) {
      throw new HqError(`the sweep is already running (pid ${holder.pid})`, { file },
        'wait for it, or stop it (Ctrl-C in its terminal, or "H-QLoRA: Stop Sweep"); a killed sweep leaves a stale lock that is taken over');
    }
    try {
      unlinkSync(file); // stale: its process is gone
    } catch {
      /* someone else took it over first: try again */
    }
  }
  throw new HqError('cannot take the sweep lock', { file }, 'another process keeps taking it; run one sweep at a time');
}
