// electron.mjs — `npm run test:electron`: the same extension-host suite (out/e2e/suite) in a desktop VS Code through
// @vscode/test-electron 2.x, for developers whose machine can download VS Code (CI cannot: offline; it uses
// code-server through test/e2e/run-ext-tests.mjs instead). Set VSCODE_EXECUTABLE to use an installed VS Code.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { runTests } from '@vscode/test-electron';

import { makeWorkspace } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ws = makeWorkspace(path.join(repo, 'test-results', 'e2e', 'electron', 'workspace'), repo, { quick: { steps: 20 }, long: { steps: 4000, ckptEvery: 10 } });
try {
  await runTests({
    extensionDevelopmentPath: repo,
    extensionTestsPath: path.join(repo, 'out', 'e2e', 'suite', 'index.js'),
    launchArgs: [ws, '--disable-extensions', '--disable-workspace-trust'],
    ...(process.env.VSCODE_EXECUTABLE ? { vscodeExecutablePath: process.env.VSCODE_EXECUTABLE } : {}),
  });
} catch (err) {
  console.error('extension-host tests failed:', err instanceof Error ? err.message : err);
  process.exit(1);
}
