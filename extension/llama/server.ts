// server.ts — the playground server (dist/playground.js): node-llama-cpp (llama.cpp) in its own Node process, never
// in the extension host. The parent speaks protocol.ts over stdin/stdout; see client.ts for the parent side. It
// serves the chat playground, `hqlora generate` / `chat` and the GGUF export's verification (gguf/verify.ts).
//
// Compute: CUDA when node-llama-cpp's CUDA binary and a GPU are usable, else the CPU (HQLORA_PLAYGROUND_GPU=false
// forces the CPU); the first line says which. Only prebuilt binaries are used (build: "never"): nothing is downloaded
// or compiled at run time.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import type * as NodeLlamaCppModule from 'node-llama-cpp';
import type { Llama, LlamaContext, LlamaModel, Token } from 'node-llama-cpp';

import { checkGgufFile } from './ggufFile';
import { HqError } from '../core/errors';
import type {
  GenerateRequest, GenerateResult, HelloEvent, LogitsCase, Request, ServerMessage, VerifyRequest, VerifyResult,
} from './protocol';

type NodeLlamaCpp = typeof NodeLlamaCppModule;

function send(m: ServerMessage): void {
  process.stdout.write(`${JSON.stringify(m)}\n`);
}

class CodedError extends Error {
  constructor(message: string, readonly code: string, readonly file?: string) {
    super(message);
  }
}

let lib: NodeLlamaCpp;
let llama: Llama;
const models = new Map<string, Promise<LlamaModel>>();
const running = new Map<number, AbortController>();
/** Cancels that came before their generation started (it then stops before its first token). */
const cancelledEarly = new Set<number>();

/** Each GGUF is checked (header, size) and loaded once. */
function loadModel(file: string): Promise<LlamaModel> {
  let m = models.get(file);
  if (!m) {
    m = (async () => {
      await checkGgufFile(file);
      try {
        return await llama.loadModel({ modelPath: file, gpuLayers: llama.gpu === false ? 0 : 'auto' });
      } catch (e) {
        throw new CodedError(`llama.cpp cannot load ${file}: ${(e as Error).message}`, 'E_GGUF', file);
      }
    })();
    models.set(file, m);
    m.catch(() => models.delete(file));
  }
  return m;
}

/**
 * Below this many bytes of weights a context evaluates on one CPU thread. ggml's CPU graph meets every thread at a
 * barrier after each op; on a model this small an op is microseconds of work, so with two threads the barriers are
 * the whole cost, and on a busy machine each one waits for a descheduled thread: the verification of a 0.4 MiB
 * fixture took 4.7 s of which 12 ms remain on one thread (node-llama-cpp 3.21.1, 2 cores). The smallest published
 * models are hundreds of MiB, far above it.
 */
const ONE_THREAD_BELOW_BYTES = 32 * 1024 * 1024;

async function createContext(model: LlamaModel, contextSize: number, lora?: string, exact = false): Promise<LlamaContext> {
  if (lora) await checkGgufFile(lora);
  try {
    return await model.createContext({
      contextSize, sequences: 1, flashAttention: false,
      ...(llama.gpu === false && model.size < ONE_THREAD_BELOW_BYTES ? { threads: 1 } : {}),
      // The logits check keeps K and V in f32 (llama.cpp's default f16 cache would add its own rounding).
      ...(exact ? { experimentalKvCacheKeyType: 'F32' as const, experimentalKvCacheValueType: 'F32' as const } : {}),
      ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
    });
  } catch (e) {
    throw new CodedError(`llama.cpp cannot create a context for ${model.filename ?? 'the model'}${lora ? ` with the LoRA ${lora}` : ''}: ${(e as Error).message}`,
      'E_GGUF', lora);
  }
}

