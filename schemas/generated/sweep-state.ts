// GENERATED from schemas/sweep-state.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * <sweep>/sweep-state.json: where a sweep stands, written atomically (temp file + rename) by `hqlora sweep` and the extension after every change of a cell, and read back when the sweep is run again (after a stop, a kill or a reload). Validated on read: a state file that does not match is an error, never silently replaced.
 */
export interface SweepState {
  /**
   * Format version (always 1).
   */
  v: 1;
  /**
   * Absolute path of the sweep file.
   */
  sweep_file: string;
  /**
   * The sweep's name.
   */
  name: string;
  /**
   * When the sweep first started (ISO 8601).
   */
  created: string;
  /**
   * Last write (ISO 8601).
   */
  updated: string;
  /**
   * sha256 of the eval settings the finished cells were scored with.
   */
  eval_fingerprint: string;
  /**
   * Every cell the sweep has had, in sweep order.
   */
  cells: StateCell[];
}
/**
 * One cell.
 */
export interface StateCell {
  /**
   * Cell id (run folder name).
   */
  id: string;
  /**
   * sha256 of the cell's run config.
   */
  fingerprint: string;
  /**
   * queued: not started or interrupted (resumes from its last checkpoint); training: a trainer is (or was, when the sweep was killed) running it; evaluating: trained, being scored; done: trained and scored; failed: see error (rerun with --retry-failed); removed: no longer in the sweep file (its folder is kept).
   */
  status: 'queued' | 'training' | 'evaluating' | 'done' | 'failed' | 'removed';
  /**
   * Absolute path of the cell's run folder.
   */
  run_dir: string;
  /**
   * Trainer launches so far (1 = never interrupted).
   */
  attempts: number;
  /**
   * PID of the cell's running trainer, or null.
   */
  pid?: number | null;
  /**
   * /proc/<pid>/stat start time of that trainer (a reused PID is not it).
   */
  pid_start?: string | null;
  /**
   * Why the cell failed, or null.
   */
  error?: string | null;
  /**
   * eval_fingerprint the cell's scores were made with, or null.
   */
  eval_fingerprint?: string | null;
}
