// gguf.test.ts — `hqlora export --format gguf` end to end on the fixtures: the REAL native writer (hqlora.node), the
// REAL llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary, in the playground server process) and our forward and
// tokenizer. verify.json must pass: tokens equal, merged and base logits within the type's bound, base GGUF + LoRA
// GGUF equal to ours and to the merged GGUF. Then generate, the playground, chat and the bad inputs.
// Cost: one export goes through the CLI (its wiring and summary); the others run exportGgufVerified in this process
// against ONE playground server for the whole file (`shared`). The CLI, the playground session and the chat start
// their own servers, as they do for users; hqlora generate's greedy answer is computed once and reused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readGgufHeader } from '../../extension/llama/ggufFile';
import { type GgufExportOptions, loadAddon } from '../../extension/native/addon';
import { PlaygroundClient } from '../../extension/llama/client';
import { DEFAULT_SETTINGS, PlaygroundSession } from '../../extension/playground/session';
import { exportGgufVerified, type GgufExportResult } from '../../extension/gguf/export';
import { ROUNDING_FACTOR, logitBound } from '../../extension/gguf/verify';
import { writeGoldenAdapter } from './golden-adapter';
import { cli, root, runCli } from './helpers';

const env = { HQLORA_PLAYGROUND_GPU: 'false' };

/** The one playground server of the in-process exports of this file, started on first use. */
let shared: PlaygroundClient | undefined;
const sharedClient = (): PlaygroundClient => (shared ??= new PlaygroundClient({ packageRoot: root, env }));
after(() => shared?.dispose());

/** exportGgufVerified in this process, verified through the shared server. */
async function exportInProcess(addon: ReturnType<typeof loadAddon>, options: GgufExportOptions): Promise<GgufExportResult> {
  return exportGgufVerified({ addon, packageRoot: root, cancel: new addon.CancelToken(), client: sharedClient(), options });
}