/** Teacher-forced next-token log-probabilities of every position, against ours (log-softmax rows in a file). */
async function logitsCase(c: LogitsCase, kept: Map<string, Float64Array>): Promise<VerifyResult['cases'][number]> {
  const model = await loadModel(c.model);
  const seq = c.ids[0]?.length ?? 0;
  const ctx = await createContext(model, Math.max(32, seq + 8), c.lora, true);
  const buf = readFileSync(c.referenceFile);
  const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  let max = 0;
  let sum = 0;
  let n = 0;
  const mine = new Float64Array(c.ids.length * seq * c.vocab);
  try {
    const sequence = ctx.getSequence();
    for (let r = 0; r < c.ids.length; r++) {
      await sequence.clearHistory();
      const row = c.ids[r] ?? [];
      const out = await sequence.controlledEvaluate(row.map((t) => [t as Token, { generateNext: { probabilities: true } }]));
      out.forEach((o, t) => {
        const probs = o?.next.probabilities;
        if (!probs) throw new CodedError(`no probabilities for row ${r} position ${t}`, 'E_INTERNAL');
        const base = (r * seq + t) * c.vocab;
        for (let v = 0; v < c.vocab; v++) {
          const lp = Math.log(probs.get(v as Token) ?? 0);
          mine[base + v] = lp;
          const d = Math.abs(lp - (ref[base + v] ?? 0));
          max = Math.max(max, Number.isFinite(d) ? d : Infinity);
          sum += d;
          n++;
        }
      });
    }
  } finally {
    await ctx.dispose();
  }
  kept.set(c.name, mine);
  const res: VerifyResult['cases'][number] = { name: c.name, max_abs_diff: max, mean_abs_diff: sum / Math.max(1, n), positions: n / Math.max(1, c.vocab) };
  const other = c.compareTo !== undefined ? kept.get(c.compareTo) : undefined;
  if (c.compareTo !== undefined && other) {
    let m = 0;
    let s = 0;
    for (let i = 0; i < mine.length; i++) {
      const d = Math.abs((mine[i] ?? 0) - (other[i] ?? 0));
      m = Math.max(m, Number.isFinite(d) ? d : Infinity);
      s += d;
    }
    res.vs = { case: c.compareTo, max_abs_diff: m, mean_abs_diff: s / Math.max(1, mine.length) };
  }
  return res;
}

async function verify(q: VerifyRequest): Promise<VerifyResult> {
  const model = await loadModel(q.tokenizerModel);
  const tokens = q.strings.map((s) => [...model.tokenize(s, true)].map(Number));
  const cases = [];
  const kept = new Map<string, Float64Array>();
  for (const c of q.cases) cases.push(await logitsCase(c, kept));
  return { tokens, addBos: model.tokens.shouldPrependBosToken, cases };
}

function hasChatTemplate(model: LlamaModel): boolean {
  const tok = (model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } }).tokenizer;
  return typeof tok?.chat_template === 'string' && tok.chat_template.length > 0;
}

/** A plain prompt from a history when the model has no chat template: the turns' texts, one after another. */
function plainPrompt(q: GenerateRequest): string {
  if (q.prompt !== undefined) return q.prompt;
  return (q.messages ?? []).map((m) => m.content).join('\n');
}

async function generate(q: GenerateRequest): Promise<GenerateResult> {
  const model = await loadModel(q.model);
  const contextSize = q.contextSize ?? Math.min(model.trainContextSize, 4096);
  const maxTokens = q.maxTokens ?? 256;
  const ctx = await createContext(model, contextSize, q.lora);
  const abort = new AbortController();
  running.set(q.id, abort);
  if (cancelledEarly.delete(q.id)) abort.abort();
  const t0 = performance.now();
  let ttft = -1;
  let count = 0;
  const sampling = {
    temperature: q.temperature ?? 0, ...(q.topK !== undefined ? { topK: q.topK } : {}),
    ...(q.topP !== undefined ? { topP: q.topP } : {}), ...(q.seed !== undefined ? { seed: q.seed } : {}),
  };
  const onToken = (text: string): void => {
    if (ttft < 0) ttft = performance.now() - t0;
    count++;
    send({ type: 'token', id: q.id, text });
  };
  const tooLong = (promptTokens: number): never => {
    throw new CodedError(`the prompt is ${promptTokens} tokens and up to ${maxTokens} new tokens are asked for, but the context holds ` +
      `${contextSize} tokens: shorten the prompt by ${promptTokens + maxTokens - contextSize} tokens or lower max tokens`,
    'E_PROMPT_TOO_LONG');
  };
  try {
    if (q.messages && hasChatTemplate(model)) {
      const session = new lib.LlamaChatSession({ contextSequence: ctx.getSequence(), autoDisposeSequence: false });
      const history = q.messages.slice(0, -1);
      const last = q.messages[q.messages.length - 1];
      if (!last || last.role !== 'user') throw new CodedError('the last message of a chat must be the user\'s', 'E_CONFIG');
      session.setChatHistory(history.map((m) => (m.role === 'assistant'
        ? { type: 'model' as const, response: [m.content] } : { type: m.role, text: m.content })));
      const promptTokens = model.tokenize(last.content).length;
      if (promptTokens + maxTokens > contextSize) tooLong(promptTokens);
      const r = await session.promptWithMeta(last.content, {
        ...sampling, maxTokens, signal: abort.signal, stopOnAbortSignal: true, onTextChunk: onToken,
      });
      const elapsed = (performance.now() - t0 - Math.max(0, ttft)) / 1000;
      return {
        text: r.responseText, tokens: count, promptTokens, format: 'chat-template', ttftMs: Math.max(0, ttft),
        stopReason: abort.signal.aborted ? 'cancelled' : r.stopReason === 'maxTokens' ? 'maxTokens' : 'eos',
        tokensPerSecond: count > 1 && elapsed > 0 ? (count - 1) / elapsed : 0,
      };
    }
    const text = plainPrompt(q);
    const ids = model.tokenize(text, true);
    const input = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? [model.tokens.bos, ...ids] : [...ids];
    if (input.length + maxTokens > contextSize) tooLong(input.length);
    const seq = ctx.getSequence();
    let out = '';
    let stop = 'maxTokens';
    const produced: Token[] = [];
    // yieldEogToken: without it node-llama-cpp ends the loop silently at an end-of-generation token, and an answer that
    // ended with EOS was reported as stopped by max tokens (the demo's tuned " gebwl": 6 of 16 tokens, "maxTokens").
    for await (const token of seq.evaluate(input, { ...sampling, yieldEogToken: true })) {
      if (abort.signal.aborted) {
        stop = 'cancelled';
        break;
      }
      if (model.isEogToken(token)) {
        stop = 'eos';
        break;
      }
      produced.push(token);
      // The text so far, re-detokenized: a character split over tokens is sent once it is complete.
      const full = model.detokenize(produced, false);
      if (!full.endsWith('\uFFFD') && full.length > out.length) {
        onToken(full.slice(out.length));
        out = full;
      }
      if (produced.length >= maxTokens) break;
    }
    const full = model.detokenize(produced, false);
    if (full.length > out.length) send({ type: 'token', id: q.id, text: full.slice(out.length) });
    const elapsed = (performance.now() - t0 - Math.max(0, ttft)) / 1000;
    return {
      text: full, tokens: produced.length, promptTokens: input.length, format: 'plain',
      stopReason: stop, ttftMs: Math.max(0, ttft), tokensPerSecond: produced.length > 1 && elapsed > 0 ? (produced.length - 1) / elapsed : 0,
    };
  } finally {
    running.delete(q.id);
    await ctx.dispose();
  }
}

