// commands.ts — the extension's commands, each a factory over the Ctx (no globals).
import path from 'node:path';

import * as vscode from 'vscode';

import type { Ctx } from './ctx';
import { HqError, formatError } from './run/errors';
import { formatEval, formatStart, formatStep, formatStepShort } from './run/format';
import { startRun } from './run/job';

export type Cmd = (...args: unknown[]) => unknown;

const CONFIG_SUFFIXES = ['.hqlora.yaml', '.hqlora.yml'];

/** "H-QLoRA: Start H-QLoRA Run": runs the active (or given) *.hqlora.yaml through the same run module as the CLI. */
export function startRunCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown) => {
    if (!vscode.workspace.isTrusted) {
      const choice = await vscode.window.showErrorMessage(
        'H-QLoRA runs the native trainer hqlora-train on paths taken from this workspace, so it only runs in a trusted workspace.',
        'Manage Workspace Trust',
      );
      if (choice) await vscode.commands.executeCommand('workbench.trust.manage');
      return;
    }
    const uri = arg instanceof vscode.Uri ? arg : vscode.window.activeTextEditor?.document.uri;
    if (!uri || uri.scheme !== 'file' || !CONFIG_SUFFIXES.some((s) => uri.fsPath.endsWith(s))) {
      void vscode.window.showErrorMessage('Open a *.hqlora.yaml run config first (or run this command from its context menu).');
      return;
    }
    if (ctx.state.kind === 'preparing' || ctx.state.kind === 'training') {
      void vscode.window.showWarningMessage('An H-QLoRA run is already in progress; stop it first (click the status bar item).');
      return;
    }
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
    if (doc?.isDirty) await doc.save();
    await runWithProgress(ctx, uri.fsPath);
  };
}

async function runWithProgress(ctx: Ctx, configPath: string): Promise<void> {
  const name = path.basename(configPath).replace(/\.hqlora\.ya?ml$/, '');
  ctx.state = { kind: 'preparing', name };
  ctx.log.info(`start ${configPath}`);
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `H-QLoRA ${name}`, cancellable: true },
    async (progress, token) => {
      const abort = new AbortController();
      token.onCancellationRequested(() => {
        abort.abort(new Error('cancelled'));
        void ctx.runningProc?.stop();
      });
      try {
        progress.report({ message: 'preparing data…' });
        const { run, trainer, proc } = await startRun({
          configPath,
          packageRoot: ctx.extension.extensionPath,
          trainerSetting: ctx.trainerPathSetting,
          signal: abort.signal,
          onWarning: (m) => ctx.log.warn(m),
        });
        ctx.log.info(`run folder ${run.runDir}; trainer ${trainer.path} ${trainer.version}`);
        ctx.state = { kind: 'training', name, proc };
        let lastPct = 0;
        proc.on('event', (e) => {
          if (e.type === 'step') {
            const pct = e.total_steps > 0 ? (100 * e.step) / e.total_steps : 0;
            progress.report({ message: formatStepShort(e), increment: pct - lastPct });
            lastPct = pct;
            ctx.state = { kind: 'training', name, proc, step: e };
            ctx.log.info(formatStep(e));
          } else if (e.type === 'start') {
            formatStart(e).forEach((l) => ctx.log.info(l));
          } else if (e.type === 'eval') {
            ctx.log.info(formatEval(e));
          } else if (e.type === 'warning') {
            ctx.log.warn(`${e.code}: ${e.message}`);
          } else if (e.type === 'error') {
            ctx.log.error(`${e.code}: ${e.message} ${e.hint}`);
          }
        });
        proc.on('invalid', (line, reason) => ctx.log.warn(`ignored trainer output (${reason}): ${line.slice(0, 200)}`));
        const result = await proc.result;
        ctx.state = { kind: 'finished', name, result, runDir: run.runDir };
        ctx.log.info(`${result.status}: ${result.message}`);
        if (result.status === 'completed') {
          const adapter = result.done?.adapter_dir ?? path.join(run.runDir, 'adapter');
          const choice = await vscode.window.showInformationMessage(
            `H-QLoRA ${name} completed. Adapters: ${adapter} and ${result.done?.peft_dir ?? path.join(run.runDir, 'peft')}`,
            'Reveal Adapter',
          );
          if (choice) await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(adapter));
        } else if (result.status === 'stopped') {
          void vscode.window.showInformationMessage(`H-QLoRA ${name} stopped: ${result.message}`);
        } else {
          await showFailure(ctx, `H-QLoRA ${name} failed: ${result.message}${result.hint ? ` — ${result.hint}` : ''}`);
        }
      } catch (err) {
        ctx.state = { kind: 'idle' };
        if (abort.signal.aborted) return;
        ctx.log.error(formatError(err, true));
        await showConfigError(ctx, err);
      }
    },
  );
}

async function showFailure(ctx: Ctx, message: string): Promise<void> {
  const choice = await vscode.window.showErrorMessage(message, 'Show Log');
  if (choice) ctx.log.show();
}

/** An HqError with a file position offers to jump there. */
async function showConfigError(ctx: Ctx, err: unknown): Promise<void> {
  const where = err instanceof HqError ? err.where : {};
  const actions = where.file && where.line ? ['Go to Problem', 'Show Log'] : ['Show Log'];
  const choice = await vscode.window.showErrorMessage(`H-QLoRA: ${formatError(err)}`, ...actions);
  if (choice === 'Show Log') ctx.log.show();
  if (choice === 'Go to Problem' && where.file && where.line) {
    const pos = new vscode.Position(where.line - 1, Math.max(0, (where.col ?? 1) - 1));
    await vscode.window.showTextDocument(vscode.Uri.file(where.file), { selection: new vscode.Range(pos, pos) });
  }
}

/** "H-QLoRA: Stop H-QLoRA Run": SIGTERM to the trainer's process group (it checkpoints), SIGKILL after 30 s. */
export function stopRunCommand(ctx: Ctx): Cmd {
  return async () => {
    const proc = ctx.runningProc;
    if (!proc) {
      void vscode.window.showInformationMessage('No H-QLoRA run is training.');
      return;
    }
    ctx.log.info('stopping the trainer (it writes a checkpoint first)');
    await proc.stop();
  };
}

export function showLogCommand(ctx: Ctx): Cmd {
  return () => ctx.log.show();
}
