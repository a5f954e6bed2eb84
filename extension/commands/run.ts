// commands/run.ts — the extension's commands (palette category "H-QLoRA"), each a factory over the Ctx (no globals).
// Every command that cannot act says why (untrusted workspace, no config, no run).
import path from 'node:path';

import * as vscode from 'vscode';

import type { Ctx } from '../ctx';
import { HqError, formatError } from '../core/errors';
import { type GpuInfo, detectGpus } from '../model/memory';
import type { Run } from '../registry/run';

export type Cmd = (...args: unknown[]) => unknown;

const CONFIG_GLOB = '**/*.hqlora.{yaml,yml}';
const isConfig = (p: string): boolean => /\.hqlora\.ya?ml$/.test(p);

/**
 * Launching runs executes the native trainer on workspace paths, and exports run the native addon on them: only in a
 * trusted workspace. `what` names the refused action in the message.
 */
export async function requireTrust(what = 'runs the native trainer hqlora-train on paths taken from this workspace, so it only starts runs'): Promise<boolean> {
  if (vscode.workspace.isTrusted) return true;
  const choice = await vscode.window.showErrorMessage(
    `H-QLoRA ${what} in a trusted workspace.`,
    'Manage Workspace Trust',
  );
  if (choice) await vscode.commands.executeCommand('workbench.trust.manage');
  return false;
}

/** "Start H-QLoRA Run": the given or active *.hqlora.yaml, else a quick pick of the workspace's configs. */
export function startRunCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    if (!(await requireTrust())) return undefined;
    const file = await pickConfig(arg);
    if (!file) return undefined;
    const gpus = await pickGpuCount(await detectGpus());
    if (gpus === null) return undefined;
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === file);
    if (doc?.isDirty) await doc.save();
    try {
      const run = await ctx.runs.start(file, gpus === undefined ? {} : { gpus });
      if (run) ctx.dashboard.createOrShow(run.id);
      return run?.id;
    } catch (err) {
      ctx.log.error(formatError(err, true));
      await showError(ctx, err);
      return undefined;
    }
  };
}

/** The items of Start Run's GPU count pick: the config's own hardware.gpus first, then 1..N of the machine's GPUs. */
export function gpuCountItems(gpus: GpuInfo[]): { label: string; description: string; gpus: number | undefined }[] {
  const names = [...new Set(gpus.map((g) => g.name))].join(', ');
  return [
    { label: 'As the config says', description: 'hardware.gpus (1 when not set)', gpus: undefined },
    ...gpus.map((_, k) => ({
      label: `${k + 1} GPU${k ? 's' : ''}`,
      description: k === 0 ? 'one rank' : `${k + 1} data-parallel ranks, global batch × ${k + 1} (${names})`,
      gpus: k + 1,
    })),
  ];
}

/**
 * On a machine with several GPUs, how many Start Run trains on (hqlora run --gpus N); undefined: the config's own
 * hardware.gpus (also where there is at most one GPU, without asking); null: the pick was dismissed.
 */
async function pickGpuCount(gpus: GpuInfo[] | null): Promise<number | undefined | null> {
  if (!gpus || gpus.length <= 1) return undefined;
  const picked = await vscode.window.showQuickPick(gpuCountItems(gpus), {
    title: `Start H-QLoRA Run: this machine has ${gpus.length} GPUs`,
    placeHolder: 'Train on how many GPUs?',
  });
  return picked ? picked.gpus : null;
}

async function pickConfig(arg: unknown): Promise<string | undefined> {
  if (arg instanceof vscode.Uri && isConfig(arg.fsPath)) return arg.fsPath;
  if (typeof arg === 'string' && isConfig(arg)) return arg;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active?.scheme === 'file' && isConfig(active.fsPath)) return active.fsPath;
  const found = await vscode.workspace.findFiles(CONFIG_GLOB, '**/node_modules/**', 200);
  if (found.length === 0) {
    void vscode.window.showErrorMessage('No *.hqlora.yaml run config in this workspace: create one with "H-QLoRA: New H-QLoRA Run Config", or open one.');
    return undefined;
  }
  const items = found
    .map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(path.dirname(u.fsPath)), file: u.fsPath }))
    .sort((a, b) => a.description.localeCompare(b.description) || a.label.localeCompare(b.label));
  const picked = items.length === 1 ? items[0] : await vscode.window.showQuickPick(items, { title: 'Start H-QLoRA Run', placeHolder: 'Pick a run config' });
  return picked?.file;
}

/** Picks a run: the given id, else the only candidate, else a quick pick. */
async function pickRun(ctx: Ctx, arg: unknown, candidates: Run[], title: string): Promise<Run | undefined> {
  if (typeof arg === 'string') return ctx.runs.get(arg);
  if (arg instanceof vscode.Uri) return ctx.runs.get(arg.fsPath);
  if (candidates.length <= 1) return candidates[0];
  const picked = await vscode.window.showQuickPick(
    candidates.map((r) => ({ label: r.name, description: r.status, detail: r.record.message, run: r })),
    { title },
  );
  return picked?.run;
}

