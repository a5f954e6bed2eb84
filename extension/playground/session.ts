// session.ts — one chat playground session over a run (host-neutral: the VS Code panel and the tests use it): the
// run's GGUF files (gguf/cache.ts, made and verified on first use), one pane per model — the base, the tuned model
// (the merged GGUF: every level) and each level prefix (base GGUF + the LoRA GGUF of levels 1..n) — and each pane's
// own history, answered through one playground server (llama/client.ts; llama.cpp in its own process).
//
// Answers of one turn are generated pane after pane (the server runs one generation at a time), each streaming its
// tokens. stop() cancels the running one and skips the rest.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { PaneId, PaneInfo, Settings } from '../../schemas/generated/playground-messages';
import { type RunGguf, checkCompletedAdapter, ensureRunGguf } from '../gguf/cache';
import { type GgufExportResult, exportGgufVerified } from '../gguf/export';
import type { ExportProgress, HqloraAddon } from '../native/addon';
import { HqError } from '../core/errors';
import { PlaygroundClient } from '../llama/client';
import type { GenerateResult } from '../llama/protocol';

class StoppedBeforeStart extends Error {}

export const DEFAULT_SETTINGS: Settings = { temperature: 0, topP: 1, topK: 40, maxTokens: 128, seed: 0, systemPrompt: '' };

type Turn = { role: 'user' | 'assistant'; content: string };

export interface PaneAnswer extends Partial<GenerateResult> {
  pane: PaneId;
  text: string;
  stopReason: 'eos' | 'maxTokens' | 'cancelled' | 'error';
  error?: string;
}

export interface SessionEvents {
  onToken(pane: PaneId, text: string): void;
  onAnswer(a: PaneAnswer): void;
}

export interface SessionOptions {
  addon: HqloraAddon;
  packageRoot: string;
  /** Run folder (holds adapter/) or adapter folder. */
  source: string;
  nodePath?: string;
  env?: NodeJS.ProcessEnv;
  onLog?: (line: string) => void;
  onProgress?: (p: ExportProgress) => void;
  /** Context size of every generation (default: the model's, at most 4096). */
  contextSize?: number;
}

export class PlaygroundSession {
  readonly client: PlaygroundClient;
  private gguf: RunGguf | undefined;
  private readonly levelLoras = new Map<number, Promise<string>>();
  private readonly history = new Map<PaneId, Turn[]>();
  private lastPrompt: { prompt: string; panes: PaneId[] } | undefined;
  private abort: AbortController | undefined;

  constructor(private readonly o: SessionOptions) {
    checkCompletedAdapter(o.source);
    this.client = new PlaygroundClient({
      packageRoot: o.packageRoot, ...(o.nodePath ? { nodePath: o.nodePath } : {}), ...(o.env ? { env: o.env } : {}),
      ...(o.onLog ? { onLog: o.onLog } : {}),
    });
  }

  /** The run's GGUF (exported and verified into the run folder on first use). */
  async prepare(): Promise<RunGguf> {
    this.gguf ??= await ensureRunGguf({
      addon: this.o.addon, packageRoot: this.o.packageRoot, source: this.o.source,
      ...(this.o.onProgress ? { onProgress: this.o.onProgress } : {}),
    });
    return this.gguf;
  }

  /** Number of levels of the adapter. */
  get levels(): number {
    return this.gguf?.report.levels.length ?? 0;
  }

  get chatTemplate(): boolean {
    return this.gguf?.report.tokenizer?.chat_template ?? false;
  }

  /** Base, tuned, and one pane per proper level prefix (levels 1..n, n < L). */
  panes(): PaneInfo[] {
    const L = this.levels;
    const out: PaneInfo[] = [{ id: 'base', label: 'base' }, { id: 'tuned', label: L > 1 ? `tuned (levels 1–${L})` : 'tuned' }];
    for (let n = 1; n < L; n++) out.push({ id: `L${n}`, label: n === 1 ? 'level 1 only' : `levels 1–${n}` });
    return out;
  }

  /** The default comparison: base and tuned, plus level 1 only when the adapter has more than one level. */
  defaultPanes(): PaneId[] {
    return this.levels > 1 ? ['base', 'L1', 'tuned'] : ['base', 'tuned'];
  }

