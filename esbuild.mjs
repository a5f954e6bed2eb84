// esbuild.mjs — the one bundler script: a context per entry (esbuild-sample / vscode-eslint style).
//   node esbuild.mjs              dist/extension.js (VS Code host, `vscode` external), dist/cli.js (`hqlora`) and
//                                 dist/server.js (the run-config language server, its own process)
//   node esbuild.mjs --production minified, no source maps
//   node esbuild.mjs --watch      rebuild on change
//   (also dist/webview/ — the dashboard — and out/e2e/suite/ — the extension-host suites of test/e2e)
//   node esbuild.mjs --tests      test/**/*.test.ts -> out/test/**/*.test.js for `node --test` (scripts/run-tests.mjs)
// Type checking is separate: `npm run typecheck` (tsc --noEmit). Before bundling, the standalone schema validators
// (schemas/generated/*.validate.js, scripts/schema-validators.mjs) are regenerated when a schema changed.
import { chmodSync, readdirSync } from 'node:fs';
import path from 'node:path';

import * as esbuild from 'esbuild';

import { generateAll } from './scripts/gen-types.mjs';

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');
const tests = process.argv.includes('--tests');

/** Prints errors in the `$esbuild-watch` problem-matcher format. */
const problemMatcher = {
  name: 'problem-matcher',
  setup(build) {
    build.onStart(() => {
      if (watch) console.log('[watch] build started');
    });
    build.onEnd((result) => {
      for (const { text, location } of result.errors) {
        console.error(`✘ [ERROR] ${text}`);
        if (location) console.error(`    ${location.file}:${location.line}:${location.column}:`);
      }
      if (watch) console.log('[watch] build finished');
    });
  },
};

const common = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: production,
  sourcemap: !production,
  sourcesContent: false,
  logLevel: 'silent',
  plugins: [problemMatcher],
};

function testEntries(dir) {
  return readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => path.join(dir, f))
    .sort();
}

const options = tests
  ? [{ ...common, entryPoints: testEntries('test').filter((f) => !f.startsWith(path.join('test', 'e2e'))), outbase: '.', outdir: 'out/test', packages: 'external', sourcemap: 'inline' }]
  : [
      { ...common, entryPoints: ['extension/extension.ts'], outfile: 'dist/extension.js', external: ['vscode'] },
      { ...common, entryPoints: ['extension/cli/main.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } },
      { ...common, entryPoints: ['extension/lsp/server.ts'], outfile: 'dist/server.js' },
      // The playground server (its own process): node-llama-cpp stays in node_modules (native binaries, ESM).
      { ...common, entryPoints: ['extension/llama/server.ts'], outfile: 'dist/playground.js', external: ['node-llama-cpp'] },
      // The dashboard (browser): dist/webview/main.js + main.css, the webview's only localResourceRoot.
      { ...common, entryPoints: ['webview/main.ts'], outdir: 'dist/webview', format: 'iife', platform: 'browser', target: 'es2022' },
      // The chat playground (browser): dist/webview/playground.js + playground.css, in the same assets folder.
      { ...common, entryPoints: ['webview/playground/main.ts'], outfile: 'dist/webview/playground.js', format: 'iife', platform: 'browser', target: 'es2022' },
      // The sweep results panel (browser): dist/webview/sweep.js + sweep.css.
      { ...common, entryPoints: ['webview/sweep/main.ts'], outfile: 'dist/webview/sweep.js', format: 'iife', platform: 'browser', target: 'es2022' },
      // Extension-host test suites (test/e2e/suite), run inside a real VS Code by test/e2e/run-ext-tests.mjs.
      { ...common, entryPoints: ['test/e2e/suite/index.ts', ...testEntries('test/e2e/suite')], outbase: 'test/e2e/suite', outdir: 'out/e2e/suite', external: ['vscode', 'mocha'] },
    ];

await generateAll({ validatorsOnly: true, log: (m) => console.log(`esbuild.mjs: ${m} (a schema changed)`) });
const contexts = await Promise.all(options.map((o) => esbuild.context(o)));
if (watch) {
  await Promise.all(contexts.map((c) => c.watch()));
} else {
  try {
    await Promise.all(contexts.map((c) => c.rebuild()));
    if (!tests) chmodSync('dist/cli.js', 0o755);
  } catch {
    process.exitCode = 1;
  } finally {
    await Promise.all(contexts.map((c) => c.dispose()));
  }
}
