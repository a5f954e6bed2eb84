// merge.ts — "Merge Adapter Levels", "Merge Adapter into Base Model" and "Combine Adapters": the native addon's
// exports (native/addon.ts) behind a cancellable progress notification. Each takes the run folder (a path string,
// as the dashboard's buttons send, or a vscode.Uri) and optionally an ExportArgs object that skips the prompts
// (tests, other extensions); without them it asks with quick picks / an input box. Refused in an untrusted
// workspace (the addon reads model files from workspace paths and the verification runs the model). The result
// is the verification summary (pass/fail, max/mean |Δlogit|) with "Open Folder" / "Show Report".
import { existsSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import { type Cmd, requireTrust } from './run';
import type { Ctx } from '../ctx';
import {
  type CancelToken, type ExportCommonOptions, type ExportProgress, type ExportReport, type HqloraAddon, isNativeError, loadAddon, toHqError,
} from '../native/addon';
import { verificationSummary } from '../native/exportReport';
import { formatError } from '../core/errors';
import {
  type BaseChoice, type CombineMode, type DtypeChoice, ProgressMeter, combineOutDir, exportOutDir, mergeOutDir, parseRank, totalRank,
} from './exportPlan';

/** Optional second argument: every field given is not asked for. */
export interface ExportArgs {
  rank?: number;
  base?: BaseChoice;
  dtype?: DtypeChoice;
  mode?: CombineMode;
  weights?: number[];
  out?: string;
  overwrite?: boolean;
}

const TRUST = 'merges adapters with its native addon, which reads model files from paths taken from this workspace and runs the model to verify, so it only exports';
const hasAdapter = (dir: string): boolean => existsSync(path.join(dir, 'adapter', 'adapter.safetensors'));

/** Only the known, well-typed fields of an untrusted argument object. */
function exportArgs(v: unknown): ExportArgs {
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof vscode.Uri) return {};
  const o = v as Record<string, unknown>;
  const pick = <T extends string>(x: unknown, allowed: readonly T[]): T | undefined => (allowed as readonly unknown[]).includes(x) ? x as T : undefined;
  const a: ExportArgs = {};
  if (typeof o.rank === 'number' && Number.isInteger(o.rank) && o.rank >= 0) a.rank = o.rank;
  const base = pick(o.base, ['original', 'dequantized'] as const);
  if (base) a.base = base;
  const dtype = pick(o.dtype, ['bf16', 'fp16', 'fp32'] as const);
  if (dtype) a.dtype = dtype;
  const mode = pick(o.mode, ['concat', 'linear', 'svd'] as const);
  if (mode) a.mode = mode;
  if (Array.isArray(o.weights) && o.weights.every((w) => typeof w === 'number' && Number.isFinite(w))) a.weights = o.weights as number[];
  if (typeof o.out === 'string' && o.out) a.out = path.resolve(o.out);
  if (typeof o.overwrite === 'boolean') a.overwrite = o.overwrite;
  return a;
}

/**
 * A run folder argument: a path string (the dashboard's buttons), a vscode.Uri (the Explorer's context menu) or a
 * tree element of the H-QLoRA Sweeps view's cell (its run folder).
 */
export function argPath(arg: unknown): string | undefined {
  if (arg instanceof vscode.Uri) return arg.fsPath;
  if (arg && typeof arg === 'object' && 'cell' in arg) {
    const cell = arg.cell;
    const dir = cell && typeof cell === 'object' && 'runDir' in cell ? cell.runDir : undefined;
    return typeof dir === 'string' && dir ? dir : undefined;
  }
  return typeof arg === 'string' && arg ? arg : undefined;
}

/** Completed runs (not training) that hold an adapter, newest first. */
function adapterRuns(ctx: Ctx): { id: string; name: string; status: string }[] {
  return ctx.runs.runs.filter((r) => !r.live && hasAdapter(r.id)).map((r) => ({ id: r.id, name: r.name, status: r.status }));
}

