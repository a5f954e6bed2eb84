// diagnostics.test.ts — the language server's diagnostics over an in-process LSP connection: exact ranges for YAML
// syntax and schema problems, every semantic check (model, architecture, target modules, levels, data, output,
// batch/steps, memory against a given GPU, the data-parallel world and its settings, the Hugging Face cache), internal
// errors made visible, debouncing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type Diagnostic, DiagnosticSeverity } from 'vscode-languageserver';

import { CHECKS } from '../../extension/lsp/semantic';
import { formatCount, trainableParams } from '../../extension/model/memory';
import { inspectModel, modulesOf } from '../../extension/model/modelinfo';
import { FAMILIES } from '../integration/helpers';
import { FIXTURES, type Workspace, makeWorkspace } from './fixtures';
import { LspHarness, fileUri } from './harness';

const DEMO = readFileSync(path.join(FIXTURES, 'demo.hqlora.yaml'), 'utf8');
const GiB = 2 ** 30;

function find(diags: Diagnostic[], code: string): Diagnostic {
  const d = diags.find((x) => x.code === code);
  assert.ok(d, `no ${code} diagnostic in ${JSON.stringify(diags.map((x) => `${String(x.code)}: ${x.message}`))}`);
  return d;
}

function rangeText(text: string, d: Diagnostic): string {
  const lines = text.split('\n');
  assert.equal(d.range.start.line, d.range.end.line, 'single-line range');
  return lines[d.range.start.line]!.slice(d.range.start.character, d.range.end.character);
}

const serious = (ds: Diagnostic[]): Diagnostic[] => ds.filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning);

