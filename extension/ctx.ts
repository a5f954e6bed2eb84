// ctx.ts — the extension's one long-lived mutable object (rust-analyzer style): it owns the log channel, the
// status bar item and the current run, and draws the status bar in one place.
import * as vscode from 'vscode';

import type { StepEvent } from '../schemas/generated/trainer-events';
import { formatStepShort } from './run/format';
import type { RunResult, TrainerProcess } from './run/launcher';

export type RunState =
  | { kind: 'idle' }
  | { kind: 'preparing'; name: string }
  | { kind: 'training'; name: string; proc: TrainerProcess; step?: StepEvent }
  | { kind: 'finished'; name: string; result: RunResult; runDir: string };

export class Ctx implements vscode.Disposable {
  readonly log: vscode.LogOutputChannel;
  private readonly statusBar: vscode.StatusBarItem;
  private state_: RunState = { kind: 'idle' };

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('H-QLoRA', { log: true });
    this.statusBar = vscode.window.createStatusBarItem('hqlora.run', vscode.StatusBarAlignment.Left, 10);
    this.statusBar.name = 'H-QLoRA run';
    extension.subscriptions.push(this, this.log, this.statusBar);
    this.updateStatusBar();
  }

  get state(): RunState {
    return this.state_;
  }

  set state(s: RunState) {
    this.state_ = s;
    this.updateStatusBar();
  }

  /** hqlora.trainer.path (machine-overridable): second in the trainer discovery order. */
  get trainerPathSetting(): string | undefined {
    return vscode.workspace.getConfiguration('hqlora').get<string>('trainer.path') || undefined;
  }

  /** The current trainer process, if a run is training. */
  get runningProc(): TrainerProcess | undefined {
    return this.state_.kind === 'training' ? this.state_.proc : undefined;
  }

  private updateStatusBar(): void {
    const s = this.state_;
    const item = this.statusBar;
    item.backgroundColor = undefined;
    switch (s.kind) {
      case 'idle':
        item.hide();
        return;
      case 'preparing':
        item.text = `$(sync~spin) H-QLoRA ${s.name}: preparing data`;
        item.tooltip = 'Tokenizing the dataset. Click to stop.';
        item.command = 'hqlora.stopRun';
        break;
      case 'training':
        item.text = `$(sync~spin) H-QLoRA ${s.name}${s.step ? `: ${formatStepShort(s.step)}` : ': starting'}`;
        item.tooltip = 'Training. Click to stop (the trainer writes a checkpoint first).';
        item.command = 'hqlora.stopRun';
        break;
      case 'finished': {
        const icon = s.result.status === 'completed' ? '$(check)' : s.result.status === 'stopped' ? '$(debug-pause)' : '$(error)';
        item.text = `${icon} H-QLoRA ${s.name}: ${s.result.status}`;
        item.tooltip = `${s.result.message}\n${s.runDir}\nClick to show the log.`;
        item.command = 'hqlora.showLog';
        if (s.result.status === 'failed') item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        break;
      }
    }
    item.show();
  }

  dispose(): void {
    // SIGTERM only: the detached trainer still writes its checkpoint after the extension host is gone.
    void this.runningProc?.stop();
  }
}
