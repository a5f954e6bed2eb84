// statusbar.ts — the one status bar item: preparing, running (`$(sync~spin) H-QLoRA 120/1875 · loss 1.234 · 12m left`,
// then ` · 4 ranks · 12.3k tok/s` for a data-parallel run, each rank's memory in the tooltip),
// completed, stopped or failed (shown for a minute after the run ends), hidden when nothing runs. Click: dashboard.
import * as vscode from 'vscode';

import { formatBytes } from './core/format';
import type { RunSummary } from '../schemas/generated/webview-messages';
import type { RunManager } from './registry/manager';
import type { Run } from './registry/run';

/** How long a finished run stays in the status bar. */
const FINISHED_VISIBLE_MS = 60_000;

/** `42s`, `12m`, `1h05m`: coarse on purpose, the status bar is read at a glance. */
export function formatEta(s: number | null): string {
  if (s === null || !Number.isFinite(s) || s < 0) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `12.3k tok/s` for the status bar; `?` before the first step. */
export function formatTokensPerS(tps: number | null): string {
  if (tps === null || !Number.isFinite(tps)) return '? tok/s';
  return tps >= 10_000 ? `${(tps / 1000).toFixed(tps >= 100_000 ? 0 : 1)}k tok/s` : `${Math.round(tps)} tok/s`;
}

/**
 * Data parallel: ` · 4 ranks · 12.3k tok/s` (the global throughput) for the item's text, and the tooltip line with each
 * rank's memory; nothing for a one-process run.
 */
export function worldParts(s: Pick<RunSummary, 'ranks' | 'tokensPerS' | 'rankMemoryBytes'>): { text: string; tooltip: string } {
  if (s.ranks <= 1) return { text: '', tooltip: '' };
  const memory = s.rankMemoryBytes.length ? s.rankMemoryBytes.map((b, k) => `rank ${k} ${formatBytes(b)}`).join(', ') : 'not reported yet';
  return {
    text: ` · ${s.ranks} ranks · ${formatTokensPerS(s.tokensPerS)}`,
    tooltip: `\n${s.ranks} ranks, ${formatTokensPerS(s.tokensPerS)} in all; memory: ${memory}.`,
  };
}

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private finished: { run: Run; until: number } | undefined;
  private hideTimer: NodeJS.Timeout | undefined;
  private readonly sub: vscode.Disposable;

  constructor(private readonly runs: RunManager) {
    this.item = vscode.window.createStatusBarItem('hqlora.run', vscode.StatusBarAlignment.Left, 10);
    this.item.name = 'H-QLoRA run';
    this.item.command = 'hqlora.openDashboard';
    this.sub = runs.onDidChange((run) => {
      if (run?.live && this.finished?.run === run) this.finished = undefined; // resumed
      if (run && !run.live && run.record.pid !== undefined && this.finished?.run !== run) {
        this.finished = { run, until: Date.now() + FINISHED_VISIBLE_MS };
      }
      this.render();
    });
    this.render();
  }

  /** The item's current text (tests read it). */
  get text(): string {
    return this.item.text;
  }

  get visible(): boolean {
    return this.item.text !== '' && this.shown;
  }

  private shown = false;

  render(): void {
    const item = this.item;
    item.backgroundColor = undefined;
    const live = this.runs.liveRuns;
    const prep = this.runs.preparing;
    const current = live[0];
    const more = live.length + (prep ? 1 : 0) - 1;
    const suffix = more > 0 ? ` (+${more})` : '';
    if (current) {
      const s = current.summary();
      const world = worldParts(s);
      item.text = s.totalSteps > 0
        ? `$(sync~spin) H-QLoRA ${s.step}/${s.totalSteps} · loss ${s.finalLoss?.toFixed(3) ?? '?'} · ${formatEta(s.etaS)} left${world.text}${suffix}`
        : `$(sync~spin) H-QLoRA ${current.name}: starting${suffix}`;
      item.tooltip = `${current.name}: training (${s.backend || 'starting'}).${world.tooltip} Click to open the dashboard.`;
    } else if (prep) {
      item.text = `$(sync~spin) H-QLoRA ${prep.name}: preparing data${suffix}`;
      item.tooltip = 'Tokenizing the dataset into the run folder. Click to open the dashboard.';
    } else if (this.finished && this.finished.until > Date.now()) {
      const { run } = this.finished;
      const icon = run.status === 'completed' ? '$(check)' : run.status === 'stopped' ? '$(debug-pause)' : '$(error)';
      item.text = `${icon} H-QLoRA ${run.name}: ${run.status}`;
      item.tooltip = `${run.record.message}\n${run.id}\nClick to open the dashboard.`;
      if (run.status === 'failed') item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
      if (this.hideTimer) clearTimeout(this.hideTimer);
      this.hideTimer = setTimeout(() => this.render(), this.finished.until - Date.now() + 10);
    } else {
      this.finished = undefined;
      item.hide();
      this.shown = false;
      return;
    }
    item.show();
    this.shown = true;
  }

  dispose(): void {
    if (this.hideTimer) clearTimeout(this.hideTimer);
    this.sub.dispose();
    this.item.dispose();
  }
}