describe('lsp diagnostics', () => {
  let ws: Workspace;
  let h: LspHarness;
  let n = 0;
  const uriIn = (dir: string, ext = 'hqlora.yaml'): string => fileUri(path.join(dir, `t${n++}.${ext}`));
  before(async () => {
    ws = makeWorkspace();
    h = await LspHarness.start({ env: { HF_HUB_CACHE: ws.cache } });
  });
  after(() => {
    h.stop();
    ws.cleanup();
  });

  it('the demo config has no errors or warnings; the level sum is an info on the levels key', async () => {
    const ds = await h.diagnose(uriIn(FIXTURES), DEMO);
    assert.deepEqual(serious(ds), []);
    const sum = find(ds, 'levels-sum');
    assert.equal(sum.severity, DiagnosticSeverity.Information);
    assert.match(sum.message, /^5 levels, total rank 32 = 16 \+ 4 \+ 4 \+ 4 \+ 4; [\d.]+K trainable parameters/);
    assert.equal(rangeText(DEMO, sum), 'levels');
    // No GPU in this test: the estimate is not compared with one, and says so.
    assert.match(find(ds, 'memory-no-gpu').message, /no NVIDIA GPU detected/);
  });

  it('reports a YAML syntax error at its position and nothing else', async () => {
    const text = 'model: m\ndata:\n  train: [a, b\n  eval: x\n';
    const ds = await h.diagnose(uriIn(FIXTURES), text);
    assert.ok(ds.length >= 1);
    assert.ok(ds.every((d) => d.code === 'yaml-syntax' && d.severity === DiagnosticSeverity.Error), JSON.stringify(ds));
    assert.ok(ds.some((d) => d.range.start.line === 2 || d.range.start.line === 3), JSON.stringify(ds.map((d) => d.range)));
  });

  it('marks an unknown key exactly, with a did-you-mean', async () => {
    const text = DEMO.replace('  micro_batch_size: 4', '  micro_bach_size: 4');
    const d = find(await h.diagnose(uriIn(FIXTURES), text), 'unknown-key');
    assert.equal(rangeText(text, d), 'micro_bach_size');
    assert.match(d.message, /did you mean "micro_batch_size"/);
  });

  it('marks an out-of-range value, an invalid enum and a wrong type on the value', async () => {
    const text = DEMO.replace('micro_batch_size: 4', 'micro_batch_size: 0').replace('lr_scheduler: cosine', 'lr_scheduler: cosin')
      .replace('warmup_steps: 20', 'warmup_steps: lots');
    const ds = await h.diagnose(uriIn(FIXTURES), text);
    assert.equal(rangeText(text, find(ds, 'out-of-range')), '0');
    const en = find(ds, 'enum');
    assert.equal(rangeText(text, en), 'cosin');
    assert.match(en.message, /training\.lr_scheduler must be one of: "constant", "linear", "cosine"/);
    const ty = ds.find((d) => /warmup_steps must be integer/.test(d.message));
    assert.ok(ty, JSON.stringify(ds.map((d) => d.message)));
    assert.equal(rangeText(text, ty), 'lots');
  });

  it('marks a missing required key and a non-mapping document', async () => {
    const ds = await h.diagnose(uriIn(FIXTURES), 'model: models/tiny-llama\n');
    assert.match(find(ds, 'missing-key').message, /missing required key "data"/);
    const ds2 = await h.diagnose(uriIn(FIXTURES), '- just\n- a list\n');
    assert.match(find(ds2, 'schema').message, /must be a mapping/);
  });

  it('a config on each family fixture (issue 15) has no errors or warnings, and its parameter count is the family\'s', async () => {
    for (const { fixture, modelType } of FAMILIES) {
      // 48 + 16 positions: tiny-phi3 has 64 (its LongRoPE switch at 8 is inside them).
      const text = DEMO.replace('model: models/tiny-llama', `model: models/${fixture}`).replace('source_max_len: 64', 'source_max_len: 48');
      const ds = await h.diagnose(uriIn(FIXTURES), text);
      assert.deepEqual(serious(ds), [], `${fixture}: ${JSON.stringify(ds.map((d) => d.message))}`);
      const insp = inspectModel(path.join(FIXTURES, 'models', fixture));
      assert.ok(insp.ok && insp.info.architecture === modelType && insp.info.supported, fixture);
      const p = trainableParams(insp.info.dims, modulesOf(modelType), [16, 4, 4, 4, 4]);
      assert.match(find(ds, 'levels-sum').message, new RegExp(`; ${formatCount(p.total).replace('.', '\\.')} trainable parameters`), fixture);
      assert.match(find(ds, 'memory-no-gpu').message, /estimated memory/);
    }
  });

  it('checks the model folder: missing, unsupported architecture, no weights', async () => {
    const base = 'data: {train: data/three.jsonl}\n';
    let ds = await h.diagnose(uriIn(ws.dir), `model: models/nope\n${base}`);
    const missing = find(ds, 'model-missing');
    assert.equal(missing.severity, DiagnosticSeverity.Error);
    assert.match(missing.message, /model folder not found/);
    assert.deepEqual(missing.range, { start: { line: 0, character: 7 }, end: { line: 0, character: 18 } });
    ds = await h.diagnose(uriIn(ws.dir), `model: models/mixtral\n${base}`);
    const arch = find(ds, 'model-architecture');
    assert.match(arch.message, /^config\.json: model_type: model_type 'mixtral' is not supported; supported model_type values: llama .*qwen2 .*phi3/);
    assert.deepEqual(arch.range, { start: { line: 0, character: 7 }, end: { line: 0, character: 21 } });
    ds = await h.diagnose(uriIn(ws.dir), `model: models/qwen-moe\n${base}`);
    assert.match(find(ds, 'model-architecture').message, /^config\.json: num_experts: mixture-of-experts models \('num_experts' = 8\) are not supported/);
    ds = await h.diagnose(uriIn(ws.dir), `model: models/phi\n${base}`);
    assert.equal(ds.filter((d) => d.code === 'model-architecture').length, 0);   // Phi-3 is supported
    // and its q_proj / gate_proj adapters live on the fused qkv_proj / gate_up_proj weights
    ds = await h.diagnose(uriIn(ws.dir), `model: models/phi\n${base}adapter:\n  target_modules: [q_proj, v_proj, gate_proj, down_proj]\n`);
    assert.equal(ds.filter((d) => d.code === 'target-module').length, 0);
    ds = await h.diagnose(uriIn(ws.dir), `model: {path: models/empty}\n${base}`);
    const w = find(ds, 'model-weights');
    assert.match(w.message, /no \.safetensors weights/);
    assert.equal(rangeText(`model: {path: models/empty}\n${base}`, w), 'models/empty');
  });

  it('checks that each target module exists in the model weights', async () => {
    const text = 'model: models/no-gate\ndata: {train: data/three.jsonl}\nadapter:\n  target_modules: [q_proj, gate_proj]\n';
    const d = find(await h.diagnose(uriIn(ws.dir), text), 'target-module');
    assert.equal(rangeText(text, d), 'gate_proj');
    assert.match(d.message, /model\.layers\.0\.mlp\.gate_proj\.weight/);
  });

  it('checks the dataset: missing file, unknown format, format mismatch, invalid JSON', async () => {
    const m = 'model: models/llama-7b\n';
    let ds = await h.diagnose(uriIn(ws.dir), `${m}data: {train: data/none.jsonl}\n`);
    assert.match(find(ds, 'data-missing').message, /training data not found/);
    ds = await h.diagnose(uriIn(ws.dir), `${m}data: {train: data/unknown.jsonl}\n`);
    assert.match(find(ds, 'data-format').message, /cannot tell the record format .*unknown\.jsonl:1, keys: foo/);
    ds = await h.diagnose(uriIn(ws.dir), `${m}data: {train: data/three.jsonl, format: alpaca}\n`);
    assert.match(find(ds, 'data-format').message, /data\.format is "alpaca" but the first record .* keys: prompt, completion; it looks like completion/);
    ds = await h.diagnose(uriIn(ws.dir), `${m}data: {train: data/broken.jsonl}\n`);
    assert.match(find(ds, 'data-invalid').message, /broken\.jsonl:1: invalid JSON/);
  });

  it('checks that the output folder can be created', async () => {
    const text = 'model: models/llama-7b\ndata: {train: data/three.jsonl}\noutput: {dir: afile/runs}\n';
    const d = find(await h.diagnose(uriIn(ws.dir), text), 'output-dir');
    assert.equal(rangeText(text, d), 'afile/runs');
    assert.match(d.message, /afile is a file/);
  });

  it('warns about an effective batch larger than the dataset and warmup longer than training', async () => {
    const text = 'model: models/llama-7b\ndata: {train: data/three.jsonl}\ntraining:\n  micro_batch_size: 2\n  gradient_accumulation_steps: 4\n' +
      '  max_steps: 10\n  warmup_steps: 10\n';
    const ds = await h.diagnose(uriIn(ws.dir), text);
    assert.match(find(ds, 'batch-size').message, /effective batch 2 x 4 = 8 is larger than the 3 training examples/);
    assert.match(find(ds, 'warmup').message, /warmup_steps 10 >= the 10 total steps/);
  });

  it('reports the model resolved from the Hugging Face cache as valid, and a missing repo id with the cache path', async () => {
    const ok = await h.diagnose(uriIn(FIXTURES), DEMO.replace('model: models/tiny-llama', 'model: acme/tiny-llama'));
    assert.deepEqual(serious(ok), []);
    const bad = await h.diagnose(uriIn(FIXTURES), DEMO.replace('model: models/tiny-llama', 'model: acme/other'));
    assert.match(find(bad, 'model-missing').message, new RegExp(`"acme/other" is not in the local Hugging Face cache \\(${ws.cache}\\)`));
  });

  it('checks JSON configs too, with ranges inside the JSON text', async () => {
    const text = '{\n  "model": "models/tiny-llama",\n  "data": {"train": "data/train.completion.jsonl"},\n  "trainig": {}\n}\n';
    const d = find(await h.diagnose(uriIn(FIXTURES, 'hqlora.json'), text), 'unknown-key');
    assert.equal(rangeText(text, d), '"trainig"');
    assert.match(d.message, /did you mean "training"/);
  });
});

