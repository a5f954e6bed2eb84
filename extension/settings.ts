// settings.ts — the extension's settings as typed getters, and the one place that reacts to their changes
// (rust-analyzer config.ts style): each setting says when a change takes effect, and the user is told.
import path from 'node:path';

import * as vscode from 'vscode';

/** When a changed setting takes effect. */
type Applies = 'now' | 'nextRun' | 'reload';

/** Every setting of the extension and when its change takes effect (package.json contributes.configuration). */
export const SETTINGS: Record<string, Applies> = {
  'hqlora.trainer.path': 'nextRun',
  'hqlora.defaultDevice': 'nextRun',
  'hqlora.runsFolder': 'now',
  'hqlora.maxConcurrentRuns': 'now',
  'hqlora.stopTimeoutSeconds': 'nextRun',
};

export type Device = 'auto' | 'cpu' | 'cuda';

export class Settings {
  private get cfg(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration('hqlora');
  }

  /** hqlora.trainer.path (machine-overridable): second in the trainer discovery order; undefined = unset. */
  get trainerPath(): string | undefined {
    return this.cfg.get<string>('trainer.path') || undefined;
  }

  /** hqlora.runsFolder as an absolute path (relative = to the first workspace folder); undefined = each config's output.dir. */
  get runsFolder(): string | undefined {
    const p = this.cfg.get<string>('runsFolder')?.trim();
    if (!p) return undefined;
    const base = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    return path.isAbsolute(p) || !base ? p : path.resolve(base, p);
  }

  /** hqlora.defaultDevice: hardware.device for configs that do not set one; undefined = the config default. */
  get defaultDevice(): Device | undefined {
    const d = this.cfg.get<string>('defaultDevice');
    return d === 'cpu' || d === 'cuda' || d === 'auto' ? d : undefined;
  }

  get maxConcurrentRuns(): number {
    return Math.max(1, Math.floor(this.cfg.get<number>('maxConcurrentRuns') ?? 1));
  }

  /** Seconds between the graceful SIGTERM and the SIGKILL of a run's process group. */
  get stopTimeoutMs(): number {
    return Math.max(1, this.cfg.get<number>('stopTimeoutSeconds') ?? 60) * 1000;
  }
}

/**
 * The one onDidChangeConfiguration handler: runs `onNow` for settings that apply at once, and tells the user when a
 * change waits for the next run (running trainers keep theirs) or needs a window reload.
 */
export function watchSettings(liveRuns: () => number, onNow: (key: string) => void): vscode.Disposable {
  return vscode.workspace.onDidChangeConfiguration(async (e) => {
    const changed = Object.keys(SETTINGS).filter((k) => e.affectsConfiguration(k));
    for (const key of changed) {
      const applies = SETTINGS[key];
      if (applies === 'now') onNow(key);
      else if (applies === 'nextRun' && liveRuns() > 0) {
        void vscode.window.showInformationMessage(`H-QLoRA: ${key} applies to the next run; the ${liveRuns()} running run(s) keep the old value.`);
      }
    }
    if (changed.some((k) => SETTINGS[k] === 'reload')) {
      const choice = await vscode.window.showInformationMessage('H-QLoRA: this setting takes effect after a window reload.', 'Reload Window');
      if (choice) await vscode.commands.executeCommand('workbench.action.reloadWindow');
    }
  });
}
