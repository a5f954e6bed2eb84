// sweep.ts — "H-QLoRA: Start Sweep" (the given or active *.hqsweep.yaml, else a quick pick) and "H-QLoRA: Copy
// Sweep Matrix": the sweep module (extension/sweep/runner.ts, the same code as `hqlora sweep`) in the extension
// host, under a cancellable progress notification. Cancelling stops the running cells gracefully (each
// checkpoints); starting it again continues. Trainers are detached: a window reload leaves them running, and the
// next start re-attaches to them. A changed sweep file is a modal question: add the new cells, or start over.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import type { Cmd } from './run';
import { requireTrust } from './run';
import type { Ctx } from '../ctx';
import { formatError } from '../core/errors';
import { RESULTS_JSON } from '../sweep/results';
import { runSweep } from '../sweep/runner';
import { loadSweep } from '../sweep/spec';
import { describeChanges } from '../sweep/state';

const SWEEP_GLOB = '**/*.hqsweep.{yaml,yml}';
const isSweep = (p: string): boolean => /\.hqsweep\.ya?ml$/.test(p);
/** Sweeps running in this window, by sweep file (one at a time per file; the lock refuses a second anyway). */
const running = new Map<string, AbortController>();

async function pickSweep(arg: unknown, title: string): Promise<string | undefined> {
  if (arg instanceof vscode.Uri && isSweep(arg.fsPath)) return arg.fsPath;
  if (typeof arg === 'string' && isSweep(arg)) return arg;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active?.scheme === 'file' && isSweep(active.fsPath)) return active.fsPath;
  const found = await vscode.workspace.findFiles(SWEEP_GLOB, '**/node_modules/**', 200);
  if (found.length === 0) {
    void vscode.window.showErrorMessage('No *.hqsweep.yaml sweep file in this workspace: see "Rank-split sweeps" in the README for one.');
    return undefined;
  }
  const items = found.map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(path.dirname(u.fsPath)), file: u.fsPath }));
  const picked = items.length === 1 ? items[0] : await vscode.window.showQuickPick(items, { title, placeHolder: 'Pick a sweep file' });
  return picked?.file;
}

export function startSweepCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    if (!(await requireTrust())) return undefined;
    const file = await pickSweep(arg, 'Start Sweep');
    if (!file) return undefined;
    if (running.has(file)) {
      void vscode.window.showInformationMessage(`H-QLoRA: the sweep ${path.basename(file)} is already running in this window.`);
      return undefined;
    }
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === file);
    if (doc?.isDirty) await doc.save();
    const abort = new AbortController();
    running.set(file, abort);
    try {
      const sweep = await loadSweep(file);
      const outcome = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `H-QLoRA sweep ${sweep.name}`, cancellable: true },
        (progress, token) => {
          token.onCancellationRequested(() => abort.abort(new Error('cancelled')));
          const total = sweep.cells.length;
          return runSweep({
            sweep, packageRoot: ctx.extension.extensionPath, signal: abort.signal,
            ...(ctx.settings.trainerPath ? { trainerSetting: ctx.settings.trainerPath } : {}),
            log: (line) => ctx.log.info(`sweep ${sweep.name}: ${line}`),
            onState: (st) => {
              const done = st.cells.filter((c) => c.status === 'done').length;
              const now = st.cells.find((c) => c.status === 'training' || c.status === 'evaluating');
              progress.report({ message: `${done}/${total} cells done${now ? ` · ${now.id} ${now.status}` : ''}` });
              ctx.sweepPanel.sweepChanged(file);
            },
            decide: async (ch) => {
              const add = 'Add the New Cells';
              const restart = 'Start Over';
              const pick = await vscode.window.showWarningMessage(
                `The sweep file changed since the sweep started: ${describeChanges(ch)}.`,
                { modal: true, detail: 'Adding keeps every finished cell (a changed cell\'s old folder is moved aside). Starting over moves the whole sweep folder aside. Nothing is deleted.' },
                add, restart,
              );
              return pick === add ? 'add' : pick === restart ? 'restart' : 'cancel';
            },
          });
        },
      );
      const failed = outcome.state.cells.filter((c) => c.status === 'failed');
      const open = 'Open Results';
      const msg = outcome.exitCode === 3 ? `stopped; Start Sweep continues it` : failed.length ? `${failed.length} cell(s) failed: ${failed.map((c) => c.id).join(', ')}` : 'every cell done';
      void vscode.window.showInformationMessage(`H-QLoRA sweep ${sweep.name}: ${msg}.`, open).then(async (c) => {
        if (c === open) await vscode.window.showTextDocument(vscode.Uri.file(path.join(sweep.dir, 'results.md')));
      });
      return path.join(sweep.dir, RESULTS_JSON);
    } catch (err) {
      ctx.log.error(formatError(err, true));
      void vscode.window.showErrorMessage(`H-QLoRA: ${formatError(err)}`);
      return undefined;
    } finally {
      running.delete(file);
    }
  };
}

/** "Stop Sweep": the running cells write a checkpoint and stop; Start Sweep continues. */
export function stopSweepCommand(): Cmd {
  return (): boolean => {
    for (const a of running.values()) a.abort(new Error('stopped'));
    return running.size > 0;
  };
}

/** "Open Sweep Results": the sweep results panel (every cell's loss curve, the sortable cell matrix) on a sweep file. */
export function openSweepResultsCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    // From the Sweeps tree: its sweep node ({ kind: 'sweep', file }).
    const fromTree = arg && typeof arg === 'object' && 'file' in arg && typeof arg.file === 'string' ? arg.file : undefined;
    const file = fromTree ?? (await pickSweep(arg, 'Open Sweep Results'));
    if (!file) return undefined;
    ctx.sweepPanel.createOrShow(file);
    return file;
  };
}

/** "Copy Sweep Matrix": results.md or results.csv of a sweep to the clipboard. */
export function copySweepMatrixCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<void> => {
    const file = await pickSweep(arg, 'Copy Sweep Matrix');
    if (!file) return;
    try {
      const sweep = await loadSweep(file);
      const pick = await vscode.window.showQuickPick([{ label: 'Markdown', file: 'results.md' }, { label: 'CSV', file: 'results.csv' }], { title: 'Copy the matrix as' });
      if (!pick) return;
      await vscode.env.clipboard.writeText(readFileSync(path.join(sweep.dir, pick.file), 'utf8'));
      void vscode.window.showInformationMessage(`H-QLoRA: copied ${pick.file} of sweep ${sweep.name}.`);
    } catch (err) {
      ctx.log.error(formatError(err, true));
      void vscode.window.showErrorMessage(`H-QLoRA: ${formatError(err)}`);
    }
  };
}