describe('lsp diagnostics: memory against the GPU', () => {
  let ws: Workspace;
  before(() => {
    ws = makeWorkspace();
  });
  after(() => ws.cleanup());
  const cfg = 'model: models/llama-7b\ndata: {train: data/three.jsonl}\nhardware: {device: cuda}\n';

  // The CUDA backend (calibrated estimate, extension/model/memory.ts) needs about 8.6 GiB for a 7B model at the
  // defaults (1 x 1280 tokens, checkpointing, levels 32,8,8,8,8).
  for (const [gib, fits] of [[12, true], [8, false]] as const) {
    it(`a 7B model with NF4 weights ${fits ? 'fits' : 'does not fit'} in a ${gib} GiB GPU`, async () => {
      const h = await LspHarness.start({ gpus: Promise.resolve([{ index: 0, name: 'Test GPU', totalBytes: gib * GiB }]) });
      try {
        const ds = await h.diagnose(fileUri(path.join(ws.dir, 'mem.hqlora.yaml')), cfg);
        const mem = ds.find((d) => d.code === 'memory');
        if (fits) assert.equal(mem, undefined, mem?.message);
        else {
          assert.ok(mem, JSON.stringify(ds.map((d) => d.message)));
          assert.equal(mem.severity, DiagnosticSeverity.Warning);
          assert.match(mem.message, /will not fit: estimated [\d.]+ GiB .* > 8\.00 GiB of GPU 0 \(Test GPU\)/);
          assert.equal(rangeText(cfg, mem), 'device');
        }
      } finally {
        h.stop();
      }
    });
  }

  it('names a GPU id that does not exist', async () => {
    const h = await LspHarness.start({ gpus: Promise.resolve([{ index: 0, name: 'Test GPU', totalBytes: 80 * GiB }]) });
    try {
      const text = 'model: models/llama-7b\ndata: {train: data/three.jsonl}\nhardware: {device: cuda, gpu_ids: [3]}\n';
      const d = find(await h.diagnose(fileUri(path.join(ws.dir, 'gpu.hqlora.yaml')), text), 'gpu-id');
      assert.match(d.message, /GPU 3 does not exist; nvidia-smi lists 0/);
      assert.equal(rangeText(text, d), '3');
    } finally {
      h.stop();
    }
  });
});