describe('hqlora export --format gguf (verified by llama.cpp)', () => {
  let tmp: string;
  let addon: ReturnType<typeof loadAddon>;
  /** hqlora generate's greedy answer on run-done (the generate test), which the playground and chat must repeat. */
  let want: string | undefined;
  before(() => {
    assert.ok(existsSync(cli), `${cli} is missing: run \`npm run build\` first`);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hq-gguf-'));
    addon = loadAddon(root);
    for (const m of ['tiny-llama', 'tiny-llama3', 'tiny-gemma']) writeGoldenAdapter(root, path.join(tmp, `ad-${m}`), m);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  // The first through the CLI (exit code, summary line, verify.json on disk), the others in this process.
  const cases: [string, 'f32' | 'q8_0', number, 'cli' | 'in-process'][] = [
    ['tiny-llama', 'f32', 1e-3, 'cli'], ['tiny-llama3', 'f32', 1e-3, 'in-process'], ['tiny-gemma', 'f32', 1e-3, 'in-process'],
    ['tiny-llama3', 'q8_0', 1e-1, 'in-process'],
  ];
  for (const [model, type, bound, how] of cases) {
    it(`${model} ${type} (${how}): merged, base and LoRA GGUF pass llama.cpp's checks`, async () => {
      const out = path.join(tmp, `${model}-${type}`);
      if (how === 'cli') {
        const r = await runCli(['export', path.join(tmp, `ad-${model}`), '--format', 'gguf', '--type', type, '--out', out], env);
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.match(r.stdout, /verify: PASS \(llama\.cpp via node-llama-cpp 3\.21\.1, cpu\)/);
      } else {
        await exportInProcess(addon, { source: path.join(tmp, `ad-${model}`), out, type });
      }
      const rep = JSON.parse(readFileSync(path.join(out, 'verify.json'), 'utf8')) as GgufExportResult;
      const v = rep.verification;
      assert.equal(v.status, 'pass');
      assert.equal(v.tokens?.mismatches.length, 0);
      assert.ok((v.tokens?.equal ?? 0) >= 14, `${v.tokens?.equal} strings compared`);
      assert.deepEqual(v.tokens?.add_bos, { ours: true, llama_cpp: true });
      assert.equal(v.logits?.tolerance, bound);
      assert.equal(v.logits?.positions, 48);
      for (const d of [v.logits?.merged, v.logits?.base, v.adapter?.vs_ours, v.adapter?.vs_merged_gguf]) {
        assert.ok(d && d.max_abs_diff <= bound && Number.isFinite(d.max_abs_diff), JSON.stringify(d));
      }
      // The files are what llama.cpp's converter writes: architecture, type, tensor names, LoRA metadata.
      const merged = await readGgufHeader(path.join(out, `model-${type}.gguf`));
      assert.equal(merged.metadata.get('general.architecture'), model === 'tiny-gemma' ? 'gemma' : 'llama');
      const names = merged.tensors.map((t) => t.name);
      assert.ok(names.includes('blk.1.attn_q.weight') && names.includes('token_embd.weight'));
      assert.equal(names.includes('output.weight'), model === 'tiny-llama');   // tied elsewhere
      assert.equal(names.includes('rope_freqs.weight'), model === 'tiny-llama3');
      const q = merged.tensors.find((t) => t.name === 'blk.0.attn_q.weight');
      assert.deepEqual(q?.shape, [64, model === 'tiny-gemma' ? 128 : 64]);   // ne = [in, out]
      assert.equal(q?.type, type === 'q8_0' ? 8 : 0);
      const lora = await readGgufHeader(path.join(out, `adapter-${type === 'f32' ? 'f32' : 'f16'}.gguf`));
      assert.equal(lora.metadata.get('general.type'), 'adapter');
      assert.equal(lora.metadata.get('adapter.type'), 'lora');
      assert.equal(lora.metadata.get('adapter.lora.alpha'), 8);
      assert.deepEqual(lora.tensors.find((t) => t.name === 'blk.0.attn_q.weight.lora_a')?.shape, [64, 8]);
      assert.deepEqual(lora.tensors.find((t) => t.name === 'blk.0.attn_q.weight.lora_b')?.shape, [8, model === 'tiny-gemma' ? 128 : 64]);
      assert.match(readFileSync(path.join(out, 'Modelfile'), 'utf8'), /^FROM \.\/base-.*\.gguf\nADAPTER \.\/adapter-.*\.gguf$/m);
      assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('.tmp-')), []);
    });
  }

  it('generate: the greedy answer streams, is reproducible and equals --json; a prompt over the context is refused', async () => {
    const run = path.join(tmp, 'run-done');
    writeGoldenAdapter(root, path.join(run, 'adapter'), 'tiny-llama');
    const args = ['generate', run, '--prompt', 'cfabz =>', '--max-tokens', '8'];
    const a = await runCli(args, env);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stderr, /\[8 tokens, maxTokens, TTFT \d+ ms, [\d.]+ tok\/s, plain\]/);
    assert.ok(existsSync(path.join(run, 'gguf-dequantized-f16', 'verify.json')), 'the GGUF is cached in the run folder');
    const b = await runCli([...args, '--json'], env);
    assert.equal(b.code, 0, b.stderr);
    const r = JSON.parse(b.stdout) as { text: string; tokens: number; stopReason: string };
    assert.equal(`${r.text}\n`, a.stdout);
    assert.equal(r.tokens, 8);
    want = r.text;
    assert.doesNotMatch(b.stderr, /gguf: publish/, 'the second call reuses the cached GGUF');
    const long = await runCli(['generate', run, '--prompt', 'x'.repeat(300)], env);
    assert.equal(long.code, 1);
    assert.match(long.stderr, /the prompt is 301 tokens and up to 256 new tokens are asked for, but the context holds 256 tokens: shorten the prompt by 301 tokens/);
  });

  it('playground: base, level subsets and tuned answer side by side; tuned equals hqlora generate; stop, crash and close', async () => {
    const run = path.join(tmp, 'run-done');
    assert.ok(want !== undefined, 'the generate test ran first');
    const s = new PlaygroundSession({ addon: loadAddon(root), packageRoot: root, source: run, env });
    try {
      await s.prepare();
      assert.deepEqual(s.panes().map((p) => p.id), ['base', 'tuned', 'L1', 'L2']);
      assert.deepEqual(s.defaultPanes(), ['base', 'L1', 'tuned']);
      assert.equal(s.chatTemplate, false);
      const streamed = new Map<string, string>();
      const ev = { onToken: (p: string, t: string) => streamed.set(p, (streamed.get(p) ?? '') + t), onAnswer: () => undefined };
      const settings = { ...DEFAULT_SETTINGS, maxTokens: 8 };
      const answers = await s.ask('cfabz =>', ['base', 'L1', 'L2', 'tuned'], settings, ev);
      for (const a of answers) {
        assert.equal(a.stopReason, 'maxTokens', `${a.pane}: ${a.error ?? ''}`);
        assert.equal(a.tokens, 8);
        assert.equal(streamed.get(a.pane), a.text, `${a.pane}: the streamed tokens make the answer`);
        assert.ok((a.ttftMs ?? -1) >= 0 && (a.tokensPerSecond ?? 0) > 0);
      }
      assert.equal(answers[3]?.text, want, 'the tuned pane\'s greedy answer is hqlora generate\'s');
      // Level subsets: base GGUF + the LoRA of levels 1..n (ranks 4, 2, 2 -> 4 and 6), cached beside the run's GGUF.
      for (const [n, rank] of [[1, 4], [2, 6]] as const) {
        const h = await readGgufHeader(await s.levelLora(n));
        assert.deepEqual(h.tensors.find((t) => t.name === 'blk.0.attn_q.weight.lora_a')?.shape, [64, rank]);
        assert.equal(h.metadata.get('adapter.lora.alpha'), rank);
      }
      assert.ok(existsSync(path.join(run, 'gguf-dequantized-f16-L1', 'verify.json')));
      // Regenerate (greedy) gives the same answers again; the history holds one user turn per pane.
      const again = await s.regenerate(settings, ev);
      assert.deepEqual(again.map((a) => a.text), answers.map((a) => a.text));
      assert.equal(s.markdown().match(/\*\*User:\*\*/g)?.length, 4);
      // Stop: the running answer ends at once and the panes not started are skipped.
      let first = true;
      const stopping = s.ask('abc', ['base', 'tuned'], { ...settings, maxTokens: 200 }, { onToken: () => { if (first) { first = false; s.stop(); } }, onAnswer: () => undefined });
      const stopped = await stopping;
      assert.deepEqual(stopped.map((a) => a.stopReason), ['cancelled', 'cancelled']);
      assert.ok((stopped[0]?.tokens ?? 99) < 200);
      // A crash of the server is reported in the pane; the next prompt restarts it.
      const pid = s.client.pid;
      assert.ok(pid);
      const crashed = s.ask('abc', ['base', 'tuned'], settings, { onToken: () => { if (s.client.pid === pid) process.kill(pid, 'SIGKILL'); }, onAnswer: () => undefined });
      const c = await crashed;
      assert.equal(c[0]?.stopReason, 'error');
      assert.match(c[0]?.error ?? '', /playground server \(llama\.cpp\) was killed by SIGKILL/);
      assert.equal(c[1]?.stopReason, 'maxTokens', 'the next pane restarted the server');
      assert.notEqual(s.client.pid, pid);
    } finally {
      s.dispose();
    }
  });

  it('hqlora chat in a terminal (tmux): streams the greedy answer, Ctrl-C stops an answer, Ctrl-D ends', async () => {
    const run = path.join(tmp, 'run-done');
    assert.ok(want !== undefined, 'the generate test ran first');
    const sock = `hq-chat-${process.pid}`;
    const tmux = (...a: string[]): string => execFileSync('tmux', ['-L', sock, ...a], { encoding: 'utf8' });
    const screen = (): string => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'chat');
    const waitFor = async (re: RegExp, what: string): Promise<string> => {
      for (let i = 0; i < 1200; i++) {
        const s = screen();
        if (re.test(s)) return s;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out waiting for ${what}:\n${screen()}`);
    };
    tmux('new-session', '-d', '-s', 'chat', '-x', '220', '-y', '60',
      `env HQLORA_PLAYGROUND_GPU=false ${process.execPath} ${cli} chat ${run} --max-tokens 8; echo CHAT-EXIT-$?; sleep 60`);
    try {
      await waitFor(/llama\.cpp on cpu; no chat template: plain prompts[\s\S]*you> $/m, 'the prompt');
      tmux('send-keys', '-t', 'chat', '-l', 'cfabz =>');
      tmux('send-keys', '-t', 'chat', 'Enter');
      const first = await waitFor(/\[8 tokens, maxTokens, TTFT \d+ ms/, 'the first answer');
      const answer = first.slice(first.indexOf('model> ') + 7, first.lastIndexOf('\n[8 tokens'));
      assert.equal(answer, want, 'the greedy answer is hqlora generate\'s');
      tmux('send-keys', '-t', 'chat', '-l', 'abc');
      tmux('send-keys', '-t', 'chat', 'Enter', 'C-c');
      const stopped = await waitFor(/\[\d+ tokens, stopped, /, 'the stopped answer');
      assert.ok(Number(/\[(\d+) tokens, stopped, /.exec(stopped)?.[1]) < 8, 'Ctrl-C stopped the answer before its 8 tokens');
      tmux('send-keys', '-t', 'chat', 'C-d');
      await waitFor(/CHAT-EXIT-0/, 'the exit');
    } finally {
      tmux('kill-server');
    }
  });

  it('playground server: 10 start/close cycles leave no process behind', async () => {
    const pids: number[] = [];
    for (let i = 0; i < 10; i++) {
      const c = new PlaygroundClient({ packageRoot: root, env });
      const hello = await c.start();
      assert.equal(hello.backend, 'cpu');
      assert.ok(c.pid);
      pids.push(c.pid);
      c.dispose();
    }
    const alive = (pid: number): boolean => { try { process.kill(-pid, 0); return true; } catch { return false; } };
    for (let t = 0; t < 50 && pids.some(alive); t++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(pids.filter(alive), [], 'every server process group has ended');
  });

  it('a truncated or foreign GGUF is named with what is wrong', async () => {
    const good = path.join(tmp, 'tiny-llama-f32', 'model-f32.gguf');
    const bytes = readFileSync(good);
    const cut = path.join(tmp, 'cut.gguf');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 1000));
    await assert.rejects(readGgufHeader(cut), (e: Error) => e.message.includes(cut) && /cut short/.test(e.message));
    const headerOnly = path.join(tmp, 'header.gguf');
    writeFileSync(headerOnly, bytes.subarray(0, 200));
    await assert.rejects(readGgufHeader(headerOnly), (e: Error) => e.message.includes(headerOnly) && /header ends early/.test(e.message));
    const foreign = path.join(tmp, 'foreign.gguf');
    writeFileSync(foreign, readFileSync(path.join(root, 'test', 'fixtures', 'models', 'tiny-gemma', 'model.safetensors')));
    await assert.rejects(readGgufHeader(foreign), (e: Error) => e.message.includes(foreign) && /does not start with "GGUF"/.test(e.message));
  });

  it('a run without a completed adapter is refused, naming the folder; nothing is written', async () => {
    const run = path.join(tmp, 'run-unfinished');
    writeFileSync(path.join(tmp, 'placeholder'), '');
    rmSync(run, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(path.join(run, 'checkpoints'), { recursive: true }));
    const r = await runCli(['export', run, '--format', 'gguf'], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} holds no completed adapter`));
    assert.deepEqual(readdirSync(run), ['checkpoints']);
  });

  it('an existing output is kept unless --force; bad options are usage errors', async () => {
    const out = path.join(tmp, 'tiny-llama-f32');
    const r = await runCli(['export', path.join(tmp, 'ad-tiny-llama'), '--format', 'gguf', '--type', 'f32', '--out', out], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already exists/);
    const u = await runCli(['export', path.join(tmp, 'ad-tiny-llama'), '--format', 'gguf', '--type', 'q4'], env);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /--type must be one of f16, f32, bf16, q8_0/);
  });
});

