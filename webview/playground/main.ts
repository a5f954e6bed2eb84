// main.ts — the chat playground webview (browser code: never imports vscode, node:* or extension/). It says
// `ready`, then shows what the host sends: one column per chosen pane (base, tuned, level subsets), each with its
// own conversation, streamed tokens, and its time to first token and tokens/s. Settings and the pane choice are
// kept with setState; the host owns the models, the histories and the generation.
import './playground.css';

import type { AnswerMessage, HostToPlayground, PaneId, PaneInfo, PgInitMessage, PlaygroundToHost, Settings } from '../../schemas/generated/playground-messages';
import { type ValueElement, button, checkbox, setDisabled, spinner, tag, textArea, textField } from '../ui/toolkit';

interface ViewState { panes?: PaneId[]; settings?: Settings }
interface Api { postMessage(m: PlaygroundToHost): void; getState(): ViewState | undefined; setState(s: ViewState): void }
declare function acquireVsCodeApi(): Api;
const api = acquireVsCodeApi();
const post = (m: PlaygroundToHost): void => api.postMessage(m);

const el = <K extends keyof HTMLElementTagNameMap>(tagName: K, cls = '', text = ''): HTMLElementTagNameMap[K] => {
  const e = document.createElement(tagName);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
};

const app = document.getElementById('app') as HTMLElement;
let init: PgInitMessage | undefined;
let chosen: PaneId[] = [];
let generating = false;
const columns = new Map<PaneId, { root: HTMLElement; log: HTMLElement; current?: HTMLElement; stats?: HTMLElement }>();

const statusLine = el('div', 'status');
statusLine.id = 'status';
const statusText = el('span');
const ring = spinner();
statusLine.append(ring, statusText);
const templateNote = el('div', 'note');
const paneChoice = el('div', 'pane-choice');
const settingsRow = el('div', 'settings');
const grid = el('div', 'panes');
grid.id = 'panes';
const prompt = textArea('Prompt (Enter sends, Shift+Enter for a new line)', { id: 'prompt', rows: 3, onEnter: () => send() });
const sendButton = button('Send', { id: 'send', appearance: 'primary', onClick: () => send() });
const stopButton = button('Stop', { id: 'stop', disabled: true, onClick: () => post({ type: 'stop' }) });
const regenButton = button('Regenerate', { id: 'regenerate', disabled: true, onClick: () => regenerate() });
const clearButton = button('Clear', { id: 'clear', onClick: () => post({ type: 'clear' }) });
const copyButton = button('Copy as Markdown', { id: 'copy', onClick: () => post({ type: 'copyMarkdown' }) });

const fields: Record<keyof Omit<Settings, 'systemPrompt'>, ValueElement> = {
  temperature: textField('Temperature', '0', { id: 'temperature', size: 5, title: '0 = greedy (reproducible)' }),
  topP: textField('Top-p', '1', { id: 'top-p', size: 5 }),
  topK: textField('Top-k', '40', { id: 'top-k', size: 5 }),
  maxTokens: textField('Max tokens', '128', { id: 'max-tokens', size: 6 }),
  seed: textField('Seed', '0', { id: 'seed', size: 8 }),
};
const systemPrompt = textField('System prompt', '', { id: 'system-prompt', size: 40 });

function status(text: string, level: 'info' | 'busy' | 'error'): void {
  statusText.textContent = text;
  statusLine.dataset.level = level;
  ring.style.display = level === 'busy' ? '' : 'none';
}

/** The settings from the fields; a bad number is named in the status line and nothing is sent. */
function readSettings(): Settings | undefined {
  const num = (k: keyof typeof fields, integer: boolean, min: number, max: number): number | undefined => {
    const v = Number(fields[k].value);
    if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      status(`${k}: "${fields[k].value}" is not ${integer ? 'a whole number' : 'a number'} in ${min}..${max}`, 'error');
      return undefined;
    }
    return v;
  };
  const temperature = num('temperature', false, 0, 5);
  const topP = num('topP', false, 0.0001, 1);
  const topK = num('topK', true, 0, 100000);
  const maxTokens = num('maxTokens', true, 1, 8192);
  const seed = num('seed', true, 0, 4294967295);
  if (temperature === undefined || topP === undefined || topK === undefined || maxTokens === undefined || seed === undefined) return undefined;
  const s: Settings = { temperature, topP, topK, maxTokens, seed, systemPrompt: systemPrompt.value };
  api.setState({ panes: chosen, settings: s });
  return s;
}

function setGenerating(on: boolean): void {
  generating = on;
  setDisabled(sendButton, on);
  setDisabled(regenButton, on);
  setDisabled(stopButton, !on);
  app.dataset.state = on ? 'generating' : 'idle';
}

function send(): void {
  const text = prompt.value.trim();
  if (!text || generating) return;
  if (chosen.length < 2 || chosen.length > 4) {
    status('choose two to four panes to compare', 'error');
    return;
  }
  const settings = readSettings();
  if (!settings) return;
  prompt.value = '';
  post({ type: 'ask', prompt: text, panes: chosen, settings });
}

function regenerate(): void {
  const settings = readSettings();
  if (settings && !generating) post({ type: 'regenerate', settings });
}

function label(id: PaneId): string {
  return init?.panes.find((p) => p.id === id)?.label ?? id;
}