/** The run (or adapter) folder: the argument, else the only run with an adapter, else a quick pick. */
export async function pickSource(ctx: Ctx, arg: unknown, title: string): Promise<string | undefined> {
  const given = argPath(arg);
  if (given) {
    const run = ctx.runs.get(given);
    if (run?.live) {
      void vscode.window.showInformationMessage(`${run.name} is still training: its adapter is written when it completes.`);
      return undefined;
    }
    if (!existsSync(given)) {
      void vscode.window.showErrorMessage(`H-QLoRA: ${given} does not exist.`);
      return undefined;
    }
    return given;
  }
  const runs = adapterRuns(ctx);
  if (runs.length === 0) {
    void vscode.window.showInformationMessage('No H-QLoRA run with an adapter yet: adapters are written when a run completes.');
    return undefined;
  }
  if (runs.length === 1) return runs[0]?.id;
  const picked = await vscode.window.showQuickPick(
    runs.map((r) => ({ label: r.name, description: r.status, detail: vscode.workspace.asRelativePath(r.id), id: r.id })),
    { title, placeHolder: 'Pick a run with an adapter' },
  );
  return picked?.id;
}

/**
 * One of a sequence of prompts. ignoreFocusOut: when the command runs from the dashboard's button, closing the
 * previous prompt gives the focus back to the webview, which would otherwise dismiss this one as soon as it opens.
 */
export async function pickOne<T extends string>(title: string, items: { value: T; label: string; detail: string }[]): Promise<T | undefined> {
  const picked = await vscode.window.showQuickPick(items.map((i) => ({ ...i, description: i.value })), { title, ignoreFocusOut: true });
  return picked?.value;
}

/** An existing output folder is replaced only after the user agrees (the addon replaces it atomically). */
export async function confirmOut(out: string, overwrite: boolean | undefined): Promise<boolean | undefined> {
  if (overwrite !== undefined || !existsSync(out)) return overwrite ?? false;
  const choice = await vscode.window.showWarningMessage(`${out} already exists.`, { modal: true }, 'Replace');
  return choice === 'Replace' ? true : undefined;
}

type ExportCall = (addon: HqloraAddon, common: ExportCommonOptions, onProgress: (p: ExportProgress) => void) => Promise<ExportReport>;

/** One export under a cancellable notification (used by the merge/export/combine commands and Export to GGUF). */
export interface ExportRun<R extends { output: string }> {
  title: string;
  out: string;
  overwrite: boolean | undefined;
  /** Logged as "<title>: <from> → <out>". */
  from?: string;
  call: (addon: HqloraAddon, common: ExportCommonOptions & { cancel: CancelToken }, onProgress: (p: ExportProgress) => void, onStatus: (message: string) => void) => Promise<R>;
  /** The one-line verdict shown and logged. */
  summary: (report: R) => { ok: boolean; text: string };
  /** Actions offered before Open Folder and Show Report. */
  actions?: Record<string, (report: R) => void>;
}

const isCancel = (e: unknown): boolean => (e as { code?: unknown } | undefined)?.code === 'E_CANCELLED';

