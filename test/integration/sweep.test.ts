// sweep.test.ts — `hqlora sweep` end to end on the tiny fixtures (test/fixtures/sweep.hqsweep.yaml: 2 splits × 2
// datasets, scored on test/fixtures/mcq with the level ablation), with the real CLI and trainer:
// - an uninterrupted sweep writes the matrix (sweep-results.json valid against its schema, results.csv/.md);
// - the same sweep SIGKILLed KILLS times (8; 20 for the proof) at seeded moments (k more optimizer steps of a training cell, a cell being
//   scored, a trainer just launched; each read from the state and events files, not slept for), the CLI alone or
//   the CLI and the cells' trainers together as a crash would, and started again each time, ends with the same
//   sweep-results.json: every adapter bit for bit (sha256), every score exactly, every step loss the same; only
//   measured times differ. A trainer that outlived its sweep is re-attached, never started twice;
// - --dry-run lists the cells; a changed sweep file is refused without --add / --restart and nothing is deleted;
// - a failing cell is marked failed while the others go on, and --retry-failed reruns it.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readTrainCost } from '../../extension/sweep/results';
import { validateSweepResults } from '../../extension/sweep/schemas';
import { mulberry32 } from '../../extension/sweep/stats';
import { cli, fixtures, requireBuilds, root, runCli } from './helpers';

/**
 * SIGKILLs of the storm test: 8 in `npm test` (CI's time budget: each restart of the CLI costs about a second), 20
 * or more for the proof with `HQ_SWEEP_KILLS=20 node scripts/run-tests.mjs integration/sweep.test`.
 */
const KILLS = Number(process.env.HQ_SWEEP_KILLS ?? 8);

