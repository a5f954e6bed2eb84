// cache.ts — the GGUF files a run's playground and `hqlora generate` use: <run>/gguf-<base>-f16/ (export.ts), made
// and verified on first use, then reused. A run folder without a completed adapter is refused, naming it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { ExportProgress, HqloraAddon } from '../native/addon';
import { HqError } from '../core/errors';
import { type GgufExportResult, exportGgufVerified, ggufFolderName } from './export';

export interface RunGguf {
  folder: string;
  merged: string;
  base: string;
  lora: string;
  report: GgufExportResult;
  /** True when this call wrote the files. */
  made: boolean;
}

export interface EnsureGgufOptions {
  addon: HqloraAddon;
  packageRoot: string;
  /** A run folder (holds adapter/) or an adapter folder. */
  source: string;
  type?: 'f32' | 'f16' | 'bf16' | 'q8_0';
  onProgress?: (p: ExportProgress) => void;
  cancel?: { cancel(): void; readonly cancelled: boolean };
}

/** Has `source` a completed adapter? Throws HqError naming the folder and what to do when not. */
export function checkCompletedAdapter(source: string): { run: boolean } {
  if (existsSync(path.join(source, 'adapter', 'adapter.safetensors'))) return { run: true };
  if (existsSync(path.join(source, 'adapter.safetensors')) || existsSync(path.join(source, 'adapter_config.json'))) return { run: false };
  throw new HqError(`${source} holds no completed adapter (no adapter/adapter.safetensors, adapter.safetensors or adapter_config.json)`,
    { file: source }, 'wait for the run to complete (or resume it: hqlora run <config> --resume), then try again');
}

export async function ensureRunGguf(o: EnsureGgufOptions): Promise<RunGguf> {
  const { run } = checkCompletedAdapter(o.source);
  const type = o.type ?? 'f16';
  const name = ggufFolderName('dequantized', type);
  const folder = run ? path.join(o.source, name) : `${o.source}-${name}`;
  const files = (rep: GgufExportResult, made: boolean): RunGguf => {
    const f = rep.files;
    if (!f.merged || !f.base || !f.lora) throw new HqError(`${folder}/verify.json lacks a merged, base or LoRA file`, { file: folder }, 'delete the folder to export again');
    return { folder, merged: path.join(folder, f.merged.file), base: path.join(folder, f.base.file), lora: path.join(folder, f.lora.file), report: rep, made };
  };
  const reportFile = path.join(folder, 'verify.json');
  if (existsSync(reportFile)) {
    const rep = JSON.parse(readFileSync(reportFile, 'utf8')) as GgufExportResult;
    const adapterFile = run ? path.join(o.source, 'adapter', 'adapter.safetensors') : path.join(o.source, 'adapter.safetensors');
    const fresh = !existsSync(adapterFile) || statSync(adapterFile).mtimeMs <= statSync(reportFile).mtimeMs;
    if (fresh) return files(rep, false);
  }
  const addonToken = o.cancel ?? new o.addon.CancelToken();
  const rep = await exportGgufVerified({
    addon: o.addon, packageRoot: o.packageRoot, cancel: addonToken,
    options: { out: folder, overwrite: true, source: o.source, base: 'dequantized', type },
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return files(rep, true);
}
