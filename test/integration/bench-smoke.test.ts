// bench-smoke.test.ts — the GPU benchmark harness (bench/gpu/bench.py) in its CPU smoke mode, with the real trainer:
// tokens/s comes from the tokens the trainer reports as trained, and a row the trainer truncated (rows longer than
// the model's max_position_embeddings) is marked INVALID and never printed as a ratio (issue 20). The peer needs
// torch, so the mismatch rule against the peer's token count is checked on bench.py's own functions.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { requireBuilds, root, trainer } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-bench-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

interface Row {
  system: string;
  seq: number;
  micro_batch: number;
  valid?: boolean;
  invalid_reason?: string;
  tokens_trained_per_step?: number;
  tokens_per_s?: number;
  step_s?: number;
  warnings?: string[];
}

function python(): string {
  const r = spawnSync('python3', ['--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, 'python3 is needed to run bench/gpu/bench.py (Debian: apt-get install python3)');
  return 'python3';
}

describe('bench/gpu/bench.py (CPU smoke mode)', () => {
  it('counts the trained tokens and marks a truncated row invalid, with no ratio', () => {
    const out = path.join(tmp, 'out');
    // tiny-llama's max_position_embeddings is 1024: the 1 x 1100 rows are clamped by the trainer (W_TRUNCATED).
    const r = spawnSync('bash', [path.join(root, 'bench', 'gpu', 'run.sh')], {
      cwd: root,
      encoding: 'utf8',
      env: {
        ...process.env,
        PYTHON: python(),
        HQ_TRAIN: trainer,
        DEVICE: 'cpu',
        PEER: '0',
        SHAPES: 'tiny-llama',
        CKPTS: '0',
        RANKS: '4,2',
        SEQS: '2x64 1x1100',
        WARMUP: '1',
        STEPS: '2',
        THREADS: '2',
        WORK: path.join(tmp, 'work'),
        OUT: out,
        HQ_COMMIT: 'test-commit',
      },
      timeout: 300_000,
    });
    assert.equal(r.status, 0, `bench.py failed:\n${r.stderr.slice(-3000)}`);
    const res = JSON.parse(readFileSync(path.join(out, 'bench.json'), 'utf8')) as { runs: Row[]; env: { commit: string } };
    assert.equal(res.env.commit, 'test-commit');
    const short = res.runs.find((x) => x.seq === 64);
    const long = res.runs.find((x) => x.seq === 1100);
    assert.ok(short && long, `both lengths measured: ${JSON.stringify(res.runs.map((x) => x.seq))}`);

    // 2 rows of 64 tokens, every token a target: 2 x 63 positions carry a loss (the first token predicts nothing).
    assert.equal(short.valid, true, JSON.stringify(short));
    assert.equal(short.tokens_trained_per_step, 2 * 63);
    assert.ok(short.step_s !== undefined && short.tokens_per_s !== undefined);
    assert.ok(Math.abs(short.tokens_per_s - 126 / short.step_s) / short.tokens_per_s < 0.01);

    assert.equal(long.valid, false, JSON.stringify(long));
    assert.match(long.invalid_reason ?? '', /W_TRUNCATED/);
    assert.ok((long.warnings ?? []).some((w) => w.startsWith('W_TRUNCATED')));
    // Clamped to 1024 positions: 1023 trained tokens, not the 1099 that 1 x 1100 would have.
    assert.equal(long.tokens_trained_per_step, 1023);

    const md = readFileSync(path.join(out, 'bench.md'), 'utf8');
    assert.match(md, /## 2 x 64 tokens/);
    assert.match(md, /## 1 x 1100 tokens/);
    const longTable = md.slice(md.indexOf('## 1 x 1100 tokens'));
    const invalidLine = longTable.split('\n').find((l) => l.includes('INVALID'));
    assert.ok(invalidLine, `the 1100-token row is printed as INVALID:\n${longTable}`);
    assert.doesNotMatch(invalidLine, /\d\.\d\dx/, 'an invalid row shows no ratio');
  });

  it('marks our row invalid when its trained tokens differ from the peer\'s, and prints no ratio for it', () => {
    const script = [
      'import sys',
      `sys.path.insert(0, ${JSON.stringify(path.join(root, 'bench', 'gpu'))})`,
      'import bench',
      'base = dict(shape="tiny-llama", ckpt=0, micro_batch=1, seq=512, step_s=0.5)',
      'bench.RESULTS["runs"] = [',
      '  dict(base, system="hqlora", ranks="64", tokens_trained_per_step=500, tokens_per_s=1000.0),',
      '  dict(base, system="hqlora", ranks="32,8,8,8,8", tokens_trained_per_step=511, tokens_per_s=1022.0),',
      '  dict(base, system="peft", ranks="64", tokens_trained_per_step=511, tokens_per_s=1022.0),',
      ']',
      'bench.check_validity()',
      'import json',
      'print(json.dumps([r.get("valid") for r in bench.RESULTS["runs"]]))',
      'print("\\n".join(bench.table(1, 512)))',
    ].join('\n');
    const r = spawnSync(python(), ['-c', script], { cwd: root, encoding: 'utf8', env: { ...process.env, OUT: '' } });
    assert.equal(r.status, 0, r.stderr);
    const [flags, ...table] = r.stdout.trim().split('\n');
    assert.deepEqual(JSON.parse(flags ?? "null"), [false, true, true]);
    const r64 = table.find((l) => l.includes('H-QLoRA | 64 |'));
    const hier = table.find((l) => l.includes('H-QLoRA | 32,8,8,8,8 |'));
    assert.match(r64 ?? '', /INVALID: trained 500 tokens per step, the peer 511/);
    assert.match(hier ?? '', /\| 1\.00x \|$/);
  });
});
