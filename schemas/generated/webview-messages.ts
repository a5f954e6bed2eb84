// GENERATED from schemas/webview-messages.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * The postMessage protocol between the dashboard webview (webview/, sender of WebviewToHost) and the extension host (extension/dashboard/, sender of HostToWebview). Every WebviewToHost message is untrusted input: the host validates it against $defs.WebviewToHost and ignores it, with a log line, when it does not match. The host posts nothing before the webview's `ready`; after that it sends only what is new (metrics carry a reset flag when a run's history must be replaced).
 */
export type WebviewMessage = WebviewToHost | HostToWebview;
/**
 * Sent by the webview (webview/main.ts) to the extension host.
 */
export type WebviewToHost =
  | ReadyMessage
  | SelectRunMessage
  | SetOverlayMessage
  | RequestDiffMessage
  | RunActionMessage
  | OpenOutputMessage
  | WebviewLogMessage;
/**
 * A run's id: the absolute path of its run folder.
 */
export type RunId = string;
/**
 * Sent by the extension host (extension/dashboard/panel.ts) to the webview.
 */
export type HostToWebview = InitMessage | RunsMessage | MetricsMessage | OverlayMessage | OutputsMessage | DiffMessage;
/**
 * A metric value; null for a non-finite value (NaN, ±Infinity) that cannot be plotted.
 */
export type Value = number | null;

/**
 * Sent by the webview once its script has loaded and it can receive messages (the handshake: the host posts nothing before it). Also sent after a reload or a restore by the serializer.
 */
export interface ReadyMessage {
  type: 'ready';
}
/**
 * Sent by the webview when the user picks a run in the runs list. The webview does not switch on its own: the host answers with a MetricsMessage (reset=true) for the run it selected, and only then does the webview show that run in its header, facts, charts and actions, all at once.
 */
export interface SelectRunMessage {
  type: 'selectRun';
  runId: RunId;
}
/**
 * Sent by the webview when the set of runs whose loss curves are overlaid on the loss chart changes. Overlays are extra series only: they never change the selected run.
 */
export interface SetOverlayMessage {
  type: 'setOverlay';
  /**
   * @maxItems 8
   */
  runIds: RunId[];
}
/**
 * Sent by the webview to ask for the difference between the resolved configs (run.json) of two runs.
 */
export interface RequestDiffMessage {
  type: 'requestDiff';
  a: RunId;
  b: RunId;
}
/**
 * Sent by the webview when the user presses an action button of the selected run. The host runs the matching command (the same one as the palette, with its prompts, progress and cancel) only for a run it knows; for merge and the exports (merged model, GGUF) it then posts an OutputsMessage; chat opens the run's chat playground.
 */
export interface RunActionMessage {
  type: 'action';
  action: 'stop' | 'saveCheckpoint' | 'resume' | 'openFolder' | 'mergeLevels' | 'exportMerged' | 'exportGguf' | 'chat';
  runId: RunId;
}
/**
 * Sent by the webview when the user asks to see an export of a run listed in its OutputsMessage: reveal the folder in the explorer, or open its verify.json. The host acts only on a folder it listed for that run.
 */
export interface OpenOutputMessage {
  type: 'openOutput';
  runId: RunId;
  /**
   * The export folder's absolute path, as listed.
   */
  output: string;
  what: 'reveal' | 'report';
}
/**
 * Sent by the webview to report a script error or a Content-Security-Policy violation to the extension's log.
 */
export interface WebviewLogMessage {
  type: 'log';
  level: 'info' | 'warn' | 'error';
  message: string;
}
/**
 * Sent by the host in answer to `ready`: the runs, the selected run and the commands available. Followed by a MetricsMessage with reset=true for the selected run.
 */
export interface InitMessage {
  type: 'init';
  runs: RunSummary[];
  selected: RunId | null;
  commands: Commands;
}
/**
 * One run as the dashboard lists it.
 */
