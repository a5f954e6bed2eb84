#!/usr/bin/env node
// bench-lsp.mjs — latency of the run-config language server as an editor sees it: spawns the real built server
// (dist/server.js --stdio), opens a generated 200-line config next to the test fixtures (real model folder and
// dataset, so every semantic check runs), then applies N single-line edits one after another and measures the time
// from sending each didChange to receiving the publishDiagnostics for that version. Prints median and p95.
// Usage: node scripts/bench-lsp.mjs [--edits N] [--warmup W]     (npm run bench:lsp builds first)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const EDITS = arg('--edits', 300);
const WARMUP = arg('--warmup', 30);
const LINES = 200;

/** A complete config of exactly LINES lines: every key of the schema with a comment line, 16 levels in block style. */
function generateConfig() {
  const schema = JSON.parse(readFileSync(path.join(root, 'schemas/run-config.schema.json'), 'utf8'));
  const defs = schema.$defs;
  const out = ['# bench-lsp: generated run config', 'model: models/tiny-llama', ''];
  const fixed = {
    data: { train: 'data/train.completion.jsonl', eval: 'data/eval.completion.jsonl', format: 'completion', source_max_len: 64, target_max_len: 16 },
    output: { dir: '../../runs' },
  };
  for (const [section, ref] of Object.entries(schema.properties)) {
    const name = ref.$ref?.split('/').pop();
    if (!name || !defs[name]) continue;
    out.push(`${section}:`);
    for (const [key, p] of Object.entries(defs[name].properties)) {
      const v = fixed[section]?.[key] ?? p.default;
      if (v === undefined || (section === 'data' && /tokens$/.test(key))) continue;
      if (section === 'adapter' && key === 'levels') {
        out.push('  # 16 levels, coarse to fine');
        out.push('  levels:');
        for (let i = 0; i < 16; i++) out.push(`    - rank: ${i === 0 ? 16 : 2}`, '      alpha: 16');
        continue;
      }
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) continue; // nested option groups keep their defaults
      out.push(`  # ${String(p.description ?? '').slice(0, 100).replace(/\n/g, ' ')}`);
      out.push(`  ${key}: ${JSON.stringify(v)}`);
    }
    out.push('');
  }
  while (out.length < LINES) out.push(`# padding line ${out.length + 1}`);
  if (out.length > LINES) throw new Error(`generated config has ${out.length} lines, more than ${LINES}`);
  return out.join('\n') + '\n';
}

const text = generateConfig();
const lines = text.split('\n');
const editLine = lines.findIndex((l) => l.startsWith('  max_steps:'));
const uri = pathToFileURL(path.join(root, 'test/fixtures/bench.hqlora.yaml')).href;

const server = spawn(process.execPath, [path.join(root, 'dist/server.js'), '--stdio'], { stdio: ['pipe', 'pipe', 'inherit'] });
const conn = createMessageConnection(new StreamMessageReader(server.stdout), new StreamMessageWriter(server.stdin));
const waiting = new Map();
let lastDiagnostics = [];
conn.onNotification('textDocument/publishDiagnostics', (p) => {
  lastDiagnostics = p.diagnostics;
  waiting.get(p.version)?.(process.hrtime.bigint());
});
conn.onNotification('window/logMessage', () => {});
conn.listen();

function published(version) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no diagnostics for version ${version} within 30 s`)), 30000);
    waiting.set(version, (t) => {
      clearTimeout(timer);
      waiting.delete(version);
      resolve(t);
    });
  });
}

await conn.sendRequest('initialize', { processId: process.pid, rootUri: null, capabilities: {} });
await conn.sendNotification('initialized', {});
let version = 1;
const first = published(1);
await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'hqlora-config', version, text } });
await first;
const errors = lastDiagnostics.filter((d) => d.severity === 1);
if (errors.length) console.log(`note: the generated config has ${errors.length} error(s): ${errors.map((d) => d.message).join('; ')}`);

const samples = [];
for (let i = 0; i < WARMUP + EDITS; i++) {
  version++;
  const oldLine = lines[editLine];
  const newLine = `  max_steps: ${1000 + i}`;
  lines[editLine] = newLine;
  const done = published(version);
  const t0 = process.hrtime.bigint();
  await conn.sendNotification('textDocument/didChange', {
    textDocument: { uri, version },
    contentChanges: [{ range: { start: { line: editLine, character: 0 }, end: { line: editLine, character: oldLine.length } }, text: newLine }],
  });
  const t1 = await done;
  if (i >= WARMUP) samples.push(Number(t1 - t0) / 1e6);
}
await conn.sendRequest('shutdown');
conn.dispose();
server.kill();

samples.sort((a, b) => a - b);
const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
console.log(`bench:lsp  didChange -> publishDiagnostics, ${LINES}-line config, ${EDITS} edits (+${WARMUP} warm-up), real server process (dist/server.js --stdio)`);
console.log(`  median ${q(0.5).toFixed(2)} ms   p95 ${q(0.95).toFixed(2)} ms   mean ${mean.toFixed(2)} ms   min ${samples[0].toFixed(2)} ms   max ${samples.at(-1).toFixed(2)} ms`);
console.log(`  goal: median <= 20 ms -> ${q(0.5) <= 20 ? 'met' : 'NOT met'}   (node ${process.version}, ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(2)})`);