function renderColumns(): void {
  grid.replaceChildren();
  columns.clear();
  grid.style.gridTemplateColumns = `repeat(${Math.max(1, chosen.length)}, minmax(0, 1fr))`;
  for (const id of chosen) {
    const root = el('section', 'pane');
    root.dataset.pane = id;
    const head = el('h3', '', label(id));
    const log = el('div', 'log');
    root.append(head, log);
    grid.append(root);
    columns.set(id, { root, log });
  }
}

/** Panes in the hierarchy's order: base, level 1 only, levels 1–2, …, tuned (all levels). */
function hierarchyOrder(ids: PaneId[]): PaneId[] {
  const rank = (id: PaneId): number => (id === 'base' ? 0 : id === 'tuned' ? Infinity : Number(id.slice(1)));
  return [...ids].sort((a, b) => rank(a) - rank(b));
}

function renderPaneChoice(panes: PaneInfo[]): void {
  paneChoice.replaceChildren(el('span', 'label', 'Compare:'));
  const byId = new Map(panes.map((p) => [p.id, p]));
  for (const id of hierarchyOrder(panes.map((p) => p.id))) {
    const p = byId.get(id);
    if (!p) continue;
    const box = checkbox(chosen.includes(p.id), p.label, (on) => {
      // Columns keep the hierarchy's order whatever order the boxes are ticked in (the default shows base, L1,
      // tuned: ticking "levels 1–2" must add a column between L1 and tuned, not move tuned).
      chosen = hierarchyOrder(on ? [...new Set([...chosen, p.id])] : chosen.filter((x) => x !== p.id));
      api.setState({ panes: chosen, ...(api.getState()?.settings ? { settings: api.getState()?.settings } : {}) });
      renderColumns();
    });
    box.id = `pane-${p.id}`;
    const wrap = el('label', 'choice');
    wrap.append(box, el('span', '', p.label));
    paneChoice.append(wrap);
  }
}

function onTurn(promptText: string, panes: PaneId[], regen: boolean): void {
  setGenerating(true);
  for (const id of panes) {
    const c = columns.get(id);
    if (!c) continue;
    if (regen) {
      c.current?.parentElement?.remove();
    } else {
      c.log.append(el('div', 'user', promptText));
    }
    const turn = el('div', 'turn');
    const answer = el('div', 'answer');
    answer.dataset.state = 'waiting';
    const stats = el('div', 'stats', 'waiting…');
    turn.append(answer, stats);
    c.log.append(turn);
    c.current = answer;
    c.stats = stats;
  }
}

function onAnswer(m: AnswerMessage): void {
  const c = columns.get(m.pane);
  if (c?.current) {
    c.current.textContent = m.text;
    c.current.dataset.state = m.stopReason;
    if (c.stats) {
      c.stats.replaceChildren();
      if (m.error) c.stats.append(tag('error', 'error'), el('span', 'error-text', m.error));
      else {
        c.stats.append(tag(m.stopReason));
        c.stats.append(el('span', '', ` ${m.tokens ?? 0} tokens · TTFT ${(m.ttftMs ?? 0).toFixed(0)} ms · ${(m.tokensPerSecond ?? 0).toFixed(1)} tok/s`));
      }
    }
    c.current = undefined;
  }
  const busy = [...columns.values()].some((x) => x.current !== undefined);
  if (!busy) setGenerating(false);
}

function receive(m: HostToPlayground): void {
  switch (m.type) {
    case 'init': {
      init = m;
      const saved = api.getState();
      const ids = m.panes.map((p) => p.id);
      chosen = (saved?.panes ?? m.defaultPanes).filter((p) => ids.includes(p));
      if (chosen.length < 2) chosen = m.defaultPanes;
      chosen = hierarchyOrder(chosen);
      const s = saved?.settings ?? m.settings;
      for (const k of Object.keys(fields) as (keyof typeof fields)[]) fields[k].value = String(s[k]);
      systemPrompt.value = s.systemPrompt;
      templateNote.textContent = m.chatTemplate
        ? 'Multi-turn history is formatted with the model\'s chat template.'
        : 'This model has no chat template: each pane\'s turns are sent as one plain prompt.';
      renderPaneChoice(m.panes);
      renderColumns();
      app.dataset.state = 'idle';
      return;
    }
    case 'status':
      status(m.text, m.level);
      if (m.level === 'error' && generating) setGenerating(false);
      return;
    case 'turn':
      onTurn(m.prompt, m.panes, m.regenerate);
      return;
    case 'token': {
      const c = columns.get(m.pane)?.current;
      if (c) {
        if (c.dataset.state === 'waiting') c.textContent = '';
        c.dataset.state = 'streaming';
        c.append(document.createTextNode(m.text));
      }
      return;
    }
    case 'answer':
      onAnswer(m);
      return;
    case 'cleared':
      renderColumns();
      setDisabled(regenButton, true);
      return;
  }
}

const header = el('header');
header.append(el('h2', '', 'H-QLoRA Chat'), statusLine);
const actions = el('div', 'actions');
actions.append(sendButton, stopButton, regenButton, clearButton, copyButton);
for (const f of Object.values(fields)) settingsRow.append(f);
settingsRow.append(systemPrompt);
const composer = el('div', 'composer');
composer.append(prompt, actions);
app.replaceChildren(header, paneChoice, settingsRow, templateNote, grid, composer);
status('starting…', 'busy');
window.addEventListener('message', (e: MessageEvent<HostToPlayground>) => receive(e.data));
post({ type: 'ready' });
