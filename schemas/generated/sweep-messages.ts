// GENERATED from schemas/sweep-messages.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * The postMessage protocol between the sweep results webview (webview/sweep/, sender of SweepToHost) and the extension host (extension/dashboard/sweepPanel.ts, sender of HostToSweep). Every SweepToHost message is untrusted input: the host validates it against $defs.SweepToHost and ignores it, with a log line, when it does not match. The host posts nothing before the webview's `ready`; after that it posts the whole sweep (SweepDataMessage) whenever the sweep folder's files change, at most once a second.
 */
export type SweepMessage = SweepToHost | HostToSweep;
/**
 * Sent by the webview (webview/sweep/main.ts) to the extension host.
 */
export type SweepToHost = SweepReadyMessage | OpenCellMessage | CopyMatrixMessage | SaveMatrixMessage | SweepLogMessage;
/**
 * Sent by the extension host (extension/dashboard/sweepPanel.ts) to the webview.
 */
export type HostToSweep = SweepDataMessage;
/**
 * A finite number, or null where it is not known (yet) or not finite.
 */
export type Num = number | null;

/**
 * Sent by the webview once its script has loaded (the handshake: the host posts nothing before it). Also sent after a reload or a restore by the serializer.
 */
export interface SweepReadyMessage {
  type: 'ready';
}
/**
 * Sent by the webview when a cell's folder or trainer log is asked for: the host reveals <run>/ in the Explorer or opens <run>/trainer.log, only for a cell of the sweep it shows.
 */
export interface OpenCellMessage {
  type: 'openCell';
  cellId: string;
  what: 'folder' | 'log';
}
/**
 * Sent by the webview's copy buttons: the host copies the shown sweep's results.md (markdown) or results.csv (csv) to the clipboard.
 */
export interface CopyMatrixMessage {
  type: 'copyMatrix';
  format: 'markdown' | 'csv';
}
/**
 * Sent by the webview's save buttons: the host asks where to save (a save dialog, starting at the sweep folder) and writes the shown sweep's results.md (markdown) or results.csv (csv) there.
 */
export interface SaveMatrixMessage {
  type: 'saveMatrix';
  format: 'markdown' | 'csv';
}
/**
 * Sent by the webview to report a script error or a Content-Security-Policy violation to the extension's log.
 */
export interface SweepLogMessage {
  type: 'log';
  level: 'info' | 'warn' | 'error';
  message: string;
}
/**
 * Sent by the host after `ready` and whenever the sweep's files change: the whole sweep (it is small: a few cells of at most some thousand steps). `sweep` null: the sweep file has not started (no sweep-state.json), and `problem` says so.
 */
export interface SweepDataMessage {
  type: 'sweep';
  /**
   * Absolute path of the *.hqsweep.yaml shown.
   */
  sweepFile: string;
  /**
   * Why there is nothing to show (not started, invalid sweep file), or null.
   */
  problem: string | null;
  sweep: null | {
    name: string;
    /**
     * The sweep folder (sweep-state.json, sweep-results.json, cells/).
     */
    dir: string;
    /**
     * The baseline row's split.
     */
    baseline: string;
    done: number;
    total: number;
    /**
     * A cell is training or being scored.
     */
    running: boolean;
    cells: SweepCellRow[];
    /**
     * One per cell that has reported a step, in cell order.
     */
    curves: SweepCurve[];
  };
}
/**
 * One cell of the sweep (one run): what the matrix shows of it. Metrics come from the cell's events.jsonl (final loss: the last optimizer step's loss; tokens/s: the median over its steps) and from sweep-results.json (eval loss, MMLU).
 */
export interface SweepCellRow {
  /**
   * Cell id (its run folder name).
   */
  id: string;
  /**
   * Position in the sweep (the sweep file's order).
   */
  index: number;
  /**
   * The rank split, e.g. "32,8,8,8,8".
   */
  split: string;
  /**
   * The dataset's label ('' without a data axis).
   */
  data: string;
  seed: number;
  status: 'queued' | 'training' | 'evaluating' | 'done' | 'failed';
  /**
   * Last optimizer step reported (0 before the first).
   */
  step: number;
  /**
   * Optimizer steps of the run (0 before its first step).
   */
  total_steps: number;
  final_loss: Num;
  eval_loss: Num;
  tokens_per_s: Num;
  /**
   * A finite number, or null where it is not known (yet) or not finite.
   */
  mmlu: number | null;
  /**
   * A finite number, or null where it is not known (yet) or not finite.
   */
  mmlu_se: number | null;
  /**
   * A finite number, or null where it is not known (yet) or not finite.
   */
  delta: number | null;
  /**
   * A finite number, or null where it is not known (yet) or not finite.
   */
  delta_lo: number | null;
  /**
   * A finite number, or null where it is not known (yet) or not finite.
   */
  delta_hi: number | null;
  /**
   * The interval excludes 0 (the webview marks the difference with *), or null without a delta.
   */
  significant: boolean | null;
  /**
   * Why the cell failed, or null.
   */
  error: string | null;
}
/**
 * The training loss of one cell per optimizer step (a step run again after a kill counts once), ascending steps.
 */
export interface SweepCurve {
  cellId: string;
  x: number[];
  loss: Num[];
}
