// lib.mjs — the E2E harness: start/stop code-server (a real VS Code, installed by setup.sh into the cache folder),
// drive it with Debian's Chromium through playwright-core, run extension-host suites through the workbench's
// test payload. Recipe: ../shared/e2e/README.md (code-server rejects --extensionDevelopmentPath; the `payload` URL
// parameter carries extensionDevelopmentPath / extensionTestsPath instead).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CACHE = process.env.HQLORA_E2E_CACHE || path.join(os.homedir(), '.cache', 'hqlora-e2e');

/** Variables written by setup.sh (CS_BIN, PLAYWRIGHT_CORE). */
export function toolsEnv() {
  const file = path.join(CACHE, 'env.sh');
  if (!fs.existsSync(file)) throw new Error(`${file} missing: run test/e2e/setup.sh first`);
  return Object.fromEntries(fs.readFileSync(file, 'utf8').split('\n')
    .map((l) => /^export (\w+)=(.*)$/.exec(l)).filter(Boolean).map((m) => [m[1], m[2].replace(/^"|"$/g, '')]));
}

/** Polls `fn` until it returns a truthy value; throws with `what` after `timeoutMs`. Never a fixed sleep. */
export async function waitFor(what, fn, timeoutMs = 60000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Starts code-server on 127.0.0.1:port with all state under `stateDir`, in its own process group. */
export async function startCodeServer(port, stateDir) {
  const { CS_BIN } = toolsEnv();
  for (const d of ['xdg-config', 'xdg-data', 'user-data/User', 'extensions']) fs.mkdirSync(path.join(stateDir, d), { recursive: true });
  // No gallery, no telemetry, no restored editors: a quiet, deterministic workbench.
  fs.writeFileSync(path.join(stateDir, 'user-data/User/settings.json'), JSON.stringify({
    'workbench.startupEditor': 'none', 'telemetry.telemetryLevel': 'off', 'extensions.autoCheckUpdates': false,
    'workbench.enableExperiments': false, 'security.workspace.trust.enabled': false, 'window.restoreWindows': 'none',
    'git.openRepositoryInParentFolders': 'never', 'git.enabled': false,
  }));
  const log = fs.openSync(path.join(stateDir, 'cs.log'), 'w');
  const child = spawn(CS_BIN, ['--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check',
    '--disable-workspace-trust', '--user-data-dir', path.join(stateDir, 'user-data'), '--extensions-dir', path.join(stateDir, 'extensions')], {
    detached: true, stdio: ['ignore', log, log],
    env: { ...process.env, XDG_CONFIG_HOME: path.join(stateDir, 'xdg-config'), XDG_DATA_HOME: path.join(stateDir, 'xdg-data') },
  });
  fs.closeSync(log);
  let exited = false;
  child.on('exit', () => (exited = true));
  const base = `http://127.0.0.1:${port}`;
  await waitFor('code-server /healthz', async () => {
    if (exited) throw new Error(`code-server exited:\n${fs.readFileSync(path.join(stateDir, 'cs.log'), 'utf8').slice(-2000)}`);
    try { return (await fetch(`${base}/healthz`)).ok; } catch { return false; }
  }, 60000);
  return { base, pid: child.pid, stop: () => killGroup(child.pid) };
}

/** Ends a process group: SIGTERM, then SIGKILL once it has had 5 s. */
export async function killGroup(pid) {
  try { process.kill(-pid, 'SIGTERM'); } catch { return; }
  try {
    await waitFor(`process group ${pid} to exit`, () => { try { process.kill(-pid, 0); return false; } catch { return true; } }, 5000);
  } catch {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launchBrowser({ viewport = { width: 1600, height: 1000 } } = {}) {
  const { PLAYWRIGHT_CORE } = toolsEnv();
  const { chromium } = await import(PLAYWRIGHT_CORE);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hqlora-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', headless: true, viewport, args: CHROMIUM_ARGS,
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  return { page, close: async () => { await ctx.close().catch(() => {}); fs.rmSync(profile, { recursive: true, force: true }); } };
}

/** Workbench URL opening `folder`, loading the extension unpacked from `devPath` (and running `testsPath`). */
export function workbenchUrl(base, folder, { devPath, testsPath } = {}) {
  const remote = (p) => `vscode-remote://remote${path.resolve(p)}`;
  const payload = [];
  if (devPath) payload.push(['extensionDevelopmentPath', remote(devPath)]);
  if (testsPath) payload.push(['extensionTestsPath', remote(testsPath)]);
  if (payload.length) payload.push(['skipWelcome', 'true']);
  return `${base}/?folder=${encodeURIComponent(path.resolve(folder))}${payload.length ? `&payload=${encodeURIComponent(JSON.stringify(payload))}` : ''}`;
}

export async function waitForWorkbench(page, timeout = 90000) {
  await page.locator('.monaco-workbench').waitFor({ timeout });
  await page.locator('#workbench\\.parts\\.statusbar').waitFor({ timeout });
}

/**
 * Runs a palette command by its full title ("Category: Title"). Each attempt opens the palette afresh and uses short
 * timeouts, so a palette closed under us (a webview or notification taking focus while the window restores) or a
 * command not yet contributed costs one retry, not the test.
 */
export async function runCommand(page, title, timeout = 60000) {
  const end = Date.now() + timeout;
  for (;;) {
    try {
      await page.keyboard.press('Escape');
      await page.keyboard.press('F1');
      const input = page.locator('.quick-input-widget .quick-input-box input');
      await input.waitFor({ state: 'visible', timeout: 5000 });
      await input.fill('>' + title, { timeout: 5000 });
      await page.locator('.quick-input-list .monaco-list-row.focused', { hasText: title }).first().waitFor({ timeout: 5000 });
      await page.keyboard.press('Enter');
      return;
    } catch (e) {
      if (Date.now() > end) throw e;
      await page.waitForTimeout(500);
    }
  }
}

export const statusBarItem = (page, text) => page.locator('#workbench\\.parts\\.statusbar .statusbar-item', { hasText: text });

/** The content frame of our visible webview (outer iframe by extensionId, then the inner active frame). */
export function webview(page, extensionId = 'hqlora.hqlora') {
  return page.locator(`iframe.webview.ready[src*="extensionId=${extensionId}"]`).filter({ visible: true }).first()
    .contentFrame().locator('iframe#active-frame').contentFrame();
}

/** A log line prefixed with the seconds since `t0`; `log.seconds()` is that count. */
export function testLog(t0 = Date.now()) {
  const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
  log.seconds = () => (Date.now() - t0) / 1000;
  return log;
}

/**
 * One UI test in code-server: its prologue and epilogue, shared by ui-test.mjs, dashboard-test.mjs and sweep-test.mjs.
 * Starts code-server (state in test-results/e2e/<name>/cs, port HQLORA_E2E_PORT or `port`) and Chromium, and returns
 * the page, `shot(file)` (a screenshot into test-results/e2e/) and `run(workspace, body)`. `run` opens the workspace
 * with the extension loaded unpacked from `repo`, waits for the workbench and awaits `body()`; a throw is printed as
 * "<NAME> TEST FAILED" with test-results/e2e/<name>-failure.png. Then it closes Chromium and code-server, prints
 * "1 passed, 0 failed in N s" (or "0 passed, 1 failed") and exits 0 or 1.
 */
export async function startUiTest({ name, repo, port, viewport, log = testLog() }) {
  const out = path.join(repo, 'test-results', 'e2e');
  const cs = await startCodeServer(Number(process.env.HQLORA_E2E_PORT ?? port), path.join(out, name, 'cs'));
  const { page, close } = await launchBrowser(viewport ? { viewport } : {});
  const shot = (file) => page.screenshot({ path: path.join(out, file) }).then(() => log('screenshot', file));
  async function run(workspace, body) {
    let ok = false;
    try {
      page.on('pageerror', (e) => log('pageerror:', e.message));
      await page.goto(workbenchUrl(cs.base, workspace, { devPath: repo }));
      await waitForWorkbench(page);
      log('workbench visible');
      await body();
      ok = true;
    } catch (e) {
      console.error(`${name.toUpperCase()} TEST FAILED:`, e);
      await page.screenshot({ path: path.join(out, `${name}-failure.png`) }).catch(() => {});
    } finally {
      await close();
      await cs.stop();
    }
    console.log(`${ok ? '1 passed, 0 failed' : '0 passed, 1 failed'} in ${log.seconds().toFixed(1)} s`);
    process.exit(ok ? 0 : 1);
  }
  return { page, shot, run };
}

/** A workspace with a copy of the demo config (absolute model/data paths, few steps). */
export function makeWorkspace(dir, repo, configs) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const fx = path.join(repo, 'test', 'fixtures');
  for (const [name, o] of Object.entries(configs)) {
    fs.writeFileSync(path.join(dir, `${name}.hqlora.yaml`), `# E2E fixture: test/fixtures/demo.hqlora.yaml with ${o.steps} steps
model: ${path.join(fx, 'models', 'tiny-llama')}
adapter:
  levels: [{ rank: 16, alpha: 16 }, { rank: 4, alpha: 16 }, { rank: 4, alpha: 16 }]
data:
  train: ${path.join(fx, 'data', 'train.completion.jsonl')}
  eval: ${path.join(fx, 'data', 'eval.completion.jsonl')}
  format: completion
  source_max_len: 64
  target_max_len: 16
training: { max_steps: ${o.steps}, micro_batch_size: 4, gradient_accumulation_steps: ${o.accum ?? 1}, learning_rate: 0.003, lr_scheduler: cosine, warmup_steps: 2 }
eval: { every_steps: ${o.evalEvery ?? 10}, max_batches: 2 }
checkpoints: { every_steps: ${o.ckptEvery ?? 10}, keep: 2 }
logging: { every_steps: 1, adapter_stats_every: 2 }
output: { dir: runs }
hardware: { threads: 1 }
`);
  }
  return dir;
}

/**
 * A workspace with the demo config itself (test/fixtures/demo.hqlora.yaml) as `<name>.hqlora.yaml`: its relative
 * model and data paths made absolute, runs written to the workspace's runs/. Nothing else is changed.
 */
export function demoWorkspace(dir, repo, name = 'demo') {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const fx = path.join(repo, 'test', 'fixtures');
  const text = fs.readFileSync(path.join(fx, 'demo.hqlora.yaml'), 'utf8')
    .replace(/^# yaml-language-server: \$schema=.*$/m, `# yaml-language-server: $schema=${path.join(repo, 'schemas', 'run-config.schema.json')}`)
    .replace(/^(\s*(?:model|train|eval):\s*)((?:models|data)\/\S+)/gm, (_m, key, rel) => `${key}${path.join(fx, rel)}`)
    .replace(/^(\s*dir:\s*)\S+/m, '$1runs');
  for (const rel of ['models/tiny-llama', 'data/train.completion.jsonl', 'data/eval.completion.jsonl']) {
    if (!text.includes(path.join(fx, rel))) throw new Error(`demoWorkspace: ${rel} not found in demo.hqlora.yaml; update test/e2e/lib.mjs`);
  }
  fs.writeFileSync(path.join(dir, `${name}.hqlora.yaml`), text);
  return dir;
}

/** The trainer's events of a run folder (events.jsonl), parsed; a line cut mid-write is skipped. */
export function readEvents(runDir) {
  const file = path.join(runDir, 'events.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').flatMap((l) => { try { return l.trim() ? [JSON.parse(l)] : []; } catch { return []; } });
}
