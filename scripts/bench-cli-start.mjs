#!/usr/bin/env node
// bench-cli-start.mjs — how long the `hqlora` CLI takes to start and answer: `hqlora --version` (which also runs
// `hqlora-train --version`) and `hqlora validate test/fixtures/demo.hqlora.yaml`, each run N times one after
// another through /usr/bin/time. Prints the median wall time and the median CPU time (user + system, the CLI and
// its children); the CPU time is the figure to compare on a shared machine, where wall time also measures the load.
// Usage: node scripts/bench-cli-start.mjs [--runs N] [--root DIR]     (npm run bench:cli builds first)
//   --root DIR   measure the built checkout at DIR instead of this one (a before/after comparison on one machine)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const flag = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const root = path.resolve(flag('--root') ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const RUNS = Number(flag('--runs') ?? 10);
const cli = path.join(root, 'dist', 'cli.js');
if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
if (!existsSync('/usr/bin/time')) throw new Error('/usr/bin/time is missing: apt-get install time');

const CASES = [
  ['hqlora --version', ['--version']],
  ['hqlora validate demo', ['validate', path.join(root, 'test', 'fixtures', 'demo.hqlora.yaml')]],
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-bench-cli-'));
try {
  for (const [name, args] of CASES) {
    const wall = [];
    const cpu = [];
    for (let r = 0; r < RUNS; r++) {
      const out = path.join(tmp, 'time.txt');
      const p = spawnSync('/usr/bin/time', ['-f', '%e %U %S', '-o', out, process.execPath, cli, ...args], { encoding: 'utf8' });
      if (p.status !== 0) throw new Error(`${name} exited ${p.status}: ${p.stderr}`);
      const [e, u, s] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
      wall.push(e);
      cpu.push(u + s);
    }
    console.log(`${name.padEnd(22)} median wall ${median(wall).toFixed(2)} s, median CPU ${median(cpu).toFixed(2)} s (${RUNS} runs, node ${process.version}, ${os.cpus().length} cores)`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
