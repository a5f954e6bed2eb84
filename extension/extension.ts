// extension.ts — the composition root: build the Ctx, register the commands, nothing else. A failed activation is
// shown to the user (VS Code does not) and rethrown.
import * as vscode from 'vscode';

import { type Cmd, showLogCommand, startRunCommand, stopRunCommand } from './commands';
import { Ctx } from './ctx';

const COMMANDS: Record<string, (ctx: Ctx) => Cmd> = {
  'hqlora.startRun': startRunCommand,
  'hqlora.stopRun': stopRunCommand,
  'hqlora.showLog': showLogCommand,
};

export function activate(context: vscode.ExtensionContext): void {
  try {
    const ctx = new Ctx(context);
    for (const [id, factory] of Object.entries(COMMANDS)) {
      context.subscriptions.push(vscode.commands.registerCommand(id, factory(ctx)));
    }
  } catch (err) {
    void vscode.window.showErrorMessage(`Cannot activate H-QLoRA: ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  }
}

export function deactivate(): void {
  // Ctx.dispose (a subscription) kills a running trainer's process group.
}
