// header.ts — the selected run's header (name, status, step/total, ETA, throughput and each rank's memory, backend,
// model, levels) and its actions.
// Every action is enabled by the selected run's state alone (ACTIONS below); a disabled button's tooltip says why,
// and the primary button is the one the state calls for (Stop while live, Resume when stopped or failed, Merge
// levels when completed).
import type { Commands, OutputsMessage, RunActionMessage, RunSummary } from '../../schemas/generated/webview-messages';
import { button, setDisabled, spinner, tag } from '../ui/toolkit';
import { formatRankMemory, formatThroughput } from './runFacts';

export type Action = RunActionMessage['action'];
type Busy = OutputsMessage['busy'];

export function formatDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s) || s < 0) return '—';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

interface ActionDef {
  action: Action;
  label: string;
  id: string;
  /** The tooltip when enabled. */
  title: string;
  /** Why the button is disabled for this run, or undefined when it is enabled. */
  disabledBecause(r: RunSummary, busy: Busy, commands: Commands): string | undefined;
}

const BUSY_LABEL: Record<NonNullable<Busy>, string> = { mergeLevels: 'Merge levels', exportMerged: 'Export merged model', exportGguf: 'Export to GGUF' };

const onlyLive = (what: string) => (r: RunSummary): string | undefined =>
  r.live ? undefined : `${what} only while the run is training; ${r.name} is ${r.status}.`;

/** Merge/export: a completed run, the command registered, and no merge/export of this run already going. */
const onlyCompleted = (cmd: keyof Commands, id: string) => (r: RunSummary, busy: Busy, commands: Commands): string | undefined => {
  if (!commands[cmd]) return `Unavailable: the command ${id} is not registered.`;
  if (r.status !== 'completed' || r.live) return `Available once the run has completed (its adapter is written then); ${r.name} is ${r.status}.`;
  if (busy) return `${BUSY_LABEL[busy]} is running for this run: its progress and Cancel are in the notification.`;
  return undefined;
};

/**
 * The actions, in button order. To add one: an enum value in schemas/webview-messages.schema.json (RunActionMessage.action), its command in
 * extension/dashboard/panel.ts ACTION_COMMANDS, and an entry here.
 */
const ACTIONS: ActionDef[] = [
  { action: 'stop', label: 'Stop', id: 'btn-stop', title: 'Stop gracefully: the trainer writes a checkpoint, then exits', disabledBecause: onlyLive('Stop works') },
  {
    action: 'saveCheckpoint', label: 'Save checkpoint', id: 'btn-save', title: 'Write a checkpoint after the current step; training goes on',
    disabledBecause: (r) => onlyLive('Save checkpoint works')(r) ?? (r.status === 'running' ? undefined : 'The trainer is still preparing the run; wait for its first step.'),
  },
  {
    action: 'resume', label: 'Resume', id: 'btn-resume', title: 'Continue from the newest complete checkpoint',
    disabledBecause: (r) => r.live ? `${r.name} is still training.` : r.status === 'stopped' || r.status === 'failed' ? undefined
      : `Only stopped or failed runs resume; ${r.name} is ${r.status}.`,
  },
  { action: 'openFolder', label: 'Open run folder', id: 'btn-folder', title: 'Show the run folder in the file manager', disabledBecause: () => undefined },
  {
    action: 'mergeLevels', label: 'Merge levels', id: 'btn-merge',
    title: 'Merge the adapter levels into one PEFT LoRA (exact, or a smaller rank by truncated SVD), verified by a forward check',
    disabledBecause: onlyCompleted('mergeLevels', 'hqlora.mergeLevels'),
  },
  {
    action: 'exportMerged', label: 'Export merged model', id: 'btn-export',
    title: 'Write a Hugging Face model folder with the adapter merged into the base weights, verified by a forward check',
    disabledBecause: onlyCompleted('exportMerged', 'hqlora.exportMerged'),
  },
  {
    action: 'exportGguf', label: 'Export to GGUF', id: 'btn-gguf',
    title: 'Write GGUF files for llama.cpp, Ollama and LM Studio (merged model, base + LoRA, Modelfile), verified by llama.cpp itself',
    disabledBecause: onlyCompleted('exportGguf', 'hqlora.exportGguf'),
  },
  {
    action: 'chat', label: 'Chat', id: 'btn-chat',
    title: 'Open the chat playground: base, tuned and level-subset answers side by side (llama.cpp)',
    // Not blocked by a running export: the playground makes and caches its own GGUF.
    disabledBecause: (r, _busy, commands) => onlyCompleted('chatWithAdapter', 'hqlora.chatWithAdapter')(r, null, commands),
  },
];

