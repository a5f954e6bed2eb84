// sweepPanel.ts — "H-QLoRA: Open Sweep Results": one webview panel showing one sweep (webview-sample lifecycle, like
// the dashboard: createOrShow / revive through a serializer / dispose, localResourceRoots = dist/webview only, the
// nonce CSP of the one webview shell (core/webviewShell.ts), nothing posted before the webview's `ready`). It draws every cell's loss curve overlaid and
// a sortable matrix of the cells (split × final loss, eval loss, tok/s, MMLU, Δ to the baseline with its significance,
// status; copied to the clipboard or saved to a file as Markdown or CSV), from the sweep folder's files
// (sweep/panelData.ts), so it shows the same whether the sweep runs here, in a terminal, or ran before a reload.
// Every incoming message is validated against schemas/sweep-messages.schema.json; an invalid one is logged and dropped.
// Updates: file watchers on the sweep's state and results, and a poll once a second while a cell trains (its
// events.jsonl); each update posts the whole sweep, at most once a second.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import type { HostToSweep, SweepToHost } from '../../schemas/generated/sweep-messages';
import { validateHostToSweep, validateSweepToHost } from '../../schemas/generated/sweep-messages.validate';
import { formatError } from '../core/errors';
import { webviewShell } from '../core/webviewShell';
import { describeAjvErrors } from '../core/schemaProblems';
import { type SweepData, sweepPanelData } from '../sweep/panelData';
import { loadSweep } from '../sweep/spec';

export const SWEEP_VIEW_TYPE = 'hqlora.sweepResults';
const THROTTLE_MS = 1000;

export type SweepParse = { ok: true; message: SweepToHost } | { ok: false; reason: string };

/** Validates one untrusted message from the sweep webview. */
export function parseSweepMessage(value: unknown): SweepParse {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    return { ok: false, reason: 'not a plain JSON object' };
  }
  if (validateSweepToHost(value)) return { ok: true, message: value };
  const type = 'type' in value ? String(value.type).slice(0, 40) : '?';
  return { ok: false, reason: `type ${JSON.stringify(type)}: ${describeAjvErrors(validateSweepToHost.errors).slice(0, 300)}` };
}

export interface SweepPanelStats {
  received: number;
  invalid: number;
  /** Every message posted to the webview, checked against HostToSweep (tests read them). */
  posted: number;
  /** The last sweep posted. */
  last?: SweepData | null;
}

