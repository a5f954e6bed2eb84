// outputs.ts — a run's exports as the dashboard lists them: the sibling folders `<run>-…` that hold a verify.json
// (merge levels writes `<run>-peft-merged` / `<run>-peft-r<N>`, merge into base `<run>-merged-<base>-<dtype>`, Export to
// GGUF `<run>-gguf-<base>-<type>`; see
// commands/exportPlan.ts). verify.json is the export's report (merge.h), so it says what the folder is and whether
// the forward check passed (worded by native/exportReport.ts, as the commands' notification words it). No vscode import: test/unit covers it on real folders.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { ExportOutput } from '../../schemas/generated/webview-messages';
import type { ExportReport } from '../native/addon';
import type { GgufExportResult } from '../gguf/export';
import { ggufSummaryLine } from '../gguf/summary';
import { verificationSummary } from '../native/exportReport';

const MAX_OUTPUTS = 50;

/** The exports of the run folder `runDir`, newest first (at most 50). A folder whose verify.json is unreadable is listed as such. */
export function listOutputs(runDir: string): ExportOutput[] {
  const dir = path.dirname(runDir);
  const prefix = `${path.basename(runDir)}-`;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
  const out: ExportOutput[] = [];
  for (const name of names) {
    const output = path.join(dir, name);
    const verify = path.join(output, 'verify.json');
    let time: number;
    try {
      time = statSync(verify).mtimeMs;
    } catch {
      continue; // not an export (or one still being written: verify.json is published with the folder)
    }
    out.push(describe(output, name, verify, time));
  }
  return out.sort((a, b) => b.time - a.time || a.name.localeCompare(b.name)).slice(0, MAX_OUTPUTS);
}

function describe(output: string, name: string, verify: string, time: number): ExportOutput {
  let rep: ExportReport;
  try {
    rep = JSON.parse(readFileSync(verify, 'utf8')) as ExportReport;
    if (!rep || typeof rep !== 'object' || !rep.verification || typeof rep.verification.status !== 'string') throw new Error('no verification');
  } catch (e) {
    return { output, name, operation: '?', format: '?', status: 'unreadable', summary: `${name}: verify.json is unreadable (${(e as Error).message.slice(0, 200)})`, time };
  }
  const status = (['pass', 'fail', 'skipped'] as const).find((s) => s === rep.verification.status) ?? 'unreadable';
  // The report's own output path is where it was written; the folder may since have been moved: show where it is.
  const summary = String(rep.format) === 'gguf' ? ggufSummaryLine(rep as unknown as GgufExportResult, output).text
    : verificationSummary({ ...rep, output }).text;
  return {
    output, name, operation: String(rep.operation), format: String(rep.format), status, summary, time,
    ...(typeof rep.rank === 'number' && Number.isInteger(rep.rank) && rep.rank >= 0 ? { rank: rep.rank } : {}),
  };
}

/** True when `output` is one of the exports listOutputs finds for `runDir` (untrusted webview input is checked with it). */
export function isListedOutput(runDir: string, output: string): boolean {
  return listOutputs(runDir).some((o) => o.output === output);
}
