// newConfig.ts — "H-QLoRA: New H-QLoRA Run Config": pick a model folder, pick where to save, write the commented
// starter config (configTemplate.ts) and open it.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import * as vscode from 'vscode';

import type { Cmd } from './run';
import type { Ctx } from '../ctx';
import { defaultConfigName, starterConfig } from './configTemplate';

export function newConfigCommand(ctx: Ctx): Cmd {
  return async () => {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const picked = await vscode.window.showOpenDialog({
      canSelectFolders: true, canSelectFiles: false, canSelectMany: false, defaultUri: folder,
      title: 'Select the Hugging Face model folder (config.json, tokenizer.json, *.safetensors)', openLabel: 'Use this model',
    });
    const modelUri = picked?.[0];
    if (!modelUri) return;
    const target = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.joinPath(folder ?? vscode.Uri.file(path.dirname(modelUri.fsPath)), defaultConfigName(modelUri.fsPath)),
      filters: { 'H-QLoRA run config': ['hqlora.yaml'] }, title: 'Save the new H-QLoRA run config',
    });
    if (!target) return;
    const file = target.fsPath.endsWith('.hqlora.yaml') ? target.fsPath : `${target.fsPath.replace(/\.ya?ml$/, '')}.hqlora.yaml`;
    await writeFile(file, starterConfig({ modelDir: modelUri.fsPath, configFile: file }));
    ctx.log.info(`wrote run config ${file}`);
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(file));
  };
}
