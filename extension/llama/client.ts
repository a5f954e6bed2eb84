// client.ts — the parent side of the playground server (server.ts → dist/playground.js): spawns it as its own Node
// process (in VS Code: the extension host's runtime with ELECTRON_RUN_AS_NODE=1), in its own process group, with an
// explicit environment; sends protocol.ts requests and resolves their results. dispose() ends the whole group, so
// closing a panel or the CLI leaves no process behind. A crash rejects every pending request with one error that
// says so; the next request starts a fresh server.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import { HqError } from '../core/errors';
import type {
  GenerateRequest, GenerateResult, HelloEvent, ServerMessage, VerifyRequest, VerifyResult,
} from './protocol';

type Pending = { resolve: (r: unknown) => void; reject: (e: Error) => void; onToken?: (t: string) => void };

export interface PlaygroundClientOptions {
  /** The package root: it holds dist/playground.js, which finds node-llama-cpp in dist/node_modules (VSIX) or node_modules. */
  packageRoot: string;
  /** Runtime to start the server with (default process.execPath). */
  nodePath?: string;
  /** Extra environment (e.g. HQLORA_PLAYGROUND_GPU=false). */
  env?: NodeJS.ProcessEnv;
  /** Server stderr lines (logs). */
  onLog?: (line: string) => void;
}

export function playgroundScript(packageRoot: string): string {
  return path.join(packageRoot, 'dist', 'playground.js');
}

export class PlaygroundClient {
  private child: ChildProcess | undefined;
  private hello: Promise<HelloEvent> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private disposed = false;

  constructor(private readonly o: PlaygroundClientOptions) {}

  /** The server's pid while it runs (for tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the server if it is not running; resolves with its hello (backend: cuda | cpu ...). */
  start(): Promise<HelloEvent> {
    if (this.disposed) return Promise.reject(new HqError('the playground was closed'));
    if (this.hello && this.child && this.child.exitCode === null && this.child.signalCode === null) return this.hello;
    const script = playgroundScript(this.o.packageRoot);
    if (!existsSync(script)) {
      return Promise.reject(new HqError(`the playground server ${script} is missing`, { file: script }, 'run `npm run build`'));
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ELECTRON_RUN_AS_NODE: '1',
      ...(process.env.CUDA_VISIBLE_DEVICES !== undefined ? { CUDA_VISIBLE_DEVICES: process.env.CUDA_VISIBLE_DEVICES } : {}),
      ...(process.env.LD_LIBRARY_PATH !== undefined ? { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH } : {}),
      ...(process.env.HQLORA_PLAYGROUND_GPU !== undefined ? { HQLORA_PLAYGROUND_GPU: process.env.HQLORA_PLAYGROUND_GPU } : {}),
      NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true',
      ...this.o.env,
    };
    const child = spawn(this.o.nodePath ?? process.execPath, [script], {
      cwd: this.o.packageRoot, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true,
    });
    this.child = child;
    let stderrTail = '';
    readline.createInterface({ input: child.stderr }).on('line', (l) => {
      stderrTail = `${stderrTail}\n${l}`.slice(-2000);
      this.o.onLog?.(l);
    });
    this.hello = new Promise<HelloEvent>((resolve, reject) => {
      readline.createInterface({ input: child.stdout }).on('line', (line) => {
        let m: ServerMessage;
        try {
          m = JSON.parse(line) as ServerMessage;
        } catch {
          this.o.onLog?.(line);
          return;
        }
        if (m.type === 'hello') return resolve(m);
        const p = this.pending.get(m.id);
        if (!p) return;
        if (m.type === 'token') return p.onToken?.(m.text);
        this.pending.delete(m.id);
        if (m.type === 'result') p.resolve(m.result);
        else p.reject(new HqError(m.message, m.file ? { file: m.file } : {}, '', { cause: m.code }));
      });
      child.on('error', (e) => reject(new HqError(`the playground server could not start: ${e.message}`)));
      child.on('exit', (code, signal) => {
        if (this.child === child) this.child = undefined;
        const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const err = new HqError(`the playground server (llama.cpp) ${why}${stderrTail ? `:${stderrTail}` : ''}`, {},
          this.disposed ? '' : 'it restarts on the next request; if it keeps crashing, export the GGUF again and report the log');
        reject(err);
        for (const [id, p] of this.pending) {
          this.pending.delete(id);
          p.reject(err);
        }
      });
    });
    this.hello.catch(() => undefined);
    return this.hello;
  }

  private async request<T>(body: Record<string, unknown>, onToken?: (t: string) => void): Promise<{ id: number; done: Promise<T> }> {
    await this.start();
    const id = this.nextId++;
    const done = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject, ...(onToken ? { onToken } : {}) });
    });
    this.child?.stdin?.write(`${JSON.stringify({ ...body, id })}\n`);
    return { id, done };
  }

  async verify(q: Omit<VerifyRequest, 'id' | 'op'>): Promise<VerifyResult> {
    return (await this.request<VerifyResult>({ ...q, op: 'verify' })).done;
  }

  /** One answer; tokens stream through onToken; `signal` cancels (the result then has stopReason "cancelled"). */
  async generate(q: Omit<GenerateRequest, 'id' | 'op'>, onToken?: (t: string) => void, signal?: AbortSignal): Promise<GenerateResult> {
    const { id, done } = await this.request<GenerateResult>({ ...q, op: 'generate' }, onToken);
    const onAbort = (): void => {
      this.child?.stdin?.write(`${JSON.stringify({ id: this.nextId++, op: 'cancel', target: id })}\n`);
    };
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Ends the server's whole process group (SIGTERM, then SIGKILL after 2 s). */
  dispose(): void {
    this.disposed = true;
    const c = this.child;
    if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
    c.stdin?.end();
    try {
      process.kill(-c.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const t = setTimeout(() => {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 2000);
    t.unref();
    c.once('exit', () => clearTimeout(t));
  }
}
