// evaluate.ts — "H-QLoRA: Evaluate Adapter": scores a finished run's adapter against its NF4 base model (eval loss
// and multiple-choice accuracy), optionally as the level ablation (levels 1..k cumulatively), through the same
// module as `hqlora eval` (job/evaluate.ts: tokenize the questions, run `hqlora-train eval`, save
// <run>/eval.json + <run>/eval.md). Progress (row, %, ETA) is a cancellable notification; the table opens as a
// Markdown preview and is also written to the H-QLoRA log. Takes a run folder (string or Uri: the dashboard, the
// Explorer) or asks with a quick pick of the known runs that have an adapter. Runs native code: trusted workspaces only.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import { type Cmd, requireTrust } from './run';
import type { Ctx } from '../ctx';
import { evaluateRun } from '../job/evaluate';
import { formatMcqLine, formatProgress } from '../eval/table';
import { formatError } from '../core/errors';

const hasAdapter = (runDir: string): boolean => existsSync(path.join(runDir, 'adapter', 'adapter.safetensors'));

/** The run folder to evaluate: the argument, else a quick pick of the runs with a final adapter (newest first). */
async function pickRun(ctx: Ctx, arg: unknown): Promise<string | undefined> {
  const given = arg instanceof vscode.Uri ? arg.fsPath : typeof arg === 'string' ? arg : undefined;
  if (given) return given;
  const runs = ctx.runs.runs.filter((r) => hasAdapter(r.id));
  if (runs.length === 0) {
    const picked = await vscode.window.showOpenDialog({
      canSelectFolders: true, canSelectFiles: false, canSelectMany: false, openLabel: 'Evaluate',
      title: 'No finished H-QLoRA run is known: pick a run folder (holding run.json and adapter/)',
    });
    return picked?.[0]?.fsPath;
  }
  const items = runs.map((r) => ({ label: r.name, description: r.status, detail: r.id, runDir: r.id }));
  const choice = await vscode.window.showQuickPick(items, { title: 'Evaluate which run?', matchOnDetail: true });
  return choice?.runDir;
}

/** eval.mcq.path of the run's run.json, if it has one. */
function configuredMcq(runDir: string): string | undefined {
  try {
    const run = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as { eval?: { mcq?: { path?: string } } };
    return run.eval?.mcq?.path;
  } catch {
    return undefined;
  }
}

export function evaluateCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    if (!(await requireTrust('runs the native trainer hqlora-train on paths taken from this workspace, so it only evaluates adapters'))) return undefined;
    const runDir = await pickRun(ctx, arg);
    if (!runDir) return undefined;

    // Multiple-choice data: the run's eval.mcq, else ask (skipping it leaves the eval loss only).
    let mcq = configuredMcq(runDir);
    if (!mcq) {
      const picked = await vscode.window.showOpenDialog({
        canSelectFolders: true, canSelectFiles: true, canSelectMany: false, openLabel: 'Use these questions',
        title: 'Multiple-choice data: a Hendrycks MMLU folder (dev/ val/ test/), a <subject>_<split>.csv, or a QLoRA {subject,input,output} JSON (Esc: eval loss only)',
      });
      mcq = picked?.[0]?.fsPath;
    }
    const mode = await vscode.window.showQuickPick(
      [
        { label: 'Base vs adapter', description: 'NF4 base model, then base + every level', ablation: false },
        { label: 'Level ablation', description: 'NF4 base, then levels 1, 1+2, …, 1..k cumulatively', ablation: true },
      ],
      { title: `Evaluate ${path.basename(runDir)}` },
    );
    if (!mode) return undefined;

    ctx.log.info(`evaluate ${runDir}${mcq ? ` on ${mcq}` : ''}${mode.ablation ? ' (level ablation)' : ''}`);
    try {
      const out = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `H-QLoRA: evaluating ${path.basename(runDir)}`, cancellable: true },
        async (progress, token) => {
          const abort = new AbortController();
          token.onCancellationRequested(() => abort.abort(new Error('cancelled')));
          let reported = 0;
          const report = (message: string, fraction?: number): void => {
            const pct = fraction === undefined ? 0 : Math.max(0, Math.min(100, 100 * fraction));
            progress.report({ message, increment: pct > reported ? pct - reported : 0 });
            reported = Math.max(reported, pct);
          };
          return evaluateRun({
            target: runDir, packageRoot: ctx.extension.extensionPath, ablation: mode.ablation, signal: abort.signal,
            ...(mcq ? { mcq } : {}),
            ...(ctx.settings.trainerPath ? { trainerSetting: ctx.settings.trainerPath } : {}),
            onPrepare: (d, t) => report(`tokenizing questions ${d}/${t}`),
            onProgress: (e) => report(formatProgress(e), e.total > 0 ? e.done / e.total : undefined),
            onMcq: (e) => ctx.log.info(formatMcqLine(e)),
            onWarning: (m) => ctx.log.warn(m),
          });
        },
      );
      ctx.log.info(`evaluation saved: ${out.jsonFile}, ${out.mdFile}\n${out.markdown}`);
      await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.file(out.mdFile));
      return out.mdFile;
    } catch (err) {
      ctx.log.error(formatError(err, true));
      if (!/evaluation cancelled/.test(String((err as Error)?.message))) {
        const choice = await vscode.window.showErrorMessage(`H-QLoRA: ${formatError(err)}`, 'Show Log');
        if (choice) ctx.log.show();
      }
      return undefined;
    }
  };
}
