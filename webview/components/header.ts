// header.ts — the selected run's header (name, status, step/total, ETA, backend, model, levels) and its actions.
import type { Commands, RunSummary } from '../../schemas/generated/webview-messages';
import { button, setDisabled, spinner, tag } from '../ui/toolkit';

export type Action = 'stop' | 'saveCheckpoint' | 'resume' | 'openFolder' | 'mergeLevels' | 'exportMerged';

export function formatDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s) || s < 0) return '—';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Header {
  readonly root = document.createElement('header');
  private readonly title = document.createElement('h2');
  private readonly status = document.createElement('span');
  private readonly facts = document.createElement('dl');
  private readonly buttons: Record<Action, HTMLElement>;
  private run: RunSummary | undefined;
  private commands: Commands = { mergeLevels: false, exportMerged: false };

  constructor(onAction: (a: Action, runId: string) => void) {
    this.root.id = 'run-header';
    this.status.id = 'run-status';
    const act = (a: Action) => () => this.run && onAction(a, this.run.id);
    this.buttons = {
      stop: button('Stop', { id: 'btn-stop', appearance: 'primary', title: 'Stop gracefully: the trainer writes a checkpoint, then exits', onClick: act('stop') }),
      saveCheckpoint: button('Save checkpoint', { id: 'btn-save', title: 'Write a checkpoint after the current step; training goes on', onClick: act('saveCheckpoint') }),
      resume: button('Resume', { id: 'btn-resume', title: 'Continue from the newest complete checkpoint', onClick: act('resume') }),
      openFolder: button('Open run folder', { id: 'btn-folder', onClick: act('openFolder') }),
      mergeLevels: button('Merge levels', { id: 'btn-merge', onClick: act('mergeLevels') }),
      exportMerged: button('Export merged model', { id: 'btn-export', onClick: act('exportMerged') }),
    };
    const titleRow = document.createElement('div');
    titleRow.className = 'title-row';
    titleRow.append(this.title, this.status);
    const actions = document.createElement('div');
    actions.className = 'actions';
    actions.append(...Object.values(this.buttons));
    this.root.append(titleRow, this.facts, actions);
    this.render();
  }

  setCommands(c: Commands): void {
    this.commands = c;
    this.render();
  }

  setRun(run: RunSummary | undefined): void {
    this.run = run;
    this.render();
  }

  private render(): void {
    const r = this.run;
    this.title.textContent = r ? r.name : 'No run selected';
    this.status.replaceChildren(...(r ? [tag(r.status, `status status-${r.status}`), ...(r.live ? [spinner()] : [])] : []));
    this.status.dataset.status = r?.status ?? '';
    this.status.title = r?.message ?? '';
    const facts: [string, string][] = r
      ? [
          ['Step', `${r.step} / ${r.totalSteps || '?'}`],
          ['ETA', r.live ? formatDuration(r.etaS) : '—'],
          ['Duration', formatDuration(r.durationS)],
          ['Loss', r.finalLoss === null ? '—' : r.finalLoss.toFixed(4)],
          ['Backend', r.backend || '—'],
          ['Model', r.model || '—'],
          ['Levels', r.levels || '—'],
        ]
      : [];
    this.facts.replaceChildren(...facts.flatMap(([k, v]) => {
      const item = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      dd.dataset.fact = k.toLowerCase();
      item.append(dt, dd);
      return [item];
    }));
    const done = r?.status === 'completed';
    setDisabled(this.buttons.stop, !r?.live);
    setDisabled(this.buttons.saveCheckpoint, r?.status !== 'running');
    setDisabled(this.buttons.resume, !r || r.live || !(r.status === 'stopped' || r.status === 'failed'));
    setDisabled(this.buttons.openFolder, !r);
    for (const [a, cmd] of [['mergeLevels', 'hqlora.mergeLevels'], ['exportMerged', 'hqlora.exportMerged']] as const) {
      const available = this.commands[a];
      setDisabled(this.buttons[a], !available || !done);
      this.buttons[a].title = !available ? `Unavailable: the command ${cmd} is not registered` : done ? '' : 'Available once the run has completed';
    }
  }
}
