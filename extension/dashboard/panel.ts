// panel.ts — the dashboard webview panel (webview-sample lifecycle): createOrShow / revive (serializer) / dispose,
// localResourceRoots = dist/webview only, a nonce CSP (html.ts), a `ready` handshake before the host posts anything,
// every incoming message validated (protocol.ts) and ignored with a log line when invalid. The host owns the state;
// the webview keeps only its view state (selected run, overlay, smoothing) with setState.
//
// The host owns the selection: one selected run, changed by the webview's selectRun, by a command that opens the
// dashboard on a run, or restored by the serializer after a reload. A change is posted as the selected run's
// exports (OutputsMessage) followed by its whole history (MetricsMessage, reset=true); the webview switches its
// header, facts, charts, actions and outputs together on that message, so they never show different runs.
//
// Live updates are incremental: per webview the host remembers the metrics cursor it sent last and posts only the
// points after it (throttled to 4 messages/s), so a 100k-point run is sent once, then a few points at a time.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import type { Commands, HostToWebview, OpenOutputMessage, RunActionMessage, RunSummary, WebviewToHost } from '../../schemas/generated/webview-messages';
import type { RunManager } from '../registry/manager';
import type { Cursor } from '../registry/metrics';
import type { Run } from '../registry/run';
import { dashboardHtml } from './html';
import { isListedOutput, listOutputs } from './outputs';
import { parseWebviewMessage } from './protocol';

export const VIEW_TYPE = 'hqlora.dashboard';
const THROTTLE_MS = 250;

/** Commands the dashboard's action buttons run, by action (all take the run folder path). */
export const ACTION_COMMANDS = {
  stop: 'hqlora.stopRun',
  saveCheckpoint: 'hqlora.saveCheckpoint',
  resume: 'hqlora.resumeRun',
  openFolder: 'revealFileInOS',
  mergeLevels: 'hqlora.mergeLevels',
  exportMerged: 'hqlora.exportMerged',
  exportGguf: 'hqlora.exportGguf',
  chat: 'hqlora.chatWithAdapter',
} as const;

/** The actions that write an export next to the run; the panel lists their outputs when they finish. */
type ExportAction = 'mergeLevels' | 'exportMerged' | 'exportGguf';
const isExportAction = (a: RunActionMessage['action']): a is ExportAction => a === 'mergeLevels' || a === 'exportMerged' || a === 'exportGguf';

export interface DashboardStats {
  received: number;
  invalid: number;
  actions: number;
}

