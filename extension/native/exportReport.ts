// exportReport.ts — an export's report (verify.json, merge.h; ExportReport in addon.ts) worded for the user in one
// line: the notification of the merge/export/combine commands and the dashboard's list of a run's exports say the
// same. The operation, the output, pass/fail and the max/mean |Δlogit| against the tolerance.
import path from 'node:path';

import type { ExportReport } from './addon';

const OPERATION: Record<ExportReport['operation'], string> = {
  merge_levels: 'Merged adapter levels',
  merge_into_base: 'Merged adapter into base model',
  combine: 'Combined adapters',
};

/** Scientific for small diffs, plain otherwise: 0, 3.1e-7, 0.0149. */
export function fmtDiff(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '?';
  if (v === 0) return '0';
  return Math.abs(v) < 1e-3 ? v.toExponential(1) : v.toPrecision(3);
}

/**
 * The notification for a finished export: `ok` false (a warning) when the verification failed; the text names the
 * output, pass/fail and the max/mean |Δlogit| against the tolerance.
 */
export function verificationSummary(rep: ExportReport): { ok: boolean; text: string } {
  const v = rep.verification;
  const head = `${OPERATION[rep.operation]} → ${path.basename(rep.output)}`;
  if (v.status === 'skipped') return { ok: true, text: `${head}. Verification skipped${v.reason ? `: ${v.reason}` : ''}.` };
  const kind = v.exact ? 'exact' : 'lossy export';
  const diff = `max |Δlogit| ${fmtDiff(v.max_abs_diff)}, mean ${fmtDiff(v.mean_abs_diff)} (tolerance ${fmtDiff(v.tolerance)}, ${kind})`;
  const svd = rep.svd ? `; SVD retained energy ≥ ${(100 * rep.svd.min_retained_energy).toFixed(2)} %` : '';
  const gap = rep.nf4_gap ? `; NF4 gap max |W − deq(W)| ${fmtDiff(rep.nf4_gap.max_abs)}` : '';
  const ok = v.status === 'pass';
  return { ok, text: `${head}. Verification ${ok ? 'PASSED' : 'FAILED'}: ${diff}${svd}${gap}.` };
}
