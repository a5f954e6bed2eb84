// panel.ts — "H-QLoRA: Chat with Adapter": a webview panel per run that compares base, tuned and level-subset
// answers side by side. The model runs in the playground server (llama/client.ts: llama.cpp in its own Node process,
// started with the runtime VS Code gives extensions), never in the extension host. Like the dashboard: a nonce CSP,
// localResourceRoots = dist/webview only, nothing posted before the webview's `ready`, and every incoming message
// validated against schemas/playground-messages.schema.json (invalid ones are logged and dropped). Closing the panel
// disposes the session, which ends the server's whole process group.
import path from 'node:path';

import * as vscode from 'vscode';

import type { HostToPlayground, PaneId, PlaygroundToHost, Settings } from '../../schemas/generated/playground-messages';
import { loadAddon } from '../native/addon';
import { HqError, formatError } from '../core/errors';
import { describeAjvErrors } from '../core/schemaProblems';
import { webviewShell } from '../core/webviewShell';
import { validateHostToPlayground as validateToWebview, validatePlaygroundToHost as validateToHost } from '../../schemas/generated/playground-messages.validate';
import { DEFAULT_SETTINGS, type PaneAnswer, PlaygroundSession, type SessionEvents } from './session';

export const PLAYGROUND_VIEW_TYPE = 'hqlora.playground';

export type PlaygroundParse = { ok: true; message: PlaygroundToHost } | { ok: false; reason: string };

/** Validates one untrusted message from the playground webview. */
export function parsePlaygroundMessage(value: unknown): PlaygroundParse {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    return { ok: false, reason: 'not a plain JSON object' };
  }
  if (validateToHost(value)) return { ok: true, message: value };
  const type = 'type' in value ? String(value.type).slice(0, 40) : '?';
  return { ok: false, reason: `type ${JSON.stringify(type)}: ${describeAjvErrors(validateToHost.errors).slice(0, 300)}` };
}

export function isPlaygroundHostMessage(value: unknown): value is HostToPlayground {
  return validateToWebview(value);
}

export function playgroundHtml(webview: vscode.Webview, assets: vscode.Uri): string {
  return webviewShell(webview, {
    script: webview.asWebviewUri(vscode.Uri.joinPath(assets, 'playground.js')),
    style: webview.asWebviewUri(vscode.Uri.joinPath(assets, 'playground.css')),
    title: 'H-QLoRA Chat',
    loading: 'Loading the H-QLoRA playground…',
  });
}

export interface PlaygroundStats {
  received: number;
  invalid: number;
  /** Every answer the panel finished, in order (tests read them). */
  answers: PaneAnswer[];
  /** The server's backend line (hello), once started. */
  backend?: string;
}

/** One open playground panel over one run. */
export class PlaygroundPanel implements vscode.Disposable {
  private ready = false;
  /** "llama.cpp (node-llama-cpp V) on BACKEND", once the server said hello. */
  private engine = 'llama.cpp';
  private busy: Promise<unknown> = Promise.resolve();
  readonly stats: PlaygroundStats = { received: 0, invalid: 0, answers: [] };
  readonly session: PlaygroundSession;
  private readonly subs: vscode.Disposable[] = [];
  private readonly disposedEmitter = new vscode.EventEmitter<void>();
  readonly onDidDispose = this.disposedEmitter.event;

  constructor(readonly panel: vscode.WebviewPanel, readonly source: string, extension: vscode.ExtensionContext, private readonly log: vscode.LogOutputChannel) {
    this.session = new PlaygroundSession({
      addon: loadAddon(extension.extensionPath), packageRoot: extension.extensionPath, source,
      onLog: (l) => log.debug(`playground server: ${l}`),
      onProgress: (p) => this.status(`exporting the GGUF (first use, cached in the run folder): ${p.phase} ${p.item}`, 'busy'),
    });
    const assets = vscode.Uri.joinPath(extension.extensionUri, 'dist', 'webview');
    panel.webview.options = { enableScripts: true, localResourceRoots: [assets] };
    panel.webview.html = playgroundHtml(panel.webview, assets);
    panel.webview.onDidReceiveMessage((m: unknown) => this.receive(m), undefined, this.subs);
    panel.onDidDispose(() => this.dispose(), undefined, this.subs);
  }

  private post(m: HostToPlayground): void {
    if (this.ready) void this.panel.webview.postMessage(m);
  }

  private status(text: string, level: 'info' | 'busy' | 'error'): void {
    this.post({ type: 'status', text, level });
  }

  receive(value: unknown): void {
    this.stats.received++;
    const parsed = parsePlaygroundMessage(value);
    if (!parsed.ok) {
      this.stats.invalid++;
      if (this.stats.invalid <= 20 || this.stats.invalid % 1000 === 0) this.log.warn(`playground: ignored invalid webview message #${this.stats.invalid} (${parsed.reason})`);
      return;
    }
    const m = parsed.message;
    // Stop acts at once; the rest runs one after another.
    if (m.type === 'stop') {
      this.session.stop();
      return;
    }
    this.busy = this.busy.then(() => this.handle(m)).catch((e: unknown) => {
      this.log.error(`playground: ${formatError(e, true)}`);
      this.status(e instanceof HqError ? e.format() : String(e), 'error');
    });
  }