/** Runs one export under a cancellable notification; shows the verification summary or the error. */
export async function runExport<R extends { output: string }>(ctx: Ctx, run: ExportRun<R>): Promise<R | undefined> {
  const { title, out } = run;
  const overwrite = await confirmOut(out, run.overwrite);
  if (overwrite === undefined) return undefined;
  const t0 = Date.now();
  ctx.log.info(`${title}: ${run.from ? `${run.from} ` : ''}→ ${out}`);
  try {
    const addon = loadAddon(ctx.extension.extensionPath);
    const report = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `H-QLoRA: ${title}`, cancellable: true },
      async (progress, cancellation) => {
        const token = new addon.CancelToken();
        const sub = cancellation.onCancellationRequested(() => token.cancel());
        const meter = new ProgressMeter();
        try {
          return await run.call(addon, { out, overwrite, cancel: token }, (p) => progress.report(meter.update(p)),
            (message) => progress.report({ message }));
        } finally {
          sub.dispose();
        }
      },
    );
    const { ok, text } = run.summary(report);
    ctx.log[ok ? 'info' : 'warn'](`${text} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    const extra = run.actions ?? {};
    const actions = [...Object.keys(extra), 'Open Folder', 'Show Report'];
    const shown = ok ? vscode.window.showInformationMessage(`H-QLoRA: ${text}`, ...actions) : vscode.window.showWarningMessage(`H-QLoRA: ${text}`, ...actions);
    void shown.then((c) => {
      if (c !== undefined && extra[c]) extra[c](report);
      else if (c === 'Open Folder') void revealFolder(report.output);
      else if (c === 'Show Report') void vscode.window.showTextDocument(vscode.Uri.file(path.join(report.output, 'verify.json')));
    });
    return report;
  } catch (e) {
    if (isCancel(e)) {
      ctx.log.info(`${title} cancelled: ${(e as Error).message}`);
      void vscode.window.showInformationMessage(`H-QLoRA: ${title} cancelled; nothing was written to ${out}.`);
      return undefined;
    }
    const err = isNativeError(e) ? toHqError(e) : e;
    ctx.log.error(`${title}: ${formatError(err, true)}`);
    void vscode.window.showErrorMessage(`H-QLoRA: ${title} failed: ${formatError(err)}`, 'Show Log').then((c) => c && ctx.log.show());
    return undefined;
  }
}

/** In the Explorer when the folder is in the workspace (works remotely too), else the OS file manager. */
export async function revealFolder(dir: string): Promise<void> {
  const uri = vscode.Uri.file(dir);
  await vscode.commands.executeCommand(vscode.workspace.getWorkspaceFolder(uri) ? 'revealInExplorer' : 'revealFileInOS', uri);
}

/** "Merge Adapter Levels": hierarchical levels → one flat PEFT LoRA (exact, or re-compressed to a rank by SVD). */
export function mergeLevelsCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown, opts?: unknown): Promise<ExportReport | undefined> => {
    if (!(await requireTrust(TRUST))) return undefined;
    const a = exportArgs(opts);
    const source = await pickSource(ctx, arg, 'Merge Adapter Levels');
    if (!source) return undefined;
    let rank = a.rank;
    if (rank === undefined) {
      const max = totalRank(source);
      const text = await vscode.window.showInputBox({
        title: 'Merge Adapter Levels', prompt: `Rank of the merged LoRA: empty = exact${max ? ` (rank ${max}, Σ level ranks)` : ''}; smaller = truncated SVD per module`,
        placeHolder: 'exact', validateInput: (t) => { const r = parseRank(t, max); return 'error' in r ? r.error : undefined; },
      });
      if (text === undefined) return undefined;
      const r = parseRank(text, max);
      if ('error' in r) return undefined;
      rank = r.rank;
    }
    const out = a.out ?? mergeOutDir(source, rank);
    const title = rank > 0 ? `Merge Adapter Levels (rank ${rank})` : 'Merge Adapter Levels';
    const call: ExportCall = (addon, common, onProgress) =>
      addon.mergeLevels({ ...common, source, rank }, onProgress);
    return runExport(ctx, { title, out, overwrite: a.overwrite, call, summary: verificationSummary });
  };
}

/** "Merge Adapter into Base Model": a complete Hugging Face model folder with W + ΔW, in the chosen dtype. */
export function exportMergedCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown, opts?: unknown): Promise<ExportReport | undefined> => {
    if (!(await requireTrust(TRUST))) return undefined;
    const a = exportArgs(opts);
    const source = await pickSource(ctx, arg, 'Merge Adapter into Base Model');
    if (!source) return undefined;
    const base = a.base ?? await pickOne<BaseChoice>('Base weights to merge into', [
      { value: 'dequantized', label: 'NF4-dequantized weights', detail: 'The weights the adapter was trained against: the merged model reproduces the trained one.' },
      { value: 'original', label: 'Original weights', detail: 'The checkpoint as downloaded: the report gives the per-module NF4 gap to the trained weights.' },
    ]);
    if (!base) return undefined;
    const dtype = a.dtype ?? await pickOne<DtypeChoice>('Data type of the merged model', [
      { value: 'bf16', label: 'bfloat16', detail: 'Half the size of fp32; the usual choice for serving.' },
      { value: 'fp16', label: 'float16', detail: 'For runtimes without bfloat16 support.' },
      { value: 'fp32', label: 'float32', detail: 'Full precision: the verification is exact.' },
    ]);
    if (!dtype) return undefined;
    const out = a.out ?? exportOutDir(source, base, dtype);
    const title = `Merge Adapter into Base Model (${base}, ${dtype})`;
    const call: ExportCall = (addon, common, onProgress) =>
      addon.mergeIntoBase({ ...common, source, base, dtype }, onProgress);
    return runExport(ctx, { title, out, overwrite: a.overwrite, call, summary: verificationSummary });
  };
}

/** The sources of "Combine Adapters": an array argument, the Explorer's multi-selection, else a multi-select pick. */
async function pickSources(ctx: Ctx, arg: unknown, second: unknown): Promise<string[] | undefined> {
  const list = Array.isArray(arg) ? arg : Array.isArray(second) ? second : undefined;
  const given = list?.map(argPath).filter((p): p is string => p !== undefined);
  if (given && given.length > 0) return given;
  const runs = adapterRuns(ctx);
  if (runs.length < 2) {
    void vscode.window.showInformationMessage(`Combining needs at least two runs with an adapter; this workspace has ${runs.length}.`);
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    runs.map((r) => ({ label: r.name, description: r.status, detail: vscode.workspace.asRelativePath(r.id), id: r.id })),
    { title: 'Combine Adapters', placeHolder: 'Pick two or more runs', canPickMany: true },
  );
  if (!picked) return undefined;
  if (picked.length < 2) {
    void vscode.window.showInformationMessage('Pick at least two runs to combine.');
    return undefined;
  }
  return picked.map((p) => p.id);
}

/** "Combine Adapters": several runs' adapters into one flat PEFT LoRA (concat, linear or SVD). */
export function combineAdaptersCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown, second?: unknown, third?: unknown): Promise<ExportReport | undefined> => {
    if (!(await requireTrust(TRUST))) return undefined;
    const a = exportArgs(Array.isArray(second) ? third : second);
    const sources = await pickSources(ctx, arg, second);
    if (!sources) return undefined;
    const mode = a.mode ?? await pickOne<CombineMode>('How to combine the adapters', [
      { value: 'concat', label: 'Concatenate', detail: 'Exact sum of the adapters\' updates (rank = Σ input ranks).' },
      { value: 'linear', label: 'Weighted linear', detail: 'PEFT\'s linear combination of A and B (inputs of equal rank).' },
      { value: 'svd', label: 'SVD to a target rank', detail: 'The summed update truncated by SVD per module.' },
    ]);
    if (!mode) return undefined;
    let rank = a.rank ?? 0;
    if (mode === 'svd' && a.rank === undefined) {
      const text = await vscode.window.showInputBox({
        title: 'Combine Adapters (SVD)', prompt: 'Target rank: empty = the largest input rank', placeHolder: 'largest input rank',
        validateInput: (t) => { const r = parseRank(t); return 'error' in r ? r.error : undefined; },
      });
      if (text === undefined) return undefined;
      const r = parseRank(text);
      if ('error' in r) return undefined;
      rank = r.rank;
    }
    const out = a.out ?? combineOutDir(sources, mode, new Date());
    const title = `Combine ${sources.length} Adapters (${mode}${rank > 0 ? `, rank ${rank}` : ''})`;
    const call: ExportCall = (addon, common, onProgress) =>
      addon.combine({ ...common, sources, mode, rank, ...(a.weights ? { weights: a.weights } : {}) }, onProgress);
    return runExport(ctx, { title, out, overwrite: a.overwrite, call, summary: verificationSummary });
  };
}