describe('lsp diagnostics: data parallel', () => {
  let ws: Workspace;
  let h: LspHarness;
  let n = 0;
  before(async () => {
    ws = makeWorkspace();
    h = await LspHarness.start({ gpus: Promise.resolve([{ index: 0, name: 'Test GPU', totalBytes: 80 * GiB }]) });
  });
  after(() => {
    h.stop();
    ws.cleanup();
  });
  const base = 'model: models/llama-7b\ndata: {train: data/three.jsonl}\ntraining: {micro_batch_size: 2, gradient_accumulation_steps: 4}\n';
  const diagnose = (text: string): Promise<Diagnostic[]> => h.diagnose(fileUri(path.join(ws.dir, `dp${n++}.hqlora.yaml`)), text);

  it('shows the global batch of a world of ranks, and warns when there are more ranks than GPUs', async () => {
    const text = `${base}hardware: {device: cuda, gpus: 4}\n`;
    const ds = await diagnose(text);
    const g = find(ds, 'global-batch');
    assert.equal(g.severity, DiagnosticSeverity.Information);
    assert.match(g.message, /^4 data-parallel ranks, each with the whole model on its own GPU: the global batch is 2 x 4 x 4 ranks = 32 examples/);
    assert.equal(rangeText(text, g), 'gpus');
    const v = find(ds, 'gpus-visible');
    assert.equal(v.severity, DiagnosticSeverity.Warning);
    assert.match(v.message, /asks for 4 ranks but nvidia-smi lists 1 GPU\(s\): NCCL needs one GPU per rank; lower hardware.gpus to 1/);
    assert.equal(rangeText(text, v), '4');
    assert.match(find(ds, 'batch-size').message, /the effective batch 2 x 4 x 4 ranks = 32 is larger than the 3 training examples/);
  });

  it('takes CPU ranks as processes (no GPU count), and names a listed GPU that does not exist', async () => {
    const cpu = await diagnose(`${base}hardware: {device: cpu, gpus: 2}\ndistributed: {zero: 1}\n`);
    assert.match(find(cpu, 'global-batch').message, /share of the CPU cores: the global batch is 2 x 4 x 2 ranks = 16/);
    assert.deepEqual(cpu.filter((d) => d.code === 'gpus-visible' || d.code === 'zero'), []);
    // CPU ranks share the host's memory: 256 copies of a 7B model exceed any machine this runs on.
    const many = await diagnose(`${base}hardware: {device: cpu, gpus: 256}\n`);
    assert.match(find(many, 'memory').message, /for the 256 ranks on this host: [\d.]+ GiB each\) exceeds the system memory/);
    const text = `${base}hardware: {device: cuda, gpus: [0, 5]}\n`;
    const d = find(await diagnose(text), 'gpu-id');
    assert.match(d.message, /GPU 5 does not exist; nvidia-smi lists 0/);
  });

  it('reports the world problems hqlora run refuses, at their key', async () => {
    const text = `${base}hardware: {device: cpu, gpus: 3, gpu_ids: [0, 1]}\n`;
    const d = find(await diagnose(text), 'world');
    assert.equal(d.severity, DiagnosticSeverity.Error);
    assert.match(d.message, /hardware.gpus 3 asks for more ranks than the 2 GPU\(s\) of hardware.gpu_ids; lower the count to 2/);
    assert.equal(rangeText(text, d), '3');
  });

  it('errors on the distributed settings the trainer refuses, and warns on ZeRO-1 without other ranks', async () => {
    const zeroCuda = `${base}hardware: {device: cuda, gpus: 1}\ndistributed: {zero: 1}\n`;
    const z = find(await diagnose(zeroCuda), 'zero');
    assert.equal(z.severity, DiagnosticSeverity.Error);
    assert.match(z.message, /CPU backend only: the trainer refuses it on CUDA/);
    assert.equal(rangeText(zeroCuda, z), '1');
    const one = find(await diagnose(`${base}hardware: {device: cpu}\ndistributed: {zero: 1}\n`), 'zero');
    assert.equal(one.severity, DiagnosticSeverity.Warning);
    assert.match(one.message, /does nothing on a world of one rank/);
    const nccl = find(await diagnose(`${base}hardware: {device: cpu, gpus: 2}\ndistributed: {backend: nccl}\n`), 'dist-backend');
    assert.equal(nccl.severity, DiagnosticSeverity.Error);
    assert.match(nccl.message, /nccl needs the CUDA backend, but hardware.device is cpu/);
    assert.equal(find(await diagnose(`${base}hardware: {device: cuda}\ndistributed: {backend: cpu}\n`), 'dist-backend').severity,
      DiagnosticSeverity.Error);
  });
});

