// table.ts — the evaluation table as Markdown (eval.md, the CLI's output, the "Evaluate Adapter" view) and the
// progress line. One row per configuration (base, then adapter levels), like the QLoRA paper's Tables 1/2:
// eval loss, perplexity, multiple-choice accuracy (macro over subjects, and micro), then one column per subject.
import type { EvalProgressEvent, EvalResultEvent, EvalRow, McqEvent } from '../../schemas/generated/trainer-events';
import { formatDuration, num } from '../core/format';

const pct = (x: number | undefined): string => (x === undefined ? '–' : `${(100 * x).toFixed(1)}`);
const fix = (x: EvalRow['eval_loss'], d: number): string => (x === undefined ? '–' : num(x).toFixed(d));

/** Subject columns are shown up to this many; beyond that only the averages (eval.json has them all). */
export const MAX_SUBJECT_COLUMNS = 8;

export function evalMarkdown(r: EvalResultEvent, meta: { runDir: string; mcq: string | null; shots: number | null }): string {
  const subjects = r.subjects.length <= MAX_SUBJECT_COLUMNS ? r.subjects : [];
  const hasLoss = r.rows.some((x) => x.eval_loss !== undefined);
  const hasMcq = r.rows.some((x) => x.mcq !== undefined);
  const head = ['configuration', 'levels'];
  if (hasLoss) head.push('eval loss', 'ppl');
  if (hasMcq) head.push('MC acc (macro) %', 'MC acc (micro) %', ...subjects.map((s) => `${s} %`));
  const lines = [
    `# Evaluation of ${meta.runDir}`,
    '',
    `- model: ${r.model.path ?? '?'} (${r.model.architecture ?? '?'}, ${r.model.quantization ?? '?'})`,
    `- adapter: ${r.adapter ?? 'none (base model only)'}`,
    ...(hasMcq ? [`- multiple choice: ${meta.mcq ?? r.mcq_file ?? '?'}, ${r.questions ?? 0} questions, ${r.subjects.length} subjects` +
      `${meta.shots !== null ? `, ${meta.shots}-shot` : ''}; scored by the answer-letter logits at the answer position`] : []),
    ...(hasLoss ? [`- eval loss: ${r.eval_file}, ${r.eval_examples ?? 0} examples`] : []),
    `- time: ${formatDuration(num(r.elapsed_s))}`,
    '',
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`,
  ];
  for (const row of r.rows) {
    const cells = [row.name, row.levels === 0 ? '–' : row.ranks.join('+')];
    if (hasLoss) cells.push(fix(row.eval_loss, 4), fix(row.perplexity, 3));
    if (hasMcq) {
      const bySubject = new Map((row.mcq?.subjects ?? []).map((s) => [s.subject, s.accuracy]));
      cells.push(pct(row.mcq?.macro_accuracy), pct(row.mcq?.accuracy), ...subjects.map((s) => pct(bySubject.get(s))));
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}

/** "eval 3/6 L1+L2 (r 16+4)  57% · 1m02s left" */
export function formatProgress(e: EvalProgressEvent): string {
  const frac = e.total > 0 ? e.done / e.total : 1;
  const eta = e.eta_s === null ? '?' : formatDuration(num(e.eta_s));
  return `eval ${e.row + 1}/${e.rows} ${e.name}  ${(100 * frac).toFixed(0)}% · ${eta} left`;
}

/** One line per `mcq` event: "multiple choice @ step 40: 33.3% macro, 35.0% micro of 60 questions" (training), or
 * "multiple choice base (NF4): ..." (a row of `hqlora-train eval`). */
export function formatMcqLine(e: McqEvent): string {
  const where = e.step !== null ? `@ step ${e.step}` : (e.config ?? '');
  return `multiple choice ${where}: ${pct(e.macro_accuracy)}% macro, ${pct(e.accuracy)}% micro of ${e.n} questions`;
}
