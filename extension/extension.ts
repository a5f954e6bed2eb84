// extension.ts — the composition root: build the Ctx, start the language client, register the commands, nothing
// else. A failed activation is shown to the user (VS Code does not) and rethrown.
import * as vscode from 'vscode';

import {
  type Cmd, notifyOnFinish, openDashboardCommand, resumeRunCommand, saveCheckpointCommand, showLogCommand,
  showTrainerLogCommand, startRunCommand, stopRunCommand,
} from './commands/run';
import { chatWithAdapterCommand } from './commands/chat';
import { evaluateCommand } from './commands/evaluate';
import { exportGgufCommand } from './commands/gguf';
import { combineAdaptersCommand, exportMergedCommand, mergeLevelsCommand } from './commands/merge';
import { newConfigCommand } from './commands/newConfig';
import { previewDataCommand } from './commands/previewData';
import { copySweepMatrixCommand, openSweepResultsCommand, startSweepCommand, stopSweepCommand } from './commands/sweep';
import { SweepTree } from './commands/sweepView';
import { Ctx } from './ctx';
import { startLanguageClient } from './lsp/client';

const COMMANDS: Record<string, (ctx: Ctx) => Cmd> = {
  'hqlora.startRun': startRunCommand,
  'hqlora.stopRun': stopRunCommand,
  'hqlora.saveCheckpoint': saveCheckpointCommand,
  'hqlora.resumeRun': resumeRunCommand,
  'hqlora.openDashboard': openDashboardCommand,
  'hqlora.showTrainerLog': showTrainerLogCommand,
  'hqlora.showLog': showLogCommand,
  'hqlora.newConfig': newConfigCommand,
  'hqlora.previewData': previewDataCommand,
  'hqlora.mergeLevels': mergeLevelsCommand,
  'hqlora.exportMerged': exportMergedCommand,
  'hqlora.combineAdapters': combineAdaptersCommand,
  'hqlora.evaluate': evaluateCommand,
  'hqlora.startSweep': startSweepCommand,
  'hqlora.stopSweep': stopSweepCommand,
  'hqlora.copySweepMatrix': copySweepMatrixCommand,
  'hqlora.openSweepResults': openSweepResultsCommand,
  'hqlora.chatWithAdapter': chatWithAdapterCommand,
  'hqlora.exportGguf': exportGgufCommand,
};

/** What activate() returns: the Ctx, for the extension-host test suites (test/e2e/suite). */
export type HqloraApi = Ctx;

export function activate(context: vscode.ExtensionContext): HqloraApi {
  try {
    const ctx = new Ctx(context);
    ctx.languageClient = startLanguageClient(context, context.asAbsolutePath('dist/server.js'));
    for (const [id, factory] of Object.entries(COMMANDS)) {
      context.subscriptions.push(vscode.commands.registerCommand(id, factory(ctx)));
    }
    context.subscriptions.push(notifyOnFinish(ctx));
    const sweeps = new SweepTree(ctx.log);
    context.subscriptions.push(sweeps, vscode.window.registerTreeDataProvider('hqlora.sweeps', sweeps));
    return ctx;
  } catch (err) {
    void vscode.window.showErrorMessage(`Cannot activate H-QLoRA: ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  }
}

export function deactivate(): void {
  // Ctx.dispose (a subscription) releases everything; running trainers are detached and keep going.
}
