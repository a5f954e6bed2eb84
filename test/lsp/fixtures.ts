// fixtures.ts — a temporary workspace for the language-server tests: model folders with real config.json files
// (a LLaMA-7B-shaped one whose weights are only an index, an unsupported architecture, one missing a projection),
// a Hugging Face hub cache holding the tiny LLaMA fixture as acme/tiny-llama, and small datasets.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = process.cwd();
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
export const COMMIT = '0123456789abcdef0123456789abcdef01234567';

export interface Workspace {
  dir: string;
  cache: string;
  cleanup(): void;
}

export const LLAMA_7B = {
  model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 32, vocab_size: 32000, max_position_embeddings: 4096, tie_word_embeddings: false,
};

export function modelFolder(dir: string, config: object, modules: string[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
  const names = modules.map((m) => `model.layers.0.${['gate_proj', 'up_proj', 'down_proj', 'gate_up_proj'].includes(m) ? 'mlp' : 'self_attn'}.${m}.weight`);
  writeFileSync(path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: Object.fromEntries(names.map((n) => [n, 'model-00001-of-00001.safetensors'])) }));
  writeFileSync(path.join(dir, 'model-00001-of-00001.safetensors'), '');
}

export function makeWorkspace(): Workspace {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hqlora-lsp-'));
  const all = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  modelFolder(path.join(dir, 'models', 'llama-7b'), LLAMA_7B, all);
  modelFolder(path.join(dir, 'models', 'phi'), { ...LLAMA_7B, model_type: 'phi3' }, ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
  modelFolder(path.join(dir, 'models', 'mixtral'), { ...LLAMA_7B, model_type: 'mixtral', num_local_experts: 8 }, all);
  modelFolder(path.join(dir, 'models', 'qwen-moe'), { ...LLAMA_7B, model_type: 'qwen3', num_experts: 8 }, all);
  modelFolder(path.join(dir, 'models', 'no-gate'), LLAMA_7B, all.filter((m) => m !== 'gate_proj'));
  mkdirSync(path.join(dir, 'models', 'empty'), { recursive: true });
  writeFileSync(path.join(dir, 'models', 'empty', 'config.json'), JSON.stringify(LLAMA_7B));
  writeFileSync(path.join(dir, 'models', 'empty', 'tokenizer.json'), '{}');

  const cache = path.join(dir, 'hub');
  const repo = path.join(cache, 'models--acme--tiny-llama');
  mkdirSync(path.join(repo, 'refs'), { recursive: true });
  mkdirSync(path.join(repo, 'snapshots'), { recursive: true });
  writeFileSync(path.join(repo, 'refs', 'main'), `${COMMIT}\n`);
  symlinkSync(path.join(FIXTURES, 'models', 'tiny-llama'), path.join(repo, 'snapshots', COMMIT));

  mkdirSync(path.join(dir, 'data'), { recursive: true });
  writeFileSync(path.join(dir, 'data', 'unknown.jsonl'), '{"foo": 1}\n{"foo": 2}\n');
  writeFileSync(path.join(dir, 'data', 'three.jsonl'), '{"prompt": "a", "completion": "b"}\n'.repeat(3));
  writeFileSync(path.join(dir, 'data', 'broken.jsonl'), '{"prompt": "a", \n');
  writeFileSync(path.join(dir, 'afile'), 'not a folder');
  return { dir, cache, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