export class SweepPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private ready = false;
  private file: string | undefined;
  private data: SweepData | null = null;
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private readonly subs: vscode.Disposable[] = [];
  readonly stats: SweepPanelStats = { received: 0, invalid: 0, posted: 0 };

  constructor(private readonly extension: vscode.ExtensionContext, private readonly log: vscode.LogOutputChannel) {
    this.subs.push(vscode.window.registerWebviewPanelSerializer(SWEEP_VIEW_TYPE, {
      deserializeWebviewPanel: (panel, state: unknown) => {
        const file = state && typeof state === 'object' && 'sweepFile' in state ? state.sweepFile : undefined;
        this.attach(panel, typeof file === 'string' ? file : undefined);
        return Promise.resolve();
      },
    }));
    for (const glob of ['**/sweep-state.json', '**/sweep-results.json']) {
      const w = vscode.workspace.createFileSystemWatcher(glob);
      this.subs.push(w, w.onDidChange(() => this.schedule()), w.onDidCreate(() => this.schedule()));
    }
  }

  get sweepFile(): string | undefined {
    return this.file;
  }

  private get assets(): vscode.Uri {
    return vscode.Uri.joinPath(this.extension.extensionUri, 'dist', 'webview');
  }

  /** Opens the panel on the sweep file `file` (or reveals it and switches to that sweep). */
  createOrShow(file: string): void {
    if (this.panel) {
      this.file = file;
      this.panel.title = `Sweep: ${path.basename(file).replace(/\.hqsweep\.ya?ml$/, '')}`;
      this.panel.reveal(undefined, false);
      this.schedule(0);
      return;
    }
    const panel = vscode.window.createWebviewPanel(SWEEP_VIEW_TYPE, 'Sweep', vscode.ViewColumn.Active, {
      enableScripts: true, retainContextWhenHidden: false, localResourceRoots: [this.assets],
    });
    this.attach(panel, file);
  }

  private attach(panel: vscode.WebviewPanel, file: string | undefined): void {
    this.panel = panel;
    this.ready = false;
    this.file = file;
    panel.title = file ? `Sweep: ${path.basename(file).replace(/\.hqsweep\.ya?ml$/, '')}` : 'Sweep';
    panel.webview.options = { enableScripts: true, localResourceRoots: [this.assets] };
    panel.webview.html = webviewShell(panel.webview, {
      script: panel.webview.asWebviewUri(vscode.Uri.joinPath(this.assets, 'sweep.js')),
      style: panel.webview.asWebviewUri(vscode.Uri.joinPath(this.assets, 'sweep.css')),
      title: 'H-QLoRA Sweep',
      loading: 'Loading the sweep results…',
    });
    panel.webview.onDidReceiveMessage((m: unknown) => this.receive(m), undefined, this.subs);
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
      this.ready = false;
      this.poll(false);
    }, undefined, this.subs);
  }

  receive(value: unknown): void {
    this.stats.received++;
    const parsed = parseSweepMessage(value);
    if (!parsed.ok) {
      this.stats.invalid++;
      if (this.stats.invalid <= 20 || this.stats.invalid % 1000 === 0) this.log.warn(`sweep panel: ignored invalid webview message #${this.stats.invalid} (${parsed.reason})`);
      return;
    }
    void this.handle(parsed.message).catch((err: unknown) => this.log.error(`sweep panel: ${formatError(err, true)}`));
  }

  private async handle(m: SweepToHost): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        await this.refresh();
        return;
      case 'openCell': {
        const cell = this.data?.cells.find((c) => c.id === m.cellId);
        if (!cell || !this.data) {
          this.log.warn(`sweep panel: openCell for a cell not in the shown sweep ignored: ${m.cellId.slice(0, 200)}`);
          return;
        }
        const dir = vscode.Uri.file(path.join(this.data.dir, 'cells', cell.id));
        if (m.what === 'log') await vscode.window.showTextDocument(vscode.Uri.joinPath(dir, 'trainer.log'), { preview: true });
        else await vscode.commands.executeCommand(vscode.workspace.getWorkspaceFolder(dir) ? 'revealInExplorer' : 'revealFileInOS', dir);
        return;
      }
      case 'copyMatrix': {
        if (!this.data) return;
        const name = m.format === 'csv' ? 'results.csv' : 'results.md';
        await vscode.env.clipboard.writeText(readFileSync(path.join(this.data.dir, name), 'utf8'));
        void vscode.window.showInformationMessage(`H-QLoRA: copied ${name} of sweep ${this.data.name}.`);
        return;
      }
      case 'saveMatrix': {
        const data = this.data;
        if (!data) return;
        const csv = m.format === 'csv';
        const name = csv ? 'results.csv' : 'results.md';
        const text = readFileSync(path.join(data.dir, name), 'utf8'); // read now: the file shown, even if a cell finishes meanwhile
        const target = await vscode.window.showSaveDialog({
          title: `Save the matrix of sweep ${data.name} as ${csv ? 'CSV' : 'Markdown'}`,
          defaultUri: vscode.Uri.file(path.join(data.dir, `${data.name}-${name}`)),
          filters: csv ? { CSV: ['csv'] } : { Markdown: ['md'] },
        });
        if (!target) return;
        await vscode.workspace.fs.writeFile(target, new TextEncoder().encode(text));
        void vscode.window.showInformationMessage(`H-QLoRA: saved ${name} of sweep ${data.name} to ${target.fsPath}.`);
        return;
      }
      case 'log':
        this.log[m.level](`sweep webview: ${m.message}`);
        return;
    }
  }

  /** The runner of this window changed the state of sweep `file` (file watchers may lag or miss a change). */
  sweepChanged(file: string): void {
    if (file === this.file) this.schedule();
  }

  private schedule(delay = THROTTLE_MS): void {
    if (this.timer || !this.ready) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh().catch((err: unknown) => this.log.error(`sweep panel: ${formatError(err, true)}`));
    }, delay);
  }

  /** Reads the sweep folder and posts the whole sweep (or why there is none). */
  private async refresh(): Promise<void> {
    const file = this.file;
    if (!this.ready || !file) return;
    let problem: string | null = null;
    let data: SweepData | null = null;
    try {
      const sweep = await loadSweep(file);
      data = sweepPanelData(sweep.dir, sweep.baseline);
      if (!data) problem = `the sweep ${sweep.name} has not started: run "H-QLoRA: Start Sweep" or \`hqlora sweep ${path.basename(file)}\``;
    } catch (err) {
      problem = formatError(err).split('\n')[0] ?? 'the sweep file is invalid';
    }
    if (file !== this.file) return; // switched to another sweep meanwhile: its own refresh follows
    this.data = data;
    this.poll(data?.running === true);
    this.post({ type: 'sweep', sweepFile: file, sweep: data, problem });
  }

  private poll(on: boolean): void {
    if (on && !this.poller) this.poller = setInterval(() => this.schedule(0), THROTTLE_MS);
    if (!on && this.poller) {
      clearInterval(this.poller);
      this.poller = undefined;
    }
  }

  private post(m: HostToSweep): void {
    if (!this.panel || !this.ready) return;
    if (!validateHostToSweep(m)) {
      this.log.error(`sweep panel: not posting an invalid message: ${describeAjvErrors(validateHostToSweep.errors)}`);
      return;
    }
    this.stats.posted++;
    this.stats.last = m.sweep;
    void this.panel.webview.postMessage(m);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.poll(false);
    this.panel?.dispose();
    for (const s of this.subs) s.dispose();
  }
}