let tmp: string;
before(() => {
  requireBuilds();
  tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-sweep-e2e-'));
  // The fixture datasets cut to 160 examples each: 16 steps of 8 plus the 16 held out need no more, and tokenizing
  // is per cell.
  for (const f of ['train.completion.jsonl', 'train.alpaca.jsonl']) {
    writeFileSync(path.join(tmp, f), readFileSync(path.join(fixtures, 'data', f), 'utf8').split('\n').slice(0, 160).join('\n') + '\n');
  }
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The fixture sweep with absolute paths and its own output folder. */
function sweepFile(name: string, edit: (text: string) => string = (t) => t): string {
  let text = readFileSync(path.join(fixtures, 'sweep.hqsweep.yaml'), 'utf8')
    .replace('base: sweep-base.hqlora.yaml', `base: ${path.join(fixtures, 'sweep-base.hqlora.yaml')}`)
    .replace(/train: data\//g, `train: ${tmp}/`)
    .replace('path: mcq,', `path: ${path.join(fixtures, 'mcq')},`)
    .replace('dir: ../../sweeps', `dir: ${path.join(tmp, name)}`);
  text = edit(text);
  const file = path.join(tmp, `${name}.hqsweep.yaml`);
  writeFileSync(file, text);
  return file;
}

const resultsOf = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(path.join(tmp, name, name, 'sweep-results.json'), 'utf8')) as Record<string, unknown>;

/** sweep-results.json without what is measured (times, throughput) or names the sweep and its folder. */
function comparable(r: Record<string, unknown>, name: string): unknown {
  const dir = path.join(tmp, name, name);
  const { name: _name, ...rest } = r;
  return JSON.parse(JSON.stringify(rest, (k, v: unknown) => (['train_s', 'tokens_per_s', 'time_vs_baseline', 'sweep_file'].includes(k) ? undefined
    : typeof v === 'string' ? v.split(dir).join('<dir>') : v)));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until it holds (true) or `gone` does (false). */
async function poll(cond: () => boolean, gone: () => boolean): Promise<boolean> {
  while (!gone()) {
    if (cond()) return true;
    await sleep(20);
  }
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Progress {
  /** The state file's last write. */
  updated: string;
  /** Step events in every cell's events.jsonl. */
  steps: number;
  /** Trainer launches so far (the cells' attempts). */
  launches: number;
  /** A cell is training and its recorded trainer is alive. */
  training: boolean;
  /** A cell is being scored. */
  evaluating: boolean;
  /** Some cell is still to train (queued or training). */
  untrained: boolean;
  /** The recorded trainers that are alive. */
  pids: number[];
}

/** Where the sweep in `dir` stands, from its state file and its cells' events files: what the kill moments wait for. */
function progress(dir: string): Progress {
  let cells: { status: string; pid?: number | null; attempts: number; run_dir: string }[] = [];
  let updated = '';
  try {
    const st = JSON.parse(readFileSync(path.join(dir, 'sweep-state.json'), 'utf8')) as { updated: string; cells: typeof cells };
    ({ cells, updated } = st);
  } catch {
    /* not written yet */
  }
  let steps = 0;
  for (const c of cells) {
    try {
      steps += readFileSync(path.join(c.run_dir, 'events.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"type":"step"')).length;
    } catch {
      /* not started */
    }
  }
  const pids = cells.filter((c) => c.status === 'training' && c.pid && alive(c.pid)).map((c) => c.pid!);
  return { updated, steps, launches: cells.reduce((a, c) => a + c.attempts, 0), training: pids.length > 0,
    evaluating: cells.some((c) => c.status === 'evaluating'), untrained: cells.length === 0 || cells.some((c) => c.status === 'queued' || c.status === 'training'), pids };
}

describe('hqlora sweep', () => {
  it('runs the 2 × 2 sweep uninterrupted and writes the matrix', async () => {
    const file = sweepFile('ref');
    const r = await runCli(['sweep', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = resultsOf('ref');
    assert.ok(validateSweepResults(res), JSON.stringify(validateSweepResults.errors));
    const cells = res.cells as { id: string; status: string; adapter_sha256: string | null; mmlu: { n: number } | null }[];
    assert.deepEqual(cells.map((c) => c.status), ['done', 'done', 'done', 'done']);
    for (const c of cells) {
      assert.match(c.adapter_sha256 ?? '', /^[0-9a-f]{64}$/);
      assert.equal(c.mmlu?.n, 60);
    }
    const rows = res.rows as { split: string; columns: { diff: unknown; ablation: unknown[]; eval_loss: number | null }[] }[];
    assert.deepEqual(rows.map((x) => x.split), ['32', '16,4,4,4,4']);
    assert.equal(rows[0]!.columns[0]!.diff, null);
    assert.ok(rows[1]!.columns.every((c) => c.diff !== null && c.ablation.length === 5 && c.eval_loss !== null));
    const md = readFileSync(path.join(tmp, 'ref', 'ref', 'results.md'), 'utf8');
    assert.match(md, /\| 16,4,4,4,4 \| /);
    assert.match(md, /## Level ablation/);
    assert.equal(readFileSync(path.join(tmp, 'ref', 'ref', 'results.csv'), 'utf8').split('\n').length, 1 + 4 + 1);
    // Each cell is an ordinary run folder (run.json, events, adapters, eval.json).
    for (const c of cells) {
      for (const f of ['run.json', 'events.jsonl', 'adapter/adapter.safetensors', 'peft/adapter_model.safetensors', 'eval.json']) {
        assert.ok(existsSync(path.join(tmp, 'ref', 'ref', 'cells', c.id, f)), `${c.id}/${f}`);
      }
    }
    // Running it again does nothing: every cell is kept.
    const again = await runCli(['sweep', file]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /4 cells, 0 to run/);
  });

  it(`killed ${KILLS} times at seeded moments read from the state and events files, resumed each time, ends with the uninterrupted results`, async () => {
    const file = sweepFile('storm');
    const rand = mulberry32(2026);
    const dir = path.join(tmp, 'storm', 'storm');
    type Kind = 'training' | 'scoring' | 'launch';
    // Per 4 kills: 2 while a cell trains (the CLI alone, then with the trainers: a crash of the machine), 1 while a
    // cell is scored, 1 right after a trainer's launch (with or without it), in a seeded order.
    const bag: { kind: Kind; withTrainers: boolean }[] = Array.from({ length: KILLS }, (_, i) => [
      { kind: 'training' as const, withTrainers: false }, { kind: 'training' as const, withTrainers: true },
      { kind: 'scoring' as const, withTrainers: false }, { kind: 'launch' as const, withTrainers: i % 8 === 3 },
    ][i % 4]!);
    for (let i = bag.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [bag[i], bag[j]] = [bag[j]!, bag[i]!];
    }
    const kinds: Record<Kind, number> = { training: 0, scoring: 0, launch: 0 };
    let kills = 0;
    let trainerKills = 0;
    let reattached = 0;
    // The first trainer left running by a CLI-only kill is paused (SIGSTOP) until the next sweep process says it
    // re-attached: on a loaded machine it could otherwise finish before that process is up.
    let paused: number | undefined;
    let pausedOnce = false;
    const unpause = (): void => {
      if (paused !== undefined) process.kill(-paused, 'SIGCONT');
      paused = undefined;
    };
    try {
      for (let attempt = 0; ; attempt++) {
        assert.ok(attempt < 4 * KILLS, 'the sweep completes');
        const before = progress(dir);
        // Its own process group: the kill takes the CLI and its scoring child, never the detached trainers.
        const child: ChildProcess = spawn(process.execPath, [cli, 'sweep', file], {
          cwd: root, env: { ...process.env, HQLORA_TRAINER: '' }, stdio: ['ignore', 'pipe', 'ignore'], detached: true,
        });
        let out = '';
        child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
        let closed = false;
        const exited = new Promise<number | null>((resolve) => child.once('close', (code) => {
          closed = true;
          resolve(code);
        }));
        const resumePaused = (): void => {
          if (paused !== undefined && out.includes(`re-attached to its running trainer (pid ${paused})`)) unpause();
        };
        // The moment: k more optimizer steps of a training cell, a cell being scored (up to 0.3 s into its
        // scoring), or a trainer just launched. Once every cell is trained, only scoring moments are left.
        const moment = bag[kills];
        const k = 1 + Math.floor(rand() * 2);
        const jitter = rand() * 300;
        let kind: Kind = moment?.kind ?? 'scoring';
        const reached = (): boolean => {
          resumePaused();
          if (!moment) return false; // every kill done: this attempt runs to the end
          const now = progress(dir);
          kind = now.untrained ? moment.kind : 'scoring';
          if (kind === 'training') return now.steps >= before.steps + k && now.training;
          if (kind === 'scoring') return now.evaluating && now.updated !== before.updated; // this attempt's scoring
          return now.launches > before.launches && now.training;
        };
        const hit = await poll(reached, () => closed);
        if (hit && kind === 'scoring') await sleep(jitter);
        if (!hit || closed) {
          reattached += (out.match(/re-attached/g) ?? []).length;
          assert.equal(await exited, 0, `the sweep, not killed, completes:\n${out}`);
          break;
        }
        process.kill(-child.pid!, 'SIGKILL');
        await exited;
        reattached += (out.match(/re-attached/g) ?? []).length;
        kills++;
        kinds[kind]++;
        const alive = progress(dir).pids;
        if (moment?.withTrainers) {
          unpause();
          for (const pid of alive) {
            try {
              process.kill(-pid, 'SIGKILL');
              trainerKills++;
            } catch {
              /* it finished meanwhile */
            }
          }
        } else if (!pausedOnce && kind === 'training' && alive[0] !== undefined) {
          paused = alive[0];
          pausedOnce = true;
          process.kill(-paused, 'SIGSTOP');
        }
      }
    } finally {
      unpause();
    }
    assert.ok(kills >= KILLS, `${kills} kills (${JSON.stringify(kinds)})`);
    assert.ok(trainerKills >= 1 && kinds.training >= 1 && kinds.scoring >= 1, `${trainerKills} trainer kills, ${JSON.stringify(kinds)}`);
    assert.ok(pausedOnce && reattached >= 1, 'a trainer that outlived its sweep was re-attached, not started again');
    const storm = resultsOf('storm');
    assert.ok(validateSweepResults(storm), JSON.stringify(validateSweepResults.errors));
    assert.deepEqual(comparable(storm, 'storm'), comparable(resultsOf('ref'), 'ref'));
    // Every optimizer step's loss (the last report of each step) equals the uninterrupted run's.
    for (const id of readdirSync(path.join(tmp, 'ref', 'ref', 'cells'))) {
      const a = readTrainCost(path.join(tmp, 'ref', 'ref', 'cells', id, 'events.jsonl'));
      const b = readTrainCost(path.join(dir, 'cells', id, 'events.jsonl'));
      assert.deepEqual(b?.losses, a?.losses, id);
    }
    const st = JSON.parse(readFileSync(path.join(dir, 'sweep-state.json'), 'utf8')) as { cells: { attempts: number }[] };
    assert.ok(st.cells.some((c) => c.attempts > 1), `some cell was resumed: attempts ${st.cells.map((c) => c.attempts).join(',')}`);
  });

  it('--dry-run lists the cells; a changed sweep file is refused until --add; --only runs one cell', async () => {
    const dry = await runCli(['sweep', sweepFile('ref'), '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /4 cells/);
    assert.match(dry.stdout, /r16-4-4-4-4_alpaca +16,4,4,4,4 +alpaca +0 +16 +640 +[0-9.]+ [KM]iB/);
    assert.match(dry.stdout, /done/);
    // Add a seed: 4 new cells. Without --add/--restart (not a terminal) nothing starts and nothing is deleted.
    const file = sweepFile('ref', (t) => t.replace('\n\neval:', '\n  seed: [0]\n  training.learning_rate: [0.002]\n\neval:'));
    const refused = await runCli(['sweep', file]);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /the sweep file changed since the sweep started: 4 new cell\(s\)/);
    assert.match(refused.stderr, /--add/);
    assert.equal(readdirSync(path.join(tmp, 'ref', 'ref', 'cells')).length, 4);
    const one = await runCli(['sweep', file, '--add', '--only', 'r32_completion_s0_learning_rate0.002']);
    assert.equal(one.code, 0, one.stdout + one.stderr);
    const st = JSON.parse(readFileSync(path.join(tmp, 'ref', 'ref', 'sweep-state.json'), 'utf8')) as { cells: { id: string; status: string }[] };
    assert.deepEqual(st.cells.map((c) => c.status), ['done', 'queued', 'queued', 'queued', 'removed', 'removed', 'removed', 'removed']);
  });

  it('a failing cell is marked failed, the others go on; --retry-failed reruns it', async () => {
    const broken = path.join(tmp, 'broken.completion.jsonl');
    const good = readFileSync(path.join(tmp, 'train.completion.jsonl'), 'utf8');
    writeFileSync(broken, `${good}{"prompt": 3}\n`);
    const file = sweepFile('fail', (t) => t.replace(/ {4}- \{ name: alpaca, train: [^}]*\}/, `    - { name: broken, train: ${broken}, format: completion }`)
      .replace('- [16, 4, 4, 4, 4]', '').replace('total_rank: 32', ''));
    const r = await runCli(['sweep', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /r32_broken: failed: .*broken\.completion\.jsonl:161/);
    assert.match(r.stdout, /1 cell\(s\) failed: r32_broken; rerun them with --retry-failed/);
    const res = resultsOf('fail');
    assert.deepEqual((res.cells as { status: string }[]).map((c) => c.status), ['done', 'failed']);
    writeFileSync(broken, good);
    const retry = await runCli(['sweep', file, '--retry-failed']);
    assert.equal(retry.code, 0, retry.stdout + retry.stderr);
    assert.deepEqual((resultsOf('fail').cells as { status: string }[]).map((c) => c.status), ['done', 'done']);
  });
});
