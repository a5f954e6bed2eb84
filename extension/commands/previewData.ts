// previewData.ts — "H-QLoRA: Preview Data": the first examples of a run config's training data as the model sees
// them (chat template applied, truncated, tokenized; data/preview.ts), in a read-only virtual document whose
// trained parts (the tokens with loss) are between « » and highlighted; the rest is context only. Takes the config
// as a vscode.Uri (the language server's "Preview Data" code lens, the Explorer) or a path, else the active
// config, else a quick pick; an optional second argument sets the number of examples (default 5). Unsaved edits of
// an open config are previewed as they are. Nothing is written and no native code runs, so it also works untrusted.
import path from 'node:path';

import * as vscode from 'vscode';

import type { Cmd } from './run';
import type { Ctx } from '../ctx';
import { previewData } from '../data/preview';
import { dataSettings } from '../data/settings';
import { loadRunConfig, parseRunConfig } from '../job/config';
import { HqError, formatError } from '../core/errors';
import { resolveRunConfig } from '../job/resolve';
import { type PreviewDocument, previewDocument } from './previewDocument';

export const PREVIEW_SCHEME = 'hqlora-preview';
const DEFAULT_EXAMPLES = 5;
const MAX_EXAMPLES = 200;
const isConfig = (p: string): boolean => /\.hqlora\.(ya?ml|json)$/.test(p);

/** The preview documents' contents by URI; a new preview of the same config replaces its content in place. */
class PreviewProvider implements vscode.TextDocumentContentProvider {
  private readonly docs = new Map<string, PreviewDocument>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  set(uri: vscode.Uri, doc: PreviewDocument): void {
    this.docs.set(uri.toString(), doc);
    this.changed.fire(uri);
  }

  get(uri: vscode.Uri): PreviewDocument | undefined {
    return this.docs.get(uri.toString());
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.docs.get(uri.toString())?.text ?? `No preview for ${uri.query}: run "H-QLoRA: Preview Data" on the config.\n`;
  }

  dispose(): void {
    this.changed.dispose();
  }
}

/** hqlora-preview:/<config file name> (data preview)?<config path>: one document per config. */
export function previewUri(configFile: string): vscode.Uri {
  return vscode.Uri.from({ scheme: PREVIEW_SCHEME, path: `/${path.basename(configFile)} (data preview)`, query: configFile });
}

async function pickConfig(arg: unknown): Promise<string | undefined> {
  if (arg instanceof vscode.Uri && arg.scheme === 'file') return arg.fsPath;
  if (typeof arg === 'string' && arg) return path.resolve(arg);
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active?.scheme === 'file' && isConfig(active.fsPath)) return active.fsPath;
  const found = await vscode.workspace.findFiles('**/*.hqlora.{yaml,yml,json}', '**/node_modules/**', 200);
  if (found.length === 0) {
    void vscode.window.showErrorMessage('No *.hqlora.yaml run config in this workspace: create one with "H-QLoRA: New H-QLoRA Run Config", or open one.');
    return undefined;
  }
  if (found.length === 1) return found[0]?.fsPath;
  const picked = await vscode.window.showQuickPick(
    found.map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(path.dirname(u.fsPath)), file: u.fsPath })),
    { title: 'Preview Data', placeHolder: 'Pick a run config' },
  );
  return picked?.file;
}

export function previewDataCommand(ctx: Ctx): Cmd {
  const provider = new PreviewProvider();
  const trained = vscode.window.createTextEditorDecorationType({
    backgroundColor: new vscode.ThemeColor('diffEditor.insertedTextBackground'),
    overviewRulerColor: new vscode.ThemeColor('editorOverviewRuler.addedForeground'),
    overviewRulerLane: vscode.OverviewRulerLane.Left,
  });
  const decorate = (editors: readonly vscode.TextEditor[]): void => {
    for (const ed of editors) {
      const doc = ed.document.uri.scheme === PREVIEW_SCHEME ? provider.get(ed.document.uri) : undefined;
      if (!doc || ed.document.getText() !== doc.text) continue; // decorated again once the new content is shown
      ed.setDecorations(trained, doc.trained.map(([s, e]) => new vscode.Range(ed.document.positionAt(s), ed.document.positionAt(e))));
    }
  };
  ctx.extension.subscriptions.push(
    provider, trained,
    vscode.workspace.registerTextDocumentContentProvider(PREVIEW_SCHEME, provider),
    vscode.window.onDidChangeVisibleTextEditors(decorate),
    vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document.uri.scheme === PREVIEW_SCHEME) decorate(vscode.window.visibleTextEditors.filter((ed) => ed.document === e.document));
    }),
  );

  return async (arg?: unknown, count?: unknown): Promise<vscode.Uri | undefined> => {
    const file = await pickConfig(arg);
    if (!file) return undefined;
    const n = typeof count === 'number' && Number.isInteger(count) && count > 0 ? Math.min(count, MAX_EXAMPLES) : DEFAULT_EXAMPLES;
    try {
      const open = vscode.workspace.textDocuments.find((d) => d.uri.scheme === 'file' && d.uri.fsPath === file);
      const loaded = open ? parseRunConfig(file, open.getText()) : await loadRunConfig(file);
      const run = resolveRunConfig(loaded);
      const preview = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: `H-QLoRA: reading ${path.basename(file)}'s data` },
        () => previewData(run.config.model.path, dataSettings(run.config), n),
      );
      if (preview.examples.length === 0) throw new HqError('the training data has no examples', { file, key: 'data.train' }, 'check data.train and data.format');
      const uri = previewUri(file);
      provider.set(uri, previewDocument(preview));
      const doc = await vscode.workspace.openTextDocument(uri);
      const editor = await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
      decorate([editor]);
      ctx.log.info(`preview data: ${preview.examples.length} of ${preview.totalExamples} examples of ${file} (${preview.format})`);
      return uri;
    } catch (err) {
      ctx.log.error(`preview data: ${formatError(err, true)}`);
      const where = err instanceof HqError ? err.where : {};
      const actions = where.file && where.line ? ['Go to Problem'] : [];
      void vscode.window.showErrorMessage(`H-QLoRA: cannot preview the data: ${formatError(err)}`, ...actions).then((c) => {
        if (!c || !where.file || !where.line) return;
        const pos = new vscode.Position(where.line - 1, Math.max(0, (where.col ?? 1) - 1));
        void vscode.window.showTextDocument(vscode.Uri.file(where.file), { selection: new vscode.Range(pos, pos) });
      });
      return undefined;
    }
  };
}