describe('lsp diagnostics: robustness', () => {
  it('turns an exception inside a check into an "internal error in check X" diagnostic', async () => {
    const boom = { name: 'boom', run: (): void => { throw new Error('kaput'); } };
    const h = await LspHarness.start({ checks: [...CHECKS, boom] });
    try {
      const ds = await h.diagnose(fileUri(path.join(FIXTURES, 'boom.hqlora.yaml')), DEMO);
      const d = find(ds, 'internal-error');
      assert.equal(d.severity, DiagnosticSeverity.Error);
      assert.match(d.message, /^internal error in check boom: kaput/);
      assert.ok(ds.some((x) => x.code === 'levels-sum'), 'the other checks still ran');
    } finally {
      h.stop();
    }
  });

  it('debounces a burst of changes: only the last version is validated', async () => {
    const h = await LspHarness.start({ debounce: { minMs: 400, maxMs: 400 } });
    try {
      const uri = fileUri(path.join(FIXTURES, 'burst.hqlora.yaml'));
      await h.open(uri, DEMO);
      await h.diagnostics(uri, 1);
      let last = 1;
      for (let i = 0; i < 5; i++) last = await h.change(uri, DEMO.replace(/max_steps: \d+/, `max_steps: ${301 + i}`));
      await h.diagnostics(uri, last);
      assert.deepEqual(h.publishes(uri).map((p) => p.version), [1, last]);
    } finally {
      h.stop();
    }
  });

  it('clears the diagnostics of a closed document', async () => {
    const h = await LspHarness.start();
    try {
      const uri = fileUri(path.join(FIXTURES, 'closed.hqlora.yaml'));
      await h.diagnose(uri, 'model: [\n');
      const before = h.publishes(uri).length;
      await h.close(uri);
      await new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 10000;
        const poll = (): void => {
          if (h.publishes(uri).length > before) resolve();
          else if (Date.now() > deadline) reject(new Error('no clearing publish'));
          else setImmediate(poll);
        };
        poll();
      });
      assert.deepEqual(h.publishes(uri).at(-1)?.diagnostics, []);
    } finally {
      h.stop();
    }
  });
});