/** "Stop Run": graceful (the trainer checkpoints and exits 3); the process group is killed after the timeout. */
export function stopRunCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<void> => {
    if (arg === undefined && ctx.runs.liveRuns.length === 0 && ctx.runs.cancelPreparing()) return;
    const run = await pickRun(ctx, arg, ctx.runs.liveRuns, 'Stop H-QLoRA Run');
    if (!run || !run.live) {
      void vscode.window.showInformationMessage('No H-QLoRA run is training.');
      return;
    }
    await ctx.runs.stop(run);
  };
}

/**
 * "Save Checkpoint Now": the running trainer writes a checkpoint after its current step and goes on training (for an
 * evaluation or a merge mid-run, or before something risky). Returns the checkpoint folder, or undefined.
 */
export function saveCheckpointCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    const run = await pickRun(ctx, arg, ctx.runs.liveRuns, 'Save a Checkpoint of an H-QLoRA Run');
    if (!run || !run.live) {
      void vscode.window.showInformationMessage('No H-QLoRA run is training.');
      return undefined;
    }
    const ckpt = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `H-QLoRA: checkpoint of ${run.name} after the current step` },
      () => ctx.runs.saveCheckpoint(run),
    );
    if (!ckpt) {
      void vscode.window.showWarningMessage(`H-QLoRA ${run.name} ended before it wrote the checkpoint: ${run.record.message}`);
      return undefined;
    }
    void vscode.window.showInformationMessage(`H-QLoRA ${run.name}: checkpoint of step ${ckpt.step} written to ${ckpt.path}`);
    return ckpt.path;
  };
}

/** "Resume Run": continues a stopped (or failed) run from its newest complete checkpoint, in the same folder. */
export function resumeRunCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    if (!(await requireTrust())) return undefined;
    const candidates = ctx.runs.runs.filter((r) => r.status === 'stopped' || r.status === 'failed');
    const run = await pickRun(ctx, arg, candidates, 'Resume H-QLoRA Run');
    if (!run) {
      void vscode.window.showInformationMessage('No stopped H-QLoRA run to resume.');
      return undefined;
    }
    if (run.live) {
      void vscode.window.showInformationMessage(`${run.name} is still running.`);
      return undefined;
    }
    // The config it was started from, or (for runs found on disk) its own resolved run.json.
    const config = run.record.configFile || path.join(run.id, 'run.json');
    try {
      const r = await ctx.runs.start(config, { resumeRunDir: run.id });
      if (r) ctx.dashboard.createOrShow(r.id);
      return r?.id;
    } catch (err) {
      ctx.log.error(formatError(err, true));
      await showError(ctx, err);
      return undefined;
    }
  };
}

export function openDashboardCommand(ctx: Ctx): Cmd {
  return (arg?: unknown) => ctx.dashboard.createOrShow(typeof arg === 'string' ? arg : undefined);
}

export function showTrainerLogCommand(ctx: Ctx): Cmd {
  return () => ctx.trainerLog.show(true);
}

export function showLogCommand(ctx: Ctx): Cmd {
  return () => ctx.log.show(true);
}

/** Tells the user once when a run this window follows ends. */
export function notifyOnFinish(ctx: Ctx): vscode.Disposable {
  const seen = new Map<string, string>();
  return ctx.runs.onDidChange((run) => {
    if (!run) return;
    const prev = seen.get(run.id);
    seen.set(run.id, run.status);
    if (prev === undefined || (prev !== 'running' && prev !== 'preparing') || run.live) return;
    if (run.status === 'completed') {
      void vscode.window.showInformationMessage(`H-QLoRA ${run.name} completed: ${run.record.message}`, 'Open Dashboard', 'Reveal Adapter')
        .then((c) => c === 'Open Dashboard' ? ctx.dashboard.createOrShow(run.id)
          : c ? vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(path.join(run.id, 'adapter'))) : undefined);
    } else if (run.status === 'stopped') {
      void vscode.window.showInformationMessage(`H-QLoRA ${run.name} stopped: ${run.record.message}`);
    } else {
      void vscode.window.showErrorMessage(`H-QLoRA ${run.name} failed: ${run.record.message}`, 'Show Trainer Log')
        .then((c) => c && ctx.trainerLog.show());
    }
  });
}

/** An HqError with a file position offers to jump there. */
async function showError(ctx: Ctx, err: unknown): Promise<void> {
  const where = err instanceof HqError ? err.where : {};
  const actions = where.file && where.line ? ['Go to Problem', 'Show Log'] : ['Show Log'];
  const choice = await vscode.window.showErrorMessage(`H-QLoRA: ${formatError(err)}`, ...actions);
  if (choice === 'Show Log') ctx.log.show();
  if (choice === 'Go to Problem' && where.file && where.line) {
    const pos = new vscode.Position(where.line - 1, Math.max(0, (where.col ?? 1) - 1));
    await vscode.window.showTextDocument(vscode.Uri.file(where.file), { selection: new vscode.Range(pos, pos) });
  }
}