export class Dashboard implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private ready = false;
  private selected: string | undefined;
  private cursor: Cursor | undefined;
  private overlay: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pendingRuns = false;
  /** The merge/export running per run (its prompts, progress and Cancel are the command's own). */
  private readonly busy = new Map<string, ExportAction>();
  private readonly subs: vscode.Disposable[] = [];
  /** Counters for tests and the log: messages received, rejected by the schema, and actions run. */
  readonly stats: DashboardStats = { received: 0, invalid: 0, actions: 0 };

  constructor(
    private readonly extension: vscode.ExtensionContext,
    private readonly runs: RunManager,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.subs.push(
      vscode.window.registerWebviewPanelSerializer(VIEW_TYPE, {
        deserializeWebviewPanel: (panel, state: unknown) => {
          const sel = state && typeof state === 'object' && 'selected' in state ? (state).selected : undefined;
          this.attach(panel, typeof sel === 'string' ? sel : undefined);
          return Promise.resolve();
        },
      }),
      runs.onDidChange((run) => {
        if (run && run.live && this.selected === undefined) this.selected = run.id;
        this.pendingRuns = true;
        this.schedule();
      }),
      runs.onDidMetrics((run) => {
        if (run.id === this.selected) this.schedule();
      }),
    );
  }

  get visible(): boolean {
    return this.panel?.visible ?? false;
  }

  get selectedRun(): string | undefined {
    return this.selected;
  }

  private get assets(): vscode.Uri {
    return vscode.Uri.joinPath(this.extension.extensionUri, 'dist', 'webview');
  }

  /** Opens the dashboard (or reveals it), optionally on one run. */
  createOrShow(runId?: string): void {
    if (runId) this.select(runId);
    if (this.panel) {
      this.panel.reveal(undefined, true);
      return;
    }
    const panel = vscode.window.createWebviewPanel(VIEW_TYPE, 'H-QLoRA Dashboard', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, {
      enableScripts: true,
      retainContextWhenHidden: false, // the serializer + ready handshake restore it; no hidden memory cost
      localResourceRoots: [this.assets],
    });
    this.attach(panel, runId);
  }

  private attach(panel: vscode.WebviewPanel, runId: string | undefined): void {
    this.panel = panel;
    this.ready = false;
    this.cursor = undefined;
    if (runId && this.runs.get(runId)) this.selected = runId;
    this.selected ??= this.runs.liveRuns[0]?.id ?? this.runs.runs[0]?.id;
    panel.webview.options = { enableScripts: true, localResourceRoots: [this.assets] };
    panel.webview.html = dashboardHtml(panel.webview, this.assets, (b, f) => vscode.Uri.joinPath(b, f));
    panel.webview.onDidReceiveMessage((m: unknown) => this.receive(m), undefined, this.subs);
    // A hidden panel loses its webview (retainContextWhenHidden: false); when shown again it sends `ready` anew and
    // gets everything again. `ready` is not cleared on hide: a view-state change that does not reload the webview
    // (as while a window restores its editors) would otherwise leave it waiting for a `ready` that never comes.
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
      this.ready = false;
    }, undefined, this.subs);
  }

  /** Handles one message from the webview: validated first, unknown or malformed input is logged and dropped. */
  receive(value: unknown): void {
    this.stats.received++;
    const parsed = parseWebviewMessage(value);
    if (!parsed.ok) {
      this.stats.invalid++;
      // One line per rejected message, but never a flood: after 20 only every 1000th is logged.
      if (this.stats.invalid <= 20 || this.stats.invalid % 1000 === 0) {
        this.log.warn(`dashboard: ignored invalid webview message #${this.stats.invalid} (${parsed.reason})`);
      }
      return;
    }
    void this.handle(parsed.message).catch((err: unknown) => this.log.error(`dashboard: ${String(err)}`));
  }

  private async handle(m: WebviewToHost): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.cursor = undefined;
        this.log.info(`dashboard: webview ready, showing ${this.selected ? path.basename(this.selected) : 'no run'}`);
        this.post({ type: 'init', runs: this.summaries(), selected: this.selected ?? null, commands: await this.optionalCommands() });
        this.flush();
        if (this.overlay.length) this.postOverlay();
        return;
      case 'selectRun':
        this.select(m.runId);
        this.flush();
        return;
      case 'setOverlay':
        this.overlay = m.runIds.filter((id) => this.runs.get(id));
        this.postOverlay();
        return;
      case 'requestDiff':
        this.postDiff(m.a, m.b);
        return;
      case 'action':
        await this.runAction(m);
        return;
      case 'openOutput':
        await this.openOutput(m);
        return;
      case 'log':
        this.log[m.level](`dashboard webview: ${m.message}`);
        return;
    }
  }

  private async runAction(m: RunActionMessage): Promise<void> {
    const run = this.runs.get(m.runId);
    if (!run) {
      this.log.warn(`dashboard: ${m.action} for an unknown run ignored: ${m.runId.slice(0, 200)}`);
      return;
    }
    const action = m.action;
    if (!isExportAction(action)) {
      this.stats.actions++;
      await vscode.commands.executeCommand(ACTION_COMMANDS[action], action === 'openFolder' ? vscode.Uri.file(run.id) : run.id);
      return;
    }
    if (this.busy.has(run.id)) {
      this.log.info(`dashboard: ${action} ignored: ${this.busy.get(run.id)} is still running for ${run.name}`);
      return;
    }
    this.stats.actions++;
    this.busy.set(run.id, action);
    this.postOutputs(run.id);
    try {
      // The palette's command itself: its prompts, its progress notification with Cancel, its result notification.
      await vscode.commands.executeCommand(ACTION_COMMANDS[action], run.id);
    } finally {
      this.busy.delete(run.id);
      this.postOutputs(run.id);
    }
  }

  /** Reveals an export folder or opens its verify.json, only for a folder listed for that run. */
  private async openOutput(m: OpenOutputMessage): Promise<void> {
    const run = this.runs.get(m.runId);
    if (!run || !isListedOutput(run.id, m.output)) {
      this.log.warn(`dashboard: openOutput for a folder that is not an export of a known run ignored: ${m.output.slice(0, 200)}`);
      return;
    }
    this.stats.actions++;
    const uri = vscode.Uri.file(m.output);
    if (m.what === 'report') {
      await vscode.window.showTextDocument(vscode.Uri.joinPath(uri, 'verify.json'), { preview: true });
      return;
    }
    // In the Explorer when the folder is in the workspace (works remotely too), else the OS file manager.
    await vscode.commands.executeCommand(vscode.workspace.getWorkspaceFolder(uri) ? 'revealInExplorer' : 'revealFileInOS', uri);
  }

  /** Changes the selection; the next flush posts the run's outputs and whole history (reset). */
  private select(runId: string): void {
    if (!this.runs.get(runId) || runId === this.selected) return;
    this.selected = runId;
    this.cursor = undefined;
    this.schedule();
  }

  private async optionalCommands(): Promise<Commands> {
    const all = new Set(await vscode.commands.getCommands(true));
    return {
      mergeLevels: all.has(ACTION_COMMANDS.mergeLevels), exportMerged: all.has(ACTION_COMMANDS.exportMerged),
      exportGguf: all.has(ACTION_COMMANDS.exportGguf), chatWithAdapter: all.has(ACTION_COMMANDS.chat),
    };
  }

  private summaries(): RunSummary[] {
    const now = Date.now();
    return this.runs.runs.map((r) => r.summary(now));
  }

  private schedule(): void {
    if (this.timer || !this.ready) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, THROTTLE_MS);
  }

  /** Posts what changed since the last flush: the runs list and the selected run's new points. */
  private flush(): void {
    if (!this.ready) return;
    if (this.pendingRuns) {
      this.pendingRuns = false;
      this.post({ type: 'runs', runs: this.summaries() });
    }
    const run: Run | undefined = this.selected ? this.runs.get(this.selected) : undefined;
    if (!run) return;
    const before = this.cursor;
    if (!before) this.postOutputs(run.id); // a new selection (or a new webview): its outputs first, then its history
    const after = run.metrics.cursor();
    if (before && before.generation === after.generation && before.steps === after.steps && before.evals === after.evals && before.levels === after.levels) return;
    this.post({ type: 'metrics', runId: run.id, ...run.metrics.since(before) });
    this.cursor = after;
  }

  private postOverlay(): void {
    this.post({
      type: 'overlay',
      curves: this.overlay.flatMap((id) => {
        const r = this.runs.get(id);
        return r ? [{ runId: id, name: r.name, x: r.metrics.steps.x, loss: r.metrics.steps.loss }] : [];
      }),
    });
  }

  /** The run's exports and the action running for it; only for the selected run (the webview shows no other). */
  private postOutputs(runId: string): void {
    if (runId !== this.selected) return;
    this.post({ type: 'outputs', runId, busy: this.busy.get(runId) ?? null, outputs: listOutputs(runId) });
  }

  private postDiff(a: string, b: string): void {
    const ra = this.runs.get(a);
    const rb = this.runs.get(b);
    if (!ra || !rb) return;
    const fa = flatten(readRunJson(ra.id));
    const fb = flatten(readRunJson(rb.id));
    const keys = [...new Set([...fa.keys(), ...fb.keys()])].sort();
    const ignore = /^(output\.run_name|data\.(train|eval)_tokens)$/;
    const rows = keys
      .filter((k) => !ignore.test(k) && fa.get(k) !== fb.get(k))
      .map((k) => ({ key: k, a: fa.get(k) ?? '—', b: fb.get(k) ?? '—' }));
    this.post({ type: 'diff', a, b, rows });
  }

  private post(m: HostToWebview): void {
    if (this.panel && this.ready) void this.panel.webview.postMessage(m);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.panel?.dispose();
    for (const s of this.subs) s.dispose();
  }
}

function readRunJson(runDir: string): unknown {
  try {
    return JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8'));
  } catch {
    return {};
  }
}

/** `{a: {b: 1}, c: [1, 2]}` → a.b=1, c=[1,2] (arrays compared as a whole, as JSON). */
export function flatten(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out.set(prefix, JSON.stringify(value));
  }
  return out;
}
