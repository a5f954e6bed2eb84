// ctx.ts — the extension's one long-lived mutable object (rust-analyzer style). It owns the language client, the
// run manager, the status bar, the log channels and the dashboard, and disposes them with the extension.
import * as vscode from 'vscode';

import { Dashboard } from './dashboard/panel';
import { SweepPanel } from './dashboard/sweepPanel';
import { Playgrounds } from './playground/panel';
import { RunManager } from './registry/manager';
import { Settings, watchSettings } from './settings';
import { StatusBar } from './statusbar';

export class Ctx implements vscode.Disposable {
  /** The extension's own log (commands, run lifecycle, rejected messages). */
  readonly log: vscode.LogOutputChannel;
  /** The trainers' human logs (trainer.log of every followed run, tailed; survives a reload). */
  readonly trainerLog: vscode.LogOutputChannel;
  readonly settings = new Settings();
  readonly runs: RunManager;
  readonly statusBar: StatusBar;
  readonly dashboard: Dashboard;
  /** The sweep results panel (loss curves of every cell, the sortable cell matrix). */
  readonly sweepPanel: SweepPanel;
  /** Open chat playground panels (each ends its llama.cpp server process when closed). */
  readonly playgrounds: Playgrounds;
  /** The run-config language client, once started (extension.ts); disposed through the extension's subscriptions. */
  languageClient: { stop(): Promise<void> } | undefined;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('H-QLoRA', { log: true });
    this.trainerLog = vscode.window.createOutputChannel('H-QLoRA Trainer', { log: true });
    extension.subscriptions.push(this, this.log, this.trainerLog);
    this.runs = new RunManager(extension, this.settings, this.log, this.trainerLog);
    this.runs.restore(); // before the status bar: runs that ended while the window was closed are not announced
    this.statusBar = new StatusBar(this.runs);
    this.dashboard = new Dashboard(extension, this.runs, this.log);
    this.sweepPanel = new SweepPanel(extension, this.log);
    this.playgrounds = new Playgrounds(extension, this.log);
    extension.subscriptions.push(
      watchSettings(() => this.runs.liveRuns.length, (key) => {
        if (key === 'hqlora.runsFolder') this.runs.rescan();
        this.statusBar.render();
      }),
    );
  }

  /** hqlora.trainer.path (kept for callers that only need the discovery setting). */
  get trainerPathSetting(): string | undefined {
    return this.settings.trainerPath;
  }

  dispose(): void {
    // Trainers are detached and keep running; the next activation re-attaches to them (runs/manager.ts).
    this.playgrounds.dispose();
    this.dashboard.dispose();
    this.sweepPanel.dispose();
    this.statusBar.dispose();
    this.runs.dispose();
  }
}
