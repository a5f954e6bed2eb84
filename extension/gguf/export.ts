// export.ts — "Export to GGUF" for the CLI and the extension: the native writer (gguf_export.h) into a staging
// folder, then verify.json from llama.cpp itself (node-llama-cpp in the playground server process, verify.ts), then
// one rename to the final folder. A failure or a cancel at any point removes the staging folder: nothing partial is
// left, and an existing output is replaced only by a complete, verified one (--force).
import { existsSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { CancelToken, ExportProgress, GgufExportOptions, GgufExportReport, HqloraAddon } from '../native/addon';
import { HqError } from '../core/errors';
import type { PlaygroundClient } from '../llama/client';
import { type GgufVerification, verifyGgufExport } from './verify';

export interface GgufExportRun {
  addon: HqloraAddon;
  packageRoot: string;
  options: Omit<GgufExportOptions, 'cancel'>;
  cancel: CancelToken;
  onProgress?: (p: ExportProgress) => void;
  /** Status lines of the llama.cpp check ("loading node-llama-cpp", ...). */
  onStatus?: (s: string) => void;
  /** An already running playground server for the check (else one is started and ended for it). */
  client?: PlaygroundClient;
}

export interface GgufExportResult extends GgufExportReport {
  verification: GgufVerification;
}

function cancelled(out: string): HqError {
  return Object.assign(new HqError(`export cancelled; nothing was written to ${out}`, { file: out }), { code: 'E_CANCELLED' });
}

/** Default output folder name of a GGUF export: gguf-<base>-<type>[-L<n>]. */
export function ggufFolderName(base: string, type: string, levels = 0): string {
  return `gguf-${base}-${type}${levels > 0 ? `-L${levels}` : ''}`;
}

export async function exportGgufVerified(r: GgufExportRun): Promise<GgufExportResult> {
  const out = r.options.out;
  if (existsSync(out) && !r.options.overwrite) {
    throw new HqError(`output folder ${out} already exists`, { file: out }, 'choose another --out, or pass --force to replace it');
  }
  const staging = path.join(path.dirname(out), `.tmp-${path.basename(out)}-${process.pid}-${Date.now()}`);
  try {
    const rep = await r.addon.exportGguf({ ...r.options, out: staging, overwrite: false, cancel: r.cancel }, r.onProgress) as GgufExportResult;
    if (r.cancel.cancelled) throw cancelled(out);
    if (r.options.verify === false) {
      rep.verification = { status: 'skipped', reason: 'verification disabled (--no-verify)' };
    } else {
      rep.verification = await verifyGgufExport({
        addon: r.addon, packageRoot: r.packageRoot, folder: staging, report: rep, cancel: r.cancel,
        ...(r.onProgress ? { onProgress: r.onProgress } : {}), ...(r.onStatus ? { onStatus: r.onStatus } : {}),
        ...(r.client ? { client: r.client } : {}),
      });
    }
    if (r.cancel.cancelled) throw cancelled(out);
    rep.output = out;
    const tmpReport = path.join(staging, '.verify.json.tmp');
    await writeFile(tmpReport, `${JSON.stringify(rep, null, 2)}\n`);
    await rename(tmpReport, path.join(staging, 'verify.json'));
    r.onProgress?.({ phase: 'publish', done: 1, total: 1, item: out });
    if (existsSync(out)) {
      const aside = `${staging}-old`;
      await rename(out, aside);
      await rename(staging, out);
      await rm(aside, { recursive: true, force: true });
    } else {
      await rename(staging, out);
    }
    return rep;
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
}
