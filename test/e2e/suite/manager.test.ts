// manager.test.ts — extension-host suite, inside a real VS Code (code-server) with the workspace made by
// test/e2e/run-ext-tests.mjs: commands, run manager states, stop/resume, webview message validation, and
// no orphaned trainer processes after 100 start/stop cycles. Every figure is printed.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import type { HqloraApi } from '../../../extension/extension';
import { prepareRun } from '../../../extension/job/job';
import { isSameProcessAlive, processesInGroup } from '../../../extension/registry/proc';
import type { Run } from '../../../extension/registry/run';

import { activate, waitFor, ws } from './host';

const LONG = 120_000; // waits on trainer runs: longer on 2 CI cores

let api: HqloraApi;

suite('H-QLoRA extension in a real extension host', () => {
  suiteSetup(async () => {
    ({ api } = await activate());
  });

  test('commands are registered', async () => {
    const all = new Set(await vscode.commands.getCommands(true));
    for (const id of ['hqlora.startRun', 'hqlora.stopRun', 'hqlora.saveCheckpoint', 'hqlora.resumeRun', 'hqlora.openDashboard', 'hqlora.showTrainerLog', 'hqlora.showLog']) {
      assert.ok(all.has(id), `${id} is not registered`);
    }
  });

  test('start → preparing → running → completed, with metrics, status bar and adapters', async () => {
    const t0 = Date.now();
    const config = vscode.Uri.file(path.join(ws(), 'quick.hqlora.yaml'));
    const seen = new Set<string>();
    const sub = api.runs.onDidChange(() => {
      if (api.runs.preparing) seen.add('preparing');
      for (const r of api.runs.liveRuns) seen.add(r.status);
      seen.add(`bar:${api.statusBar.text}`);
    });
    const id = (await vscode.commands.executeCommand<string | undefined>('hqlora.startRun', config)) ?? '';
    assert.ok(id, 'startRun returned no run');
    const run = api.runs.get(id) as Run;
    await api.runs.whenDone(run);
    sub.dispose();
    assert.equal(run.status, 'completed', run.record.message);
    assert.ok(seen.has('preparing') && seen.has('running'), `states seen: ${[...seen].join(', ')}`);
    assert.ok([...seen].some((s) => /^bar:\$\(sync~spin\) H-QLoRA \d+\/\d+ · loss \d+\.\d{3} · .+ left$/.test(s)), 'status bar never showed progress');
    const m = run.metrics;
    assert.equal(m.steps.x.length, 20);
    assert.ok(m.evals.x.length >= 1 && m.levels.series.length === 3, 'eval and per-level stats');
    for (const f of ['adapter/adapter.safetensors', 'adapter/adapter_metadata.json', 'peft/adapter_model.safetensors', 'peft/adapter_config.json']) {
      assert.ok(existsSync(path.join(id, f)), `missing ${f}`);
    }
    console.log(`completed run: ${m.steps.x.length} steps, ${m.evals.x.length} evals, ${m.levels.x.length} adapter_stats in ${Date.now() - t0} ms; status bar after: "${api.statusBar.text}"`);
  });

  test('stop is graceful (checkpoint, stopped) and resume continues from the checkpoint', async () => {
    const config = vscode.Uri.file(path.join(ws(), 'long.hqlora.yaml'));
    const id = (await vscode.commands.executeCommand<string | undefined>('hqlora.startRun', config)) ?? '';
    const run = api.runs.get(id) as Run;
    await waitFor('step 12', () => (run.metrics.lastStep?.step ?? 0) >= 12, LONG);
    // "Save Checkpoint Now" mid-run: a checkpoint of the step after the request, and the run goes on.
    const asked = run.metrics.lastStep?.step ?? 0;
    const saved = await vscode.commands.executeCommand<string | undefined>('hqlora.saveCheckpoint', id);
    assert.ok(saved && existsSync(path.join(saved, 'state.json')), `saveCheckpoint returned ${String(saved)}`);
    const savedStep = (JSON.parse(readFileSync(path.join(saved, 'state.json'), 'utf8')) as { step: number }).step;
    assert.ok(savedStep >= asked, `checkpoint of step ${savedStep}, requested at step ${asked}`);
    assert.ok(run.live, 'the run goes on after a saved checkpoint');
    await waitFor('a step after the saved checkpoint', () => (run.metrics.lastStep?.step ?? 0) > savedStep, LONG);
    console.log(`saved a checkpoint of step ${savedStep} (requested at step ${asked}); the run went on`);
    await vscode.commands.executeCommand('hqlora.stopRun', id);
    assert.equal(run.status, 'stopped', run.record.message);
    const stoppedAt = run.metrics.done?.step ?? 0;
    assert.ok(stoppedAt >= 12 && existsSync(path.join(id, 'checkpoints')), `stopped at ${stoppedAt}`);
    const resumed = await vscode.commands.executeCommand<string | undefined>('hqlora.resumeRun', id);
    assert.equal(resumed, id);
    await waitFor('resumed start event', () => run.metrics.start?.resumed_from_step != null, LONG);
    const from = run.metrics.start?.resumed_from_step ?? -1;
    assert.ok(from >= 10 && from <= stoppedAt, `resumed from ${from}, stopped at ${stoppedAt}`);
    await waitFor('a step after the resume', () => (run.metrics.lastStep?.step ?? 0) > from, LONG);
    await api.runs.stop(run);
    assert.equal(run.status, 'stopped');
    console.log(`stopped at step ${stoppedAt}, resumed from checkpoint step ${from}, stopped again at ${run.metrics.done?.step ?? '?'}`);
  });

  test('10,000 malformed webview messages: no exception, nothing executed', async () => {
    const d = api.dashboard;
    const before = { ...d.stats };
    const live = api.runs.liveRuns.length;
    let executed = 0;
    const spy = vscode.commands.registerCommand('hqlora.test.never', () => executed++);
    const known = api.runs.runs[0]?.id ?? '/x';
    let seed = 42;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const junk: unknown[] = [null, undefined, 0, -1, NaN, '', 'ready', [], [{ type: 'ready' }], true, { __proto__: { type: 'ready' } },
      { type: 'READY' }, { type: 'ready', extra: 1 }, { type: 'action' }, { type: 'action', action: 'rm -rf', runId: known },
      { type: 'action', action: 'stop', runId: 42 }, { type: 'action', action: 'stop', runId: '' }, { type: 'action', action: 'stop', runId: known, cmd: 'hqlora.test.never' },
      { type: 'selectRun', runId: 'x'.repeat(5000) }, { type: 'setOverlay', runIds: Array(9).fill(known) }, { type: 'setOverlay', runIds: [known, known] },
      { type: 'requestDiff', a: known }, { type: 'log', level: 'fatal', message: 'x' }, { type: 'log', level: 'info', message: 'y'.repeat(3000) },
      { type: 'executeCommand', command: 'hqlora.test.never' }, { type: 'constructor' }, JSON.parse('{"__proto__":{"type":"ready"}}')];
    const msgs: unknown[] = [];
    for (let i = 0; i < 10_000; i++) {
      const base = junk[i % junk.length];
      // Mutate a copy of an object template: random key removed, added, or a value of the wrong type.
      if (base && typeof base === 'object' && !Array.isArray(base) && rnd() < 0.5) {
        const o: Record<string, unknown> = { ...(base as Record<string, unknown>) };
        const r = rnd();
        if (r < 0.33) o[`k${i}`] = rnd();
        else if (r < 0.66) o.type = ['ready', 'action', 'stop', 1, null][Math.floor(rnd() * 5)];
        else o.runId = [1, {}, [], null, ''][Math.floor(rnd() * 5)];
        if (o.type === 'ready' && Object.keys(o).length === 1) o.bad = true;
        msgs.push(o);
      } else msgs.push(base);
    }
    const t0 = Date.now();
    for (const m of msgs) assert.doesNotThrow(() => d.receive(m));
    const ms = Date.now() - t0;
    await new Promise((r) => setImmediate(r));
    spy.dispose();
    const invalid = d.stats.invalid - before.invalid;
    assert.equal(d.stats.received - before.received, 10_000);
    assert.equal(invalid, 10_000, 'every malformed message is rejected');
    assert.equal(d.stats.actions - before.actions, 0, 'no action ran');
    assert.equal(executed, 0);
    assert.equal(api.runs.liveRuns.length, live, 'no run was started or stopped');
    console.log(`malformed messages: 10000 received, ${invalid} rejected by the schema, 0 actions, 0 exceptions, ${ms} ms`);
  });

  test('100 start/stop cycles leave no trainer process behind', async () => {
    const configPath = path.join(ws(), 'long.hqlora.yaml');
    const prepared = await prepareRun({ configPath, packageRoot: api.extension.extensionPath });
    const pids: number[] = [];
    const t0 = Date.now();
    let stoppedStatus = 0;
    for (let i = 0; i < 100; i++) {
      const run = api.runs.launch(prepared, configPath, { quiet: true });
      if (run.record.pid !== undefined) pids.push(run.record.pid);
      // stop at a random point of the trainer's life: before its signal handler exists, while loading, training
      if (i % 3 === 1) await waitFor('first event', () => run.metrics.start !== undefined || !run.live, 30_000);
      await api.runs.stop(run, 5_000);
      if (run.status === 'stopped') stoppedStatus++;
    }
    const ms = Date.now() - t0;
    const alive = pids.filter((p) => isSameProcessAlive(p, undefined));
    const groups = pids.flatMap((p) => processesInGroup(p));
    console.log(`start/stop cycles: 100 in ${ms} ms, ${pids.length} pids, ${stoppedStatus} ended 'stopped', ${alive.length} alive, ${groups.length} processes left in their groups`);
    assert.equal(pids.length, 100);
    assert.equal(alive.length, 0);
    assert.equal(groups.length, 0);
    assert.equal(stoppedStatus, 100);
  });
});