  private events(): SessionEvents {
    return {
      onToken: (pane, text) => this.post({ type: 'token', pane, text }),
      onAnswer: (a) => {
        this.stats.answers.push(a);
        this.post({
          type: 'answer', pane: a.pane, text: a.text, stopReason: a.stopReason,
          ...(a.tokens !== undefined ? { tokens: a.tokens } : {}), ...(a.promptTokens !== undefined ? { promptTokens: a.promptTokens } : {}),
          ...(a.ttftMs !== undefined ? { ttftMs: a.ttftMs } : {}), ...(a.tokensPerSecond !== undefined ? { tokensPerSecond: a.tokensPerSecond } : {}),
          ...(a.format ? { format: a.format } : {}), ...(a.error ? { error: a.error } : {}),
        });
      },
    };
  }

  private async handle(m: PlaygroundToHost): Promise<void> {
    switch (m.type) {
      case 'ready': {
        this.ready = true;
        this.status('preparing the GGUF files…', 'busy');
        await this.session.prepare();
        this.post({
          type: 'init', run: this.source, panes: this.session.panes(), defaultPanes: this.session.defaultPanes(),
          settings: DEFAULT_SETTINGS, chatTemplate: this.session.chatTemplate,
        });
        const hello = await this.session.client.start();
        this.stats.backend = hello.backend;
        this.engine = `llama.cpp (node-llama-cpp ${hello.nodeLlamaCppVersion}) on ${hello.backend}`;
        this.status(`${this.engine}${hello.note ? `: ${hello.note}` : ''}`, 'info');
        return;
      }
      case 'ask':
        await this.ask(m.prompt, m.panes, m.settings, false);
        return;
      case 'regenerate':
        await this.ask(undefined, this.session.lastPanes, m.settings, true);
        return;
      case 'clear':
        this.session.clear();
        this.post({ type: 'cleared' });
        return;
      case 'copyMarkdown':
        await vscode.env.clipboard.writeText(this.session.markdown());
        this.status('copied the conversation as Markdown', 'info');
        return;
      case 'stop':
        this.session.stop();
        return;
    }
  }

  private async ask(prompt: string | undefined, panes: PaneId[], settings: Settings, regenerate: boolean): Promise<void> {
    if (regenerate && panes.length === 0) {
      this.status('nothing to regenerate yet: send a prompt first', 'error');
      return;
    }
    this.post({ type: 'turn', prompt: prompt ?? '', panes, regenerate });
    const t0 = Date.now();
    const answers = regenerate ? await this.session.regenerate(settings, this.events()) : await this.session.ask(prompt ?? '', panes, settings, this.events());
    const took = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    this.log.info(`playground: ${answers.map((a) => `${a.pane} ${a.tokens ?? 0} tok (${a.stopReason})`).join(', ')} in ${took}`);
    // The status line said what the turn was waiting for (a level subset's LoRA export, on first use): replace it,
    // or its spinner keeps turning after every pane has answered.
    const failed = answers.filter((a) => a.stopReason === 'error').length;
    this.status(`${answers.length} answers in ${took}${failed ? ` (${failed} failed)` : ''} · ${this.engine}`, failed ? 'error' : 'info');
  }

  dispose(): void {
    this.session.dispose();
    for (const s of this.subs.splice(0)) s.dispose();
    this.disposedEmitter.fire();
    this.disposedEmitter.dispose();
  }
}

/** Open playground panels by run folder. */
export class Playgrounds implements vscode.Disposable {
  private readonly open = new Map<string, PlaygroundPanel>();

  constructor(private readonly extension: vscode.ExtensionContext, private readonly log: vscode.LogOutputChannel) {}

  get(source: string): PlaygroundPanel | undefined {
    return this.open.get(source);
  }

  createOrShow(source: string): PlaygroundPanel {
    const have = this.open.get(source);
    if (have) {
      have.panel.reveal();
      return have;
    }
    const assets = vscode.Uri.joinPath(this.extension.extensionUri, 'dist', 'webview');
    const panel = vscode.window.createWebviewPanel(PLAYGROUND_VIEW_TYPE, `Chat: ${path.basename(source)}`, vscode.ViewColumn.Active, {
      enableScripts: true, retainContextWhenHidden: true, localResourceRoots: [assets],
    });
    const p = new PlaygroundPanel(panel, source, this.extension, this.log);
    this.open.set(source, p);
    p.onDidDispose(() => this.open.delete(source));
    return p;
  }

  dispose(): void {
    for (const p of [...this.open.values()]) p.panel.dispose();
  }
}