export interface RunSummary {
  id: RunId;
  /**
   * The run folder's name.
   */
  name: string;
  status: 'preparing' | 'running' | 'completed' | 'stopped' | 'failed';
  /**
   * One line: what happened (for failures, why).
   */
  message: string;
  step: number;
  totalSteps: number;
  /**
   * Seconds left (from the last step event); null when unknown.
   */
  etaS: number | null;
  /**
   * Unix milliseconds when the run started.
   */
  startTime: number;
  /**
   * Seconds from start to the last event (or now, while running).
   */
  durationS: number;
  /**
   * Last training loss seen.
   */
  finalLoss: number | null;
  backend: string;
  /**
   * Base model folder and architecture.
   */
  model: string;
  /**
   * Adapter levels, e.g. `r16/α16 + r4/α16`.
   */
  levels: string;
  /**
   * True while a trainer process of this run is alive.
   */
  live: boolean;
  /**
   * Ranks of the data-parallel world (1 for a one-process run), from the last step (or the start) event.
   */
  ranks: number;
  /**
   * Global throughput of the last step: tokens of the whole global batch (every rank) per second; null before the first step.
   */
  tokensPerS: number | null;
  /**
   * Memory of each rank at the last step, in rank order (one entry for a one-process run; empty before the first step).
   */
  rankMemoryBytes: number[];
}
/**
 * Which optional commands are registered (the merge, export, GGUF and chat buttons are disabled otherwise).
 */
export interface Commands {
  mergeLevels: boolean;
  exportMerged: boolean;
  exportGguf: boolean;
  chatWithAdapter: boolean;
}
/**
 * Sent by the host when a run starts, changes status or reports a step: the whole (small) runs list.
 */
export interface RunsMessage {
  type: 'runs';
  runs: RunSummary[];
}
/**
 * Sent by the host: new points of the selected run since the previous MetricsMessage. reset=true replaces everything shown and carries the selection: runId is then the run the host has selected (after `ready`, a SelectRunMessage, or a command that opened the dashboard on a run), and the webview switches its header, facts, charts, actions and outputs to it in one go. steps has loss, lr, grad_norm, tokens_per_s, memory_bytes (every step from the first to the last, never truncated); evals has eval_loss; levels has level0, level1, … (delta_norm per level).
 */
export interface MetricsMessage {
  type: 'metrics';
  runId: RunId;
  reset: boolean;
  steps: Columns;
  evals: Columns;
  levels: Columns;
}
/**
 * Column-wise series: `x` holds optimizer steps, every other array has the same length as `x`.
 */
export interface Columns {
  x: number[];
  [k: string]: Value[] | number[] | undefined;
}
/**
 * Sent by the host after a SetOverlayMessage: the loss curves of the overlaid runs.
 */
export interface OverlayMessage {
  type: 'overlay';
  curves: {
    runId: RunId;
    name: string;
    x: number[];
    loss: Value[];
  }[];
}
/**
 * Sent by the host before the MetricsMessage that selects a run, and again when a merge or export of it starts or ends: the selected run's exports, newest first, and the action running for it, if any.
 */
export interface OutputsMessage {
  type: 'outputs';
  runId: RunId;
  /**
   * The merge/export action running for this run (its prompts, progress and Cancel are in the workbench), or null.
   */
  busy: ('mergeLevels' | 'exportMerged' | 'exportGguf') | null;
  outputs: ExportOutput[];
}
/**
 * One export of a run: a sibling folder `<run>-…` holding a verify.json (written by merge levels, merge into base, Export to GGUF, and any later export that writes one).
 */
export interface ExportOutput {
  /**
   * The folder's absolute path.
   */
  output: string;
  /**
   * The folder's name.
   */
  name: string;
  /**
   * verify.json's operation (merge_levels, merge_into_base, …).
   */
  operation: string;
  /**
   * verify.json's format (peft, hf-model, gguf, …).
   */
  format: string;
  /**
   * The exported LoRA rank, when the export is a LoRA.
   */
  rank?: number;
  /**
   * The verification's outcome; `unreadable` when verify.json is not valid JSON.
   */
  status: 'pass' | 'fail' | 'skipped' | 'unreadable';
  /**
   * One line: what was exported and the verification (max/mean |Δlogit| against the tolerance; for a GGUF, llama.cpp's token and log-probability checks).
   */
  summary: string;
  /**
   * Unix milliseconds when verify.json was written.
   */
  time: number;
}
/**
 * Sent by the host after a RequestDiffMessage: the config keys whose values differ between run a and run b.
 */
export interface DiffMessage {
  type: 'diff';
  a: RunId;
  b: RunId;
  rows: {
    key: string;
    a: string;
    b: string;
  }[];
}
