// gguf.ts — "H-QLoRA: Export to GGUF": the same export as `hqlora export --format gguf` (gguf/export.ts: the native
// writer into a staging folder, verify.json from llama.cpp itself in the playground server process, one rename)
// behind a cancellable progress notification. The run is the argument (a path string, as the dashboard's button
// sends; a vscode.Uri from the Explorer; a Sweeps view cell) or a quick pick; an optional second argument
// ({type, base, levels, out, overwrite}) skips the prompts. The output goes beside the run, `<run>-gguf-<base>-<type>`,
// as the other exports do, so the dashboard lists it. Cancel removes the staging folder: nothing partial is left.
// Refused in an untrusted workspace (the addon reads model files from workspace paths and llama.cpp runs them).
import path from 'node:path';

import * as vscode from 'vscode';

import { type Cmd, requireTrust } from './run';
import type { Ctx } from '../ctx';
import { type BaseChoice, type GgufType, ggufOutDir } from './exportPlan';
import { argPath, pickOne, pickSource, runExport } from './merge';
import { checkCompletedAdapter } from '../gguf/cache';
import { type GgufExportResult, exportGgufVerified } from '../gguf/export';
import { ggufSummaryLine } from '../gguf/summary';
import { HqError } from '../core/errors';

export interface GgufArgs {
  type?: GgufType;
  base?: BaseChoice;
  levels?: number;
  out?: string;
  overwrite?: boolean;
}

const TRUST = 'exports the adapter with its native addon, which reads model files from paths taken from this workspace, and runs the GGUF in llama.cpp to verify it, so it only exports';
const TYPES: readonly GgufType[] = ['f16', 'f32', 'bf16', 'q8_0'];

/** Only the known, well-typed fields of an untrusted argument object. */
function ggufArgs(v: unknown): GgufArgs {
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof vscode.Uri) return {};
  const o = v as Record<string, unknown>;
  const a: GgufArgs = {};
  if (TYPES.includes(o.type as GgufType)) a.type = o.type as GgufType;
  if (o.base === 'original' || o.base === 'dequantized') a.base = o.base;
  if (typeof o.levels === 'number' && Number.isInteger(o.levels) && o.levels >= 0) a.levels = o.levels;
  if (typeof o.out === 'string' && o.out) a.out = path.resolve(o.out);
  if (typeof o.overwrite === 'boolean') a.overwrite = o.overwrite;
  return a;
}

export function exportGgufCommand(ctx: Ctx): Cmd {
  return async (arg?: unknown, opts?: unknown): Promise<GgufExportResult | undefined> => {
    if (!(await requireTrust(TRUST))) return undefined;
    const a = ggufArgs(opts);
    const source = await pickSource(ctx, argPath(arg), 'Export to GGUF');
    if (!source) return undefined;
    try {
      checkCompletedAdapter(source);
    } catch (e) {
      void vscode.window.showErrorMessage(`H-QLoRA: ${e instanceof HqError ? e.format() : String(e)}`);
      return undefined;
    }
    const type = a.type ?? await pickOne<GgufType>('GGUF tensor type', [
      { value: 'f16', label: 'float16', detail: 'Half the size of f32; llama.cpp\'s usual type. Checked to 3e-2 max |Δ log-prob|.' },
      { value: 'q8_0', label: '8-bit (q8_0)', detail: 'A quarter of f32\'s size; checked to 1e-1.' },
      { value: 'bf16', label: 'bfloat16', detail: 'The training precision; checked to 3e-2.' },
      { value: 'f32', label: 'float32', detail: 'Full precision: checked to 1e-3.' },
    ]);
    if (!type) return undefined;
    const base = a.base ?? 'dequantized';
    const out = a.out ?? ggufOutDir(source, base, type);
    return runExport(ctx, {
      title: `Export to GGUF (${type})`, out, overwrite: a.overwrite, from: source,
      call: (addon, common, onProgress, onStatus) => exportGgufVerified({
        addon, packageRoot: ctx.extension.extensionPath, cancel: common.cancel,
        options: { out: common.out, overwrite: common.overwrite, source, base, type, ...(a.levels !== undefined ? { levels: a.levels } : {}) },
        onProgress, onStatus,
      }),
      summary: ggufSummaryLine,
      actions: { 'Chat with Adapter': () => void vscode.commands.executeCommand('hqlora.chatWithAdapter', source) },
    });
  };
}
