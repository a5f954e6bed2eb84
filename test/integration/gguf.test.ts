// gguf.test.ts — `hqlora export --format gguf` end to end on the three fixtures: the REAL native writer
// (hqlora.node), the REAL llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary, in the playground server process)
// and our forward and tokenizer. verify.json must pass: tokens equal, merged and base logits within the type's
// bound, base GGUF + LoRA GGUF equal to ours and to the merged GGUF. Then the bad inputs, each named in the message.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readGgufHeader } from '../../extension/gguf/file';
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