  /** The LoRA GGUF of levels 1..n, beside the run's GGUF folder (gguf-dequantized-f16-L<n>), made once. */
  levelLora(n: number): Promise<string> {
    let p = this.levelLoras.get(n);
    if (!p) {
      p = (async () => {
        const g = await this.prepare();
        const folder = `${g.folder}-L${n}`;   // gguf-dequantized-f16-L<n> (ggufFolderName)
        const report = path.join(folder, 'verify.json');
        if (existsSync(report)) {
          const f = (JSON.parse(readFileSync(report, 'utf8')) as GgufExportResult).files.lora?.file;
          if (f && existsSync(path.join(folder, f)) && statSync(report).mtimeMs >= statSync(g.merged).mtimeMs) return path.join(folder, f);
        }
        const rep = await exportGgufVerified({
          addon: this.o.addon, packageRoot: this.o.packageRoot, cancel: new this.o.addon.CancelToken(),
          options: { source: this.o.source, out: folder, overwrite: true, base: 'dequantized', type: 'f16', levels: n, merged: false, baseGguf: false, lora: true, verify: false },
          ...(this.o.onProgress ? { onProgress: this.o.onProgress } : {}),
        });
        const lora = rep.files.lora?.file;
        if (!lora) throw new HqError(`the level ${n} LoRA export wrote no adapter file`, { file: folder });
        return path.join(folder, lora);
      })();
      this.levelLoras.set(n, p);
      p.catch(() => this.levelLoras.delete(n));
    }
    return p;
  }

  private async modelOf(pane: PaneId): Promise<{ model: string; lora?: string }> {
    const g = await this.prepare();
    if (pane === 'base') return { model: g.base };
    if (pane === 'tuned') return { model: g.merged };
    const n = Number(pane.slice(1));
    if (!(n >= 1 && n < this.levels)) throw new HqError(`pane ${pane}: the adapter has ${this.levels} levels (level subsets L1..L${this.levels - 1})`);
    return { model: g.base, lora: await this.levelLora(n) };
  }

  /** Answers `prompt` as the next user turn in each pane, one pane after another. */
  async ask(prompt: string, panes: PaneId[], settings: Settings, ev: SessionEvents): Promise<PaneAnswer[]> {
    this.lastPrompt = { prompt, panes };
    for (const p of panes) (this.history.get(p) ?? this.history.set(p, []).get(p))?.push({ role: 'user', content: prompt });
    return this.answer(panes, settings, ev);
  }

  /** Answers the last user turn again (the previous answers are dropped). */
  async regenerate(settings: Settings, ev: SessionEvents): Promise<PaneAnswer[]> {
    const last = this.lastPrompt;
    if (!last) throw new HqError('nothing to regenerate yet: send a prompt first');
    for (const p of last.panes) {
      const h = this.history.get(p) ?? [];
      if (h[h.length - 1]?.role === 'assistant') h.pop();
      if (h[h.length - 1]?.role !== 'user') h.push({ role: 'user', content: last.prompt });
      this.history.set(p, h);
    }
    return this.answer(last.panes, settings, ev);
  }

  get lastPanes(): PaneId[] {
    return this.lastPrompt?.panes ?? [];
  }

  private async answer(panes: PaneId[], s: Settings, ev: SessionEvents): Promise<PaneAnswer[]> {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    const out: PaneAnswer[] = [];
    for (const pane of panes) {
      const h = this.history.get(pane) ?? [];
      let a: PaneAnswer;
      if (abort.signal.aborted) {
        a = { pane, text: '', stopReason: 'cancelled' };
      } else {
        try {
          const m = await this.modelOf(pane);
          if (abort.signal.aborted) throw new StoppedBeforeStart();
          const messages = [...(s.systemPrompt ? [{ role: 'system' as const, content: s.systemPrompt }] : []), ...h];
          const r = await this.client.generate({
            ...m, messages, temperature: s.temperature, topP: s.topP, topK: s.topK, maxTokens: s.maxTokens, seed: s.seed,
            ...(this.o.contextSize ? { contextSize: this.o.contextSize } : {}),
          }, (t) => ev.onToken(pane, t), abort.signal);
          a = { ...r, pane, stopReason: r.stopReason as PaneAnswer['stopReason'] };
        } catch (e) {
          if (e instanceof StoppedBeforeStart) a = { pane, text: '', stopReason: 'cancelled', tokens: 0 };
          else a = { pane, text: '', stopReason: 'error', error: e instanceof HqError ? e.format() : (e as Error).message };
        }
      }
      if (a.stopReason !== 'error') h.push({ role: 'assistant', content: a.text });
      else h.pop(); // the user turn stays only where it was answered
      this.history.set(pane, h);
      out.push(a);
      ev.onAnswer(a);
    }
    if (this.abort === abort) this.abort = undefined;
    return out;
  }

  /** Stops the running answer at once and skips the panes not started yet. */
  stop(): void {
    this.abort?.abort();
  }

  clear(): void {
    this.stop();
    this.history.clear();
    this.lastPrompt = undefined;
  }

  /** The conversation of every pane as Markdown. */
  markdown(): string {
    const labels = new Map(this.panes().map((p) => [p.id, p.label]));
    const parts: string[] = [`# H-QLoRA playground: ${path.basename(this.o.source)}`];
    for (const [pane, turns] of this.history) {
      parts.push(`\n## ${labels.get(pane) ?? pane}\n`);
      for (const t of turns) parts.push(t.role === 'user' ? `**User:** ${t.content}\n` : `**Model:** ${t.content}\n`);
    }
    return `${parts.join('\n')}\n`;
  }

  dispose(): void {
    this.stop();
    this.client.dispose();
  }
}
