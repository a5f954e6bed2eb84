// chat.ts — "H-QLoRA: Chat with Adapter": opens the chat playground (playground/panel.ts) on a run. The run is the
// argument (a run folder path, as the dashboard's button sends, or a vscode.Uri), else a quick pick of the runs with
// a completed adapter, newest first (the latest completed is the default). Refused in an untrusted workspace (the
// GGUF export reads model files from workspace paths and llama.cpp runs them).
import { existsSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import { argPath } from './merge';
import { type Cmd, requireTrust } from './run';
import type { Ctx } from '../ctx';
import { checkCompletedAdapter } from '../gguf/cache';
import { HqError } from '../core/errors';

const TRUST = 'exports the adapter to GGUF with its native addon and runs it in llama.cpp, on paths taken from this workspace, so it only opens the playground';

export function chatWithAdapterCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown): Promise<string | undefined> => {
    if (!(await requireTrust(TRUST))) return undefined;
    let source = argPath(arg);
    if (!source) {
      const runs = ctx.runs.runs.filter((r) => r.status === 'completed' && existsSync(path.join(r.id, 'adapter', 'adapter.safetensors')));
      if (runs.length === 0) {
        void vscode.window.showInformationMessage('No completed H-QLoRA run with an adapter yet: the playground chats with a run\'s adapter once the run completes.');
        return undefined;
      }
      const picked = runs.length === 1 ? { id: runs[0]?.id } : await vscode.window.showQuickPick(
        runs.map((r, i) => ({ label: r.name, description: i === 0 ? 'latest completed' : r.status, detail: vscode.workspace.asRelativePath(r.id), id: r.id })),
        { title: 'Chat with Adapter', placeHolder: 'Pick a run (default: the latest completed)' },
      );
      source = picked?.id;
      if (!source) return undefined;
    }
    try {
      if (ctx.runs.get(source)?.live) throw new HqError(`${path.basename(source)} is still training: its adapter is written when it completes`);
      checkCompletedAdapter(source);
      ctx.playgrounds.createOrShow(source);
      return source;
    } catch (e) {
      void vscode.window.showErrorMessage(`H-QLoRA: ${e instanceof HqError ? e.format() : String(e)}`);
      return undefined;
    }
  };
}
