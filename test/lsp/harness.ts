// harness.ts — the language server in-process, driven by a real JSON-RPC client over a pair of PassThrough streams
// (the same vscode-jsonrpc framing as the IPC/stdio transports). Waiting is event-driven with a deadline, never a
// sleep: `diagnostics(uri, version)` resolves on the publishDiagnostics for that document version.
import { PassThrough } from 'node:stream';
import { pathToFileURL } from 'node:url';

import { type MessageConnection, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import type { Diagnostic, PublishDiagnosticsParams } from 'vscode-languageserver';
import { createConnection } from 'vscode-languageserver/node';

import { type ServerOptions, startServer } from '../../extension/lsp/service';

export function fileUri(p: string): string {
  return pathToFileURL(p).href;
}

export class LspHarness {
  private readonly published = new Map<string, PublishDiagnosticsParams[]>();
  private readonly waiters = new Set<() => void>();
  private readonly versions = new Map<string, number>();

  private constructor(readonly client: MessageConnection, private readonly dispose: () => void) {
    client.onNotification('textDocument/publishDiagnostics', (p: PublishDiagnosticsParams) => {
      const list = this.published.get(p.uri) ?? [];
      list.push(p);
      this.published.set(p.uri, list);
      for (const w of [...this.waiters]) w();
    });
    client.onNotification('window/logMessage', () => undefined);
  }

  static async start(opts: ServerOptions = {}): Promise<LspHarness> {
    const c2s = new PassThrough();
    const s2c = new PassThrough();
    const server = createConnection(new StreamMessageReader(c2s), new StreamMessageWriter(s2c));
    startServer(server, { gpus: Promise.resolve(null), ...opts });
    server.listen();
    const client = createMessageConnection(new StreamMessageReader(s2c), new StreamMessageWriter(c2s));
    client.listen();
    const h = new LspHarness(client, () => {
      client.dispose();
      server.dispose();
      c2s.destroy();
      s2c.destroy();
    });
    await client.sendRequest('initialize', { processId: null, rootUri: null, capabilities: {} });
    await client.sendNotification('initialized', {});
    return h;
  }

  async open(uri: string, text: string): Promise<number> {
    this.versions.set(uri, 1);
    await this.client.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'hqlora-config', version: 1, text } });
    return 1;
  }

  /** Replaces the whole text (a full-document change); returns the new version. */
  async change(uri: string, text: string): Promise<number> {
    const v = (this.versions.get(uri) ?? 1) + 1;
    this.versions.set(uri, v);
    await this.client.sendNotification('textDocument/didChange', { textDocument: { uri, version: v }, contentChanges: [{ text }] });
    return v;
  }

  async close(uri: string): Promise<void> {
    await this.client.sendNotification('textDocument/didClose', { textDocument: { uri } });
  }

  /** Every publishDiagnostics received for `uri`, in order. */
  publishes(uri: string): PublishDiagnosticsParams[] {
    return this.published.get(uri) ?? [];
  }

  /** The diagnostics published for `uri` at `version` (default: the latest version sent). */
  diagnostics(uri: string, version = this.versions.get(uri) ?? 1, timeoutMs = 20000): Promise<Diagnostic[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = this.publishes(uri).find((p) => p.version === version);
        if (!hit) return false;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve(hit.diagnostics);
        return true;
      };
      const waiter = (): void => void check();
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no diagnostics for ${uri} version ${version} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(waiter);
      check();
    });
  }

  /** Opens `text` and returns its first diagnostics. */
  async diagnose(uri: string, text: string): Promise<Diagnostic[]> {
    if (this.versions.has(uri)) return this.diagnostics(uri, await this.change(uri, text));
    return this.diagnostics(uri, await this.open(uri, text));
  }

  request<R>(method: string, params: unknown): Promise<R> {
    return this.client.sendRequest<R>(method, params);
  }

  stop(): void {
    this.dispose();
  }
}
