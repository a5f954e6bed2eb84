#!/usr/bin/env node
// run-tests.mjs — the TypeScript test runner: bundles test/**/*.test.ts with esbuild (esbuild.mjs --tests) into
// out/test/ and runs them with node's built-in runner.
// Usage: node scripts/run-tests.mjs [unit|integration|<substring of a test path>]...
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'out', 'test');
const filters = process.argv.slice(2);

rmSync(outDir, { recursive: true, force: true });
const build = spawnSync(process.execPath, ['esbuild.mjs', '--tests'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const files = readdirSync(outDir, { recursive: true })
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .map((f) => path.join(outDir, f))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const run = spawnSync(process.execPath, ['--enable-source-maps', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(run.status ?? 1);
