// cli-export.test.ts — `hqlora merge | export | combine` end to end: the REAL dist/cli.js and hqlora.node
// (native/build/bin, or HQLORA_ADDON), the golden tiny-llama adapter (golden-adapter.ts) as input.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { writeGoldenAdapter } from './golden-adapter';
import { cli, root, runCli } from './helpers';

describe('hqlora merge / export / combine', () => {
  let tmp: string;
  let adapter: string;
  let adapter2: string;
  before(() => {
    assert.ok(existsSync(cli), `${cli} is missing: run \`npm run build\` first`);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hq-cli-export-'));
    adapter = path.join(tmp, 'adapter');
    adapter2 = path.join(tmp, 'adapter-final');
    writeGoldenAdapter(root, adapter);
    writeGoldenAdapter(root, adapter2, 'tiny-llama', 'final.');
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('merge writes a flat PEFT adapter, prints progress and a passing verification', async () => {
    const r = await runCli(['merge', adapter]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /verify: PASS max \|Δlogit\| \S+ mean \S+ \(tolerance \S+\)/);
    assert.match(r.stderr, /^merge +\d+\/14/m);
    const out = `${adapter}-peft`;
    const cfg = JSON.parse(readFileSync(path.join(out, 'adapter_config.json'), 'utf8')) as { r: number };
    assert.equal(cfg.r, 8);
    const rep = JSON.parse(readFileSync(path.join(out, 'verify.json'), 'utf8')) as { verification: { status: string } };
    assert.equal(rep.verification.status, 'pass');
  });

  it('merge --rank re-compresses by SVD and reports energy', async () => {
    const r = await runCli(['merge', adapter, '--rank', '3', '--out', path.join(tmp, 'r3'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as { rank: number; exact: boolean; svd: { min_retained_energy: number } };
    assert.equal(rep.rank, 3);
    assert.equal(rep.exact, false);
    assert.ok(rep.svd.min_retained_energy > 0 && rep.svd.min_retained_energy < 1);
  });

  it('export writes a verified merged model (fp32, dequantized base)', async () => {
    const out = path.join(tmp, 'merged');
    const r = await runCli(['export', adapter, '--base', 'dequantized', '--dtype', 'fp32', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /NF4 gap max/);
    assert.match(r.stdout, /verify: PASS/);
    assert.ok(existsSync(path.join(out, 'model.safetensors')) && existsSync(path.join(out, 'tokenizer.json')));
  });

  it('combine --mode concat is exact; a second run into the same --out needs --force', async () => {
    const out = path.join(tmp, 'comb');
    const args = ['combine', adapter, adapter2, '--mode', 'concat', '--weights', '0.5,1.5', '--out', out];
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /verify: PASS/);
    const again = await runCli(args);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists[\s\S]*--force/);
    assert.equal((await runCli([...args, '--force'])).code, 0);
  });

  it('bad input: a missing adapter names the path (exit 1); bad flags are usage errors (exit 2)', async () => {
    const missing = path.join(tmp, 'nope');
    const r = await runCli(['merge', missing]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(missing), r.stderr);
    assert.ok(!existsSync(`${missing}-peft`));
    assert.equal((await runCli(['merge', adapter, '--rank', 'x'])).code, 2);
    assert.equal((await runCli(['export', adapter, '--dtype', 'fp8'])).code, 2);
    assert.equal((await runCli(['combine', adapter, '--mode', 'svd'])).code, 2);   // no --out
  });
});
