// run-ext-tests.mjs — runs the extension-host suites (out/e2e/suite, built by esbuild.mjs) inside code-server's real
// Node extension host, the equivalent of @vscode/test-electron's --extensionTestsPath: the workbench reads
// extensionDevelopmentPath/extensionTestsPath from its `payload` URL parameter and, when the suite's run()
// settles, calls window.codeAutomationExit(code); extension-host console output arrives in codeAutomationLog.
// usage: node test/e2e/run-ext-tests.mjs   (after setup.sh and npm run build)   exit code = the suite's
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import util from 'node:util';

import { launchBrowser, makeWorkspace, startCodeServer, workbenchUrl } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const state = path.join(repo, 'test-results', 'e2e', 'ext-host');
const ws = makeWorkspace(path.join(state, 'workspace'), repo, { quick: { steps: 20 }, long: { steps: 4000, ckptEvery: 10 } });
const t0 = Date.now();
const cs = await startCodeServer(Number(process.env.HQLORA_E2E_PORT ?? 8311), path.join(state, 'cs'));
const { page, close } = await launchBrowser();
const noise = /Creating a socket|connection token|ChatModelSelection|Service Worker|builtin extensions cache|open-vsx|ENOTFOUND|grace-time|marketplace/;
let code;
try {
  await page.exposeFunction('codeAutomationLog', (level, args) => {
    const text = util.format(...(Array.isArray(args) ? args : [args]));
    if (/^\d+ passed, \d+ failed/.test(text.trim())) console.log(text.trim());
    else if (!noise.test(text)) console.log(`[${level}] ${text}`);
  });
  const done = new Promise((resolve) => page.exposeFunction('codeAutomationExit', resolve));
  await page.goto(workbenchUrl(cs.base, ws, { devPath: repo, testsPath: path.join(repo, 'out/e2e/suite/index.js') }));
  let timer;
  code = await Promise.race([done, new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('suite timed out after 400 s')), 400_000); })]);
  clearTimeout(timer);
  console.log(`extension-host suite exited ${code} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error('runner error:', e.message);
  code = 1;
} finally {
  await close();
  await cs.stop();
}
process.exit(code);
