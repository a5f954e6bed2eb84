// summary.ts — one line for a finished GGUF export (the notification of "Export to GGUF" and the dashboard's list of
// exports): the output folder, llama.cpp's verdict and its three checks (tokens, log-probabilities of the merged
// model, base + LoRA) against the type's bound. No vscode import: test/unit covers it.
import path from 'node:path';

import type { GgufExportResult } from './export';

const fmt = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '?' : v === 0 ? '0' : v < 1e-3 ? v.toExponential(1) : v.toPrecision(3));

export function ggufSummaryLine(rep: GgufExportResult, output = rep.output): { ok: boolean; text: string } {
  const v = rep.verification;
  const head = `GGUF (${rep.type}, ${rep.architecture}) → ${path.basename(output)}`;
  if (v.status === 'skipped') return { ok: true, text: `${head}. llama.cpp's check skipped${v.reason ? `: ${v.reason}` : ''}.` };
  const checks: string[] = [];
  if (v.tokens) checks.push(`tokens ${v.tokens.equal}/${v.tokens.compared} equal`);
  if (v.logits?.merged) checks.push(`merged max |Δ log-prob| ${fmt(v.logits.merged.max_abs_diff)}`);
  if (v.adapter) checks.push(`base + LoRA ${fmt(v.adapter.vs_ours.max_abs_diff)}`);
  const bound = v.logits ? ` (bound ${fmt(v.logits.tolerance)})` : '';
  const engine = v.engine ? ` by llama.cpp (node-llama-cpp ${v.engine.version}, ${v.engine.backend})` : '';
  const ok = v.status === 'pass';
  return { ok, text: `${head}. Verification${engine} ${ok ? 'PASSED' : 'FAILED'}: ${checks.join(', ')}${bound}.` };
}
