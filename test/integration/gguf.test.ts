// gguf.test.ts — `hqlora export --format gguf` end to end on the three fixtures: the REAL native writer
// (hqlora.node), the REAL llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary, in the playground server process)
// and our forward and tokenizer. verify.json must pass: tokens equal, merged and base logits within the type's
// bound, base GGUF + LoRA GGUF equal to ours and to the merged GGUF. Then the bad inputs, each named in the message.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readGgufHeader } from '../../extension/llama/ggufFile';
import { loadAddon } from '../../extension/native/addon';
import { PlaygroundClient } from '../../extension/llama/client';
import { DEFAULT_SETTINGS, PlaygroundSession } from '../../extension/playground/session';
import type { GgufExportResult } from '../../extension/gguf/export';
import { writeGoldenAdapter } from './golden-adapter';
import { cli, root, runCli } from './helpers';

const env = { HQLORA_PLAYGROUND_GPU: 'false' };

describe('hqlora export --format gguf (verified by llama.cpp)', () => {
  let tmp: string;
  before(() => {
    assert.ok(existsSync(cli), `${cli} is missing: run \`npm run build\` first`);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hq-gguf-'));
    for (const m of ['tiny-llama', 'tiny-llama3', 'tiny-gemma']) writeGoldenAdapter(root, path.join(tmp, `ad-${m}`), m);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const cases: [string, string, number][] = [
    ['tiny-llama', 'f32', 1e-3], ['tiny-llama3', 'f32', 1e-3], ['tiny-gemma', 'f32', 1e-3], ['tiny-llama3', 'q8_0', 1e-1],
  ];
  for (const [model, type, bound] of cases) {
    it(`${model} ${type}: merged, base and LoRA GGUF pass llama.cpp's checks`, async () => {
      const out = path.join(tmp, `${model}-${type}`);
      const r = await runCli(['export', path.join(tmp, `ad-${model}`), '--format', 'gguf', '--type', type, '--out', out], env);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /verify: PASS \(llama\.cpp via node-llama-cpp 3\.21\.1, cpu\)/);
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
    assert.doesNotMatch(b.stderr, /gguf: publish/, 'the second call reuses the cached GGUF');
    const long = await runCli(['generate', run, '--prompt', 'x'.repeat(300)], env);
    assert.equal(long.code, 1);
    assert.match(long.stderr, /the prompt is 301 tokens and up to 256 new tokens are asked for, but the context holds 256 tokens: shorten the prompt by 301 tokens/);
  });

  it('playground: base, level subsets and tuned answer side by side; tuned equals hqlora generate; stop, crash and close', async () => {
    const run = path.join(tmp, 'run-done');
    const gen = await runCli(['generate', run, '--prompt', 'cfabz =>', '--max-tokens', '8', '--json'], env);
    assert.equal(gen.code, 0, gen.stderr);
    const want = (JSON.parse(gen.stdout) as { text: string }).text;
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
    const gen = await runCli(['generate', run, '--prompt', 'cfabz =>', '--max-tokens', '8', '--json'], env);
    const want = (JSON.parse(gen.stdout) as { text: string }).text;
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