async function handle(q: Request): Promise<void> {
  if (q.op === 'cancel') {
    const r = running.get(q.target);
    if (r) r.abort();
    else cancelledEarly.add(q.target);
    send({ type: 'result', id: q.id, result: { tokens: [], addBos: false, cases: [] } });
    return;
  }
  try {
    const result = q.op === 'verify' ? await verify(q) : await generate(q);
    send({ type: 'result', id: q.id, result });
  } catch (e) {
    if (e instanceof HqError) {
      send({ type: 'error', id: q.id, message: e.format(), code: 'E_GGUF', ...(e.where.file ? { file: e.where.file } : {}) });
      return;
    }
    const c = e as Partial<CodedError> & Error;
    send({ type: 'error', id: q.id, message: c.message, code: c.code ?? 'E_INTERNAL', ...(c.file ? { file: c.file } : {}) });
  }
}

/**
 * node-llama-cpp's package.json, found the way `import('node-llama-cpp')` finds the package: dist/node_modules in the
 * VSIX (scripts/stage-playground.mjs), the repository's node_modules in a checkout.
 */
function nodeLlamaCppPackageJson(): string {
  const tried = (require.resolve.paths('node-llama-cpp') ?? []).map((d) => path.join(d, 'node-llama-cpp', 'package.json'));
  const found = tried.find((f) => existsSync(f));
  if (!found) throw new Error(`node-llama-cpp's package.json is in none of: ${tried.join(', ')}`);
  return found;
}

async function main(): Promise<void> {
  lib = await import('node-llama-cpp');
  const forceCpu = process.env.HQLORA_PLAYGROUND_GPU === 'false';
  let note: string | undefined;
  try {
    llama = await lib.getLlama({ gpu: forceCpu ? false : 'auto', build: 'never', progressLogs: false, logLevel: lib.LlamaLogLevel.error });
  } catch (e) {
    note = `GPU binaries not usable (${(e as Error).message}); using the CPU`;
    llama = await lib.getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: lib.LlamaLogLevel.error });
  }
  if (llama.gpu === false && !note) note = forceCpu ? 'HQLORA_PLAYGROUND_GPU=false' : 'no usable GPU (CUDA/Vulkan) found';
  const pkg = JSON.parse(readFileSync(nodeLlamaCppPackageJson(), 'utf8')) as { version: string };
  const hello: HelloEvent = { type: 'hello', backend: llama.gpu === false ? 'cpu' : llama.gpu, nodeLlamaCppVersion: pkg.version, ...(note ? { note } : {}) };
  send(hello);
  const rl = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    let q: Request;
    try {
      q = JSON.parse(line) as Request;
    } catch {
      process.stderr.write(`playground: ignoring a line that is not JSON: ${line.slice(0, 80)}\n`);
      return;
    }
    // Cancels act at once; everything else runs one at a time.
    if (q.op === 'cancel') void handle(q);
    else queue = queue.then(() => handle(q));
  });
  rl.on('close', () => {
    void queue.then(async () => {
      await llama.dispose();
      process.exit(0);
    });
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`playground: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
