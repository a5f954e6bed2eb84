// prepare.ts — the multiple-choice data of an evaluation: load the questions (the MMLU layouts, mmlu.ts), tokenize
// them with the model's tokenizer and write <run>/data/mcq-*.hqmcq for the trainer (mcqfile.ts). Used before
// training (a run's eval.mcq, job/job.ts) and by an evaluation (job/evaluate.ts).
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { HqError } from '../core/errors';
import { loadTokenizer } from '../data/tokenizer';
import { type Split, loadMcq } from './mmlu';
import { tokenizeMcq, writeMcqFile } from './mcqfile';

/** Longest prompt the model takes (config.json max_position_embeddings), capped by `cap` when given. */
export async function mcqMaxLen(modelDir: string, cap = Infinity): Promise<number> {
  const cfg = JSON.parse(await readFile(path.join(modelDir, 'config.json'), 'utf8')) as { max_position_embeddings?: number };
  const m = Math.min(cfg.max_position_embeddings ?? Infinity, cap);
  return Number.isFinite(m) ? m : 4096;
}

/** Tokenizes the multiple-choice data of `run` into <run>/data/mcq-<split>-<k>shot.hqmcq; returns its path. */
export async function prepareMcq(runDir: string, modelDir: string, maxLen: number,
  src: { path: string; shots: number; split: Split }, onPrepare?: (d: number, t: number) => void,
  onWarning?: (m: string) => void): Promise<string> {
  const set = await loadMcq(src.path, { split: src.split, shots: src.shots });
  if (set.items.length === 0) throw new HqError(`no questions in ${src.path}`, { file: src.path }, `check the ${src.split} split`);
  const tok = await loadTokenizer(modelDir);
  const t = tokenizeMcq(tok, set, { maxLen, shots: src.shots, split: set.layout === 'hendrycks' ? src.split : undefined,
    ...(onPrepare ? { onProgress: onPrepare } : {}) });
  if (t.reducedShots) onWarning?.(`${t.reducedShots} of ${set.items.length} prompts use fewer than ${src.shots} shots to fit ${maxLen} tokens`);
  if (t.tooLong) onWarning?.(`${t.tooLong} prompts exceed ${maxLen} tokens even without shots; their first tokens are dropped`);
  const tag = set.layout === 'hendrycks' ? `${src.split}-${src.shots}shot` : path.basename(src.path).replace(/\.[^.]*$/, '');
  return writeMcqFile(path.join(runDir, 'data', `mcq-${tag}.hqmcq`), t.data);
}