/** The action the run's state calls for (drawn as the primary button). */
function primaryAction(r: RunSummary): Action | undefined {
  if (r.live) return 'stop';
  if (r.status === 'stopped' || r.status === 'failed') return 'resume';
  if (r.status === 'completed') return 'mergeLevels';
  return undefined;
}

export class Header {
  readonly root = document.createElement('header');
  private readonly title = document.createElement('h2');
  private readonly status = document.createElement('span');
  private readonly facts = document.createElement('dl');
  private readonly buttons = new Map<Action, HTMLElement>();
  private run: RunSummary | undefined;
  private busy: Busy = null;
  private commands: Commands = { mergeLevels: false, exportMerged: false, exportGguf: false, chatWithAdapter: false };

  constructor(onAction: (a: Action, runId: string) => void) {
    this.root.id = 'run-header';
    this.status.id = 'run-status';
    for (const d of ACTIONS) {
      this.buttons.set(d.action, button(d.label, { id: d.id, title: d.title, onClick: () => this.run && onAction(d.action, this.run.id) }));
    }
    const titleRow = document.createElement('div');
    titleRow.className = 'title-row';
    titleRow.append(this.title, this.status);
    const actions = document.createElement('div');
    actions.className = 'actions';
    actions.append(...this.buttons.values());
    this.root.append(titleRow, this.facts, actions);
    this.render();
  }

  setCommands(c: Commands): void {
    this.commands = c;
    this.render();
  }

  /** The selected run (its latest summary) and the merge/export running for it. */
  setRun(run: RunSummary | undefined, busy: Busy): void {
    this.run = run;
    this.busy = busy;
    this.render();
  }

  private render(): void {
    const r = this.run;
    this.root.dataset.runId = r?.id ?? '';
    this.title.textContent = r ? r.name : 'No run selected';
    this.title.title = r?.id ?? '';
    this.status.replaceChildren(...(r ? [tag(r.status, `status status-${r.status}`), ...(r.live ? [spinner()] : [])] : []));
    this.status.dataset.status = r?.status ?? '';
    this.status.title = r?.message ?? '';
    const facts: [string, string][] = r
      ? [
          ['Step', `${r.step} / ${r.totalSteps || '?'}`],
          ['ETA', r.live ? formatDuration(r.etaS) : '—'],
          ['Duration', formatDuration(r.durationS)],
          ['Loss', r.finalLoss === null ? '—' : r.finalLoss.toFixed(4)],
          ['Throughput', formatThroughput(r)],
          ['Memory', formatRankMemory(r.rankMemoryBytes)],
          ['Backend', r.backend || '—'],
          ['Model', r.model || '—'],
          ['Levels', r.levels || '—'],
        ]
      : [];
    this.facts.replaceChildren(...facts.map(([k, v]) => {
      const item = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      dd.dataset.fact = k.toLowerCase();
      item.append(dt, dd);
      return item;
    }));
    const primary = r && primaryAction(r);
    for (const d of ACTIONS) {
      const b = this.buttons.get(d.action) as HTMLElement;
      const why = r ? d.disabledBecause(r, this.busy, this.commands) : 'No run selected.';
      setDisabled(b, why !== undefined);
      b.title = why ?? d.title;
      b.setAttribute('appearance', why === undefined && d.action === primary ? 'primary' : 'secondary');
    }
  }
}