// The families of issue 15, each exported and verified in this process (the native writer through hqlora.node, the
// verification against one playground server for all of them), f32 so that llama.cpp's own arithmetic is what is
// measured. Each case checks what its family adds to the file, as llama.cpp's converter writes it.
describe('GGUF export of the model families (issue 15), verified by llama.cpp', () => {
  let tmp: string;
  let addon: ReturnType<typeof loadAddon>;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hq-gguf-fam-'));
    addon = loadAddon(root);
    // Mistral with sliding_window null (Mistral 7B v0.2/v0.3): what llama.cpp's llama architecture computes.
    const full = path.join(tmp, 'tiny-mistral-full');
    cpSync(path.join(root, 'test', 'fixtures', 'models', 'tiny-mistral'), full, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(full, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(full, 'config.json'), JSON.stringify({ ...cfg, sliding_window: null }));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const exportF32 = async (model: string, o: { baseModel?: string; verify?: boolean; name?: string } = {}): Promise<{ rep: GgufExportResult; out: string }> => {
    const source = path.join(tmp, `ad-${model}`);
    if (!existsSync(source)) writeGoldenAdapter(root, source, model);
    const out = path.join(tmp, `${o.name ?? model}-f32`);
    const rep = await exportInProcess(addon, {
      source, out, type: 'f32', ...(o.baseModel ? { baseModel: o.baseModel } : {}), ...(o.verify === false ? { verify: false } : {}),
    });
    return { rep, out };
  };
  const verified = (rep: GgufExportResult, arch: string): void => {
    const v = rep.verification;
    assert.equal(rep.architecture, arch);
    assert.equal(v.status, 'pass', JSON.stringify(v));
    assert.equal(v.tokens?.mismatches.length, 0);
    assert.equal(v.logits?.tolerance, logitBound('f32', arch));
    assert.equal(v.logits?.positions, 48);
    for (const d of [v.logits?.merged, v.logits?.base, v.adapter?.vs_ours, v.adapter?.vs_merged_gguf]) {
      assert.ok(d && d.max_abs_diff <= (v.logits?.tolerance ?? 0) && Number.isFinite(d.max_abs_diff), JSON.stringify(d));
    }
  };
  const header = async (out: string, file = 'model-f32.gguf'): Promise<{ meta: Map<string, unknown>; shape: (n: string) => number[] | undefined; names: string[] }> => {
    const h = await readGgufHeader(path.join(out, file));
    return { meta: h.metadata, shape: (n) => h.tensors.find((t) => t.name === n)?.shape, names: h.tensors.map((t) => t.name) };
  };
  const near = (v: unknown, want: number): void => assert.ok(typeof v === 'number' && Math.abs(v - want) < 1e-5 * Math.max(1, want), `${String(v)} vs ${want}`);

  it('qwen2: q/k/v biases as attn_{q,k,v}.bias; untied and tied (no output.weight) embeddings', async () => {
    for (const model of ['tiny-qwen2', 'tiny-qwen2-tied']) {
      const { rep, out } = await exportF32(model);
      verified(rep, 'qwen2');
      const h = await header(out);
      assert.deepEqual(h.shape('blk.0.attn_q.bias'), [64]);
      assert.deepEqual(h.shape('blk.1.attn_v.bias'), [32]);
      assert.equal(h.names.includes('output.weight'), model === 'tiny-qwen2');
      near(h.meta.get('qwen2.rope.freq_base'), 1e6);
    }
  });

  it('qwen3: attn_q_norm / attn_k_norm over head_dim, explicit key_length', async () => {
    const { rep, out } = await exportF32('tiny-qwen3');
    verified(rep, 'qwen3');
    const h = await header(out);
    assert.deepEqual(h.shape('blk.0.attn_q_norm.weight'), [32]);
    assert.deepEqual(h.shape('blk.0.attn_k_norm.weight'), [32]);
    assert.deepEqual(h.shape('blk.0.attn_q.weight'), [64, 128]);
    assert.equal(h.meta.get('qwen3.attention.key_length'), 32);
  });

  it('mistral: architecture llama with q/k permuted; a window shorter than the context is a warning (llama.cpp has none)', async () => {
    const { rep, out } = await exportF32('tiny-mistral', { baseModel: path.join(tmp, 'tiny-mistral-full'), name: 'mistral-full' });
    verified(rep, 'llama');
    assert.equal(rep.warnings, undefined);
    assert.equal((await header(out)).meta.get('general.architecture'), 'llama');
    const w = await exportF32('tiny-mistral', { verify: false });
    assert.match(w.rep.warnings?.[0] ?? '', /llama\.cpp's llama architecture has no sliding-window attention .*beyond 5 tokens \(.*tiny-mistral\/config\.json sliding_window\)/);
  });

  it('gemma2: post_attention_norm / post_ffw_norm (+1 as the converter stores them), both soft-caps, the sliding window and its layer period', async () => {
    const { rep, out } = await exportF32('tiny-gemma2');
    verified(rep, 'gemma2');
    const h = await header(out);
    for (const n of ['attn_norm', 'post_attention_norm', 'ffn_norm', 'post_ffw_norm']) assert.deepEqual(h.shape(`blk.1.${n}.weight`), [64], n);
    assert.equal(h.names.includes('output.weight'), false);
    near(h.meta.get('gemma2.attn_logit_softcapping'), 3.2);
    near(h.meta.get('gemma2.final_logit_softcapping'), 1.9);
    assert.equal(h.meta.get('gemma2.attention.sliding_window'), 5);
    assert.equal(h.meta.get('gemma2.attention.sliding_window_pattern'), 2);
  });

  it('gemma3: q/k norms, the local layers\' rope base, linear rope scaling of the global layers, the sliding window', async () => {
    const { rep, out } = await exportF32('tiny-gemma3');
    verified(rep, 'gemma3');
    const h = await header(out);
    assert.deepEqual(h.shape('blk.0.attn_q_norm.weight'), [32]);
    assert.deepEqual(h.shape('blk.0.post_ffw_norm.weight'), [64]);
    near(h.meta.get('gemma3.rope.freq_base'), 1e6);
    near(h.meta.get('gemma3.rope.freq_base_swa'), 1e4);
    assert.equal(h.meta.get('gemma3.rope.scaling.type'), 'linear');
    near(h.meta.get('gemma3.rope.scaling.factor'), 8);
    assert.equal(h.meta.get('gemma3.attention.sliding_window'), 5);
    assert.equal(h.meta.get('gemma3.attention.sliding_window_pattern'), 2);
    assert.equal(h.meta.get('gemma3.final_logit_softcapping'), undefined);
  });

  it('f16: every family within the bound derived from rounding its weights to f16 (verify.ts ROUNDING_FACTOR)', async () => {
    const fams: [string, string, string?][] = [
      ['tiny-qwen2', 'qwen2'], ['tiny-qwen2-tied', 'qwen2'], ['tiny-qwen3', 'qwen3'], ['tiny-mistral', 'llama', path.join(tmp, 'tiny-mistral-full')],
      ['tiny-gemma2', 'gemma2'], ['tiny-gemma3', 'gemma3'], ['tiny-phi3', 'phi3'],
    ];
    for (const [model, arch, baseModel] of fams) {
      const source = path.join(tmp, `ad-${model}`);
      if (!existsSync(source)) writeGoldenAdapter(root, source, model);
      const rep = await exportInProcess(addon, { source, out: path.join(tmp, `${model}-f16`), type: 'f16', ...(baseModel ? { baseModel } : {}) });
      const v = rep.verification;
      const r = v.logits?.rounding;
      assert.equal(v.status, 'pass', `${model}: ${JSON.stringify(v.logits)} ${JSON.stringify(v.adapter)}`);
      assert.ok(r && r.type === 'f16' && r.merged > 0 && r.f32_bound === logitBound('f32', arch), `${model}: ${JSON.stringify(r)}`);
      assert.equal(v.logits?.tolerance, r.f32_bound + ROUNDING_FACTOR * Math.max(r.merged, r.base ?? 0));
    }
  });

  it('phi3: fused attn_qkv and ffn_up (gate + up), LongRoPE factors, the LoRA of a fused tensor block-diagonal', async () => {
    const { rep, out } = await exportF32('tiny-phi3');
    verified(rep, 'phi3');
    const h = await header(out);
    assert.deepEqual(h.shape('blk.0.attn_qkv.weight'), [64, 128]);   // q 64 + k 32 + v 32 rows
    assert.deepEqual(h.shape('blk.0.ffn_up.weight'), [64, 256]);     // gate 128 + up 128 rows
    assert.equal(h.names.some((n) => /attn_q\.|ffn_gate/.test(n)), false);
    assert.deepEqual(h.shape('rope_factors_long.weight'), [8]);
    assert.deepEqual(h.shape('rope_factors_short.weight'), [8]);
    assert.equal(h.meta.get('phi3.rope.scaling.original_context_length'), 8);
    near(h.meta.get('phi3.rope.scaling.attn_factor'), Math.sqrt(1 + Math.log(8) / Math.log(8)));
    // llama.cpp keys token attributes on a name containing "phi3"; this vocabulary lacks <|endoftext|>.
    assert.equal(h.meta.get('general.name'), 'tiny-phi_3 + H-QLoRA ad-tiny-phi_3');
    const lora = await header(out, 'adapter-f32.gguf');
    assert.deepEqual(lora.shape('blk.0.attn_qkv.weight.lora_a'), [64, 24]);   // 3 modules × rank 8
    assert.deepEqual(lora.shape('blk.0.attn_qkv.weight.lora_b'), [24, 128]);
    assert.deepEqual(lora.shape('blk.0.ffn_up.weight.lora_a'), [64, 16]);
    assert.deepEqual(lora.shape('blk.0.attn_output.weight.lora_a'), [64, 8]);
  });
});
