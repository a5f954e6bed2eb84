// sweepView.ts — the "H-QLoRA Sweeps" tree view (Explorer): every *.hqsweep.yaml of the workspace whose sweep has
// started, with its cells (state and progress) and its matrix (MMLU ± se, Δ to the baseline row with its 95 %
// interval, * when significant), from the sweep folder's files (extension/sweep/view.ts). It refreshes when a
// sweep-state.json or sweep-results.json changes, and every second while a cell trains (its step progress).
import path from 'node:path';

import * as vscode from 'vscode';

import { formatError } from '../core/errors';
import { loadSweep } from '../sweep/spec';
import { type SweepView, sweepView } from '../sweep/view';

type Node =
  | { kind: 'sweep'; file: string; view: SweepView | undefined; error?: string }
  | { kind: 'group'; label: 'Cells' | 'Matrix'; view: SweepView }
  | { kind: 'cell'; cell: SweepView['cells'][number] }
  | { kind: 'row'; row: SweepView['rows'][number] };

const ICONS: Record<string, string> = { queued: 'circle-outline', training: 'sync~spin', evaluating: 'beaker', done: 'pass', failed: 'error' };

export class SweepTree implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subs: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly log: vscode.LogOutputChannel) {
    for (const glob of ['**/sweep-state.json', '**/sweep-results.json', '**/*.hqsweep.{yaml,yml}']) {
      const w = vscode.workspace.createFileSystemWatcher(glob);
      this.subs.push(w, w.onDidChange(() => this.refresh()), w.onDidCreate(() => this.refresh()), w.onDidDelete(() => this.refresh()));
    }
  }

  refresh(): void {
    this.changed.fire(undefined);
  }

  async getChildren(node?: Node): Promise<Node[]> {
    if (!node) {
      const files = await vscode.workspace.findFiles('**/*.hqsweep.{yaml,yml}', '**/node_modules/**', 200);
      const nodes = await Promise.all(files.map(async (u): Promise<Node> => {
        try {
          return { kind: 'sweep', file: u.fsPath, view: sweepView((await loadSweep(u.fsPath)).dir) };
        } catch (err) {
          return { kind: 'sweep', file: u.fsPath, view: undefined, error: formatError(err).split('\n')[0] ?? 'invalid' };
        }
      }));
      this.poll(nodes.some((n) => n.kind === 'sweep' && n.view?.running === true));
      return nodes.sort((a, b) => (a.kind === 'sweep' && b.kind === 'sweep' ? a.file.localeCompare(b.file) : 0));
    }
    if (node.kind === 'sweep') {
      return node.view ? [{ kind: 'group', label: 'Cells', view: node.view }, { kind: 'group', label: 'Matrix', view: node.view }] : [];
    }
    if (node.kind === 'group') {
      return node.label === 'Cells' ? node.view.cells.map((cell) => ({ kind: 'cell', cell })) : node.view.rows.map((row) => ({ kind: 'row', row }));
    }
    return [];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    const C = vscode.TreeItemCollapsibleState;
    if (node.kind === 'sweep') {
      const item = new vscode.TreeItem(path.basename(node.file), node.view ? C.Expanded : C.None);
      item.description = node.error ? `invalid: ${node.error}` : node.view ? `${node.view.done}/${node.view.total} cells done` : 'not started';
      item.tooltip = node.file;
      item.resourceUri = vscode.Uri.file(node.file);
      item.contextValue = node.view?.running ? 'hqlora.sweep.running' : 'hqlora.sweep';
      item.command = { command: 'vscode.open', title: 'Open Sweep File', arguments: [vscode.Uri.file(node.file)] };
      return item;
    }
    if (node.kind === 'group') {
      const item = new vscode.TreeItem(node.label, node.label === 'Cells' ? C.Expanded : node.view.rows.length ? C.Expanded : C.None);
      if (node.label === 'Matrix' && node.view.rows.length === 0) item.description = 'filled in as cells finish';
      return item;
    }
    if (node.kind === 'cell') {
      const item = new vscode.TreeItem(node.cell.id, C.None);
      item.description = node.cell.description;
      item.tooltip = `${node.cell.description}\n${node.cell.runDir}`;
      item.iconPath = new vscode.ThemeIcon(ICONS[node.cell.status] ?? 'circle-outline');
      // A completed cell is a run with an adapter: its context menu offers Export to GGUF and Chat with Adapter.
      item.contextValue = node.cell.status === 'done' ? 'hqlora.sweepCell.completed' : 'hqlora.sweepCell';
      item.command = { command: 'revealFileInOS', title: 'Reveal Run Folder', arguments: [vscode.Uri.file(node.cell.runDir)] };
      return item;
    }
    const item = new vscode.TreeItem(node.row.split, C.None);
    item.description = node.row.columns.join('   ');
    item.tooltip = node.row.columns.join('\n');
    return item;
  }

  /** Once a second while a cell runs: the training progress is in events.jsonl, which no watcher above covers. */
  private poll(on: boolean): void {
    if (on && !this.timer) this.timer = setInterval(() => this.refresh(), 1000);
    if (!on && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.log.debug('sweeps view: no cell running, polling stopped');
    }
  }

  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    this.changed.dispose();
    for (const s of this.subs) s.dispose();
  }
}
