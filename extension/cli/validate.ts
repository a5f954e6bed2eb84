// validate.ts — `hqlora validate <config>`: schema + path checks without running anything, and the length check
// the language server shows (core/truncation.ts: the same words), as a warning at file:line:col.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { LENGTH_KEY, lengthProblem, modelContext, seqLenLimitProblem } from '../core/truncation';
import { formatKeyPath } from '../core/keypath';
import { type LoadedRunConfig, loadRunConfig } from '../job/config';
import { type ResolvedRun, resolveRunConfig } from '../job/resolve';

/** The problems a run would warn about (the config is valid): `file:line:col: warning: message (at key)` + hint. */
export function configWarnings(loaded: LoadedRunConfig, run: ResolvedRun): string[] {
  const out: string[] = [];
  const configJson = path.join(run.config.model.path, 'config.json');
  let model: unknown;
  try {
    model = JSON.parse(readFileSync(configJson, 'utf8'));
  } catch {
    return out; // the trainer reports an unreadable config.json with its position when the run starts
  }
  if (!model || typeof model !== 'object' || Array.isArray(model)) return out;
  const d = run.config.data;
  const shared = run.config.model.repo_id != null;
  const p = lengthProblem(d.source_max_len, d.target_max_len, modelContext(model as Record<string, unknown>), configJson, shared);
  if (p) {
    const at = loaded.locate(LENGTH_KEY);
    out.push(`${loaded.file}:${at.line}:${at.col}: warning: ${p.message} (at ${formatKeyPath(LENGTH_KEY)})\n  hint: ${p.hint}`);
  }
  return out;
}

export async function validateCommand(configPath: string, json: boolean): Promise<number> {
  const loaded = await loadRunConfig(configPath);
  const run = resolveRunConfig(loaded);
  const c = run.config;
  const limit = seqLenLimitProblem(c.data.source_max_len, c.data.target_max_len);
  if (limit) {
    const at = loaded.locate(LENGTH_KEY);
    process.stderr.write(`${loaded.file}:${at.line}:${at.col}: error: ${limit.message} (at ${formatKeyPath(LENGTH_KEY)})\n  hint: ${limit.hint}\n`);
    return 1;
  }
  const warnings = configWarnings(loaded, run);
  for (const w of warnings) process.stderr.write(`${w}\n`);
  if (json) {
    process.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
    return 0;
  }
  const levels = c.adapter.levels.map((l) => `r${l.rank}/α${l.alpha}`).join(' + ');
  const length = c.training.epochs != null ? `${c.training.epochs} epochs` : `${c.training.max_steps} steps`;
  const verdict = warnings.length ? `valid, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}` : 'valid';
  process.stdout.write(
    `${run.configFile}: ${verdict}\n` +
      `  model    ${c.model.path}\n` +
      `  data     ${c.data.train}${c.data.eval ? ` (eval ${c.data.eval})` : ''}\n` +
      `  adapter  ${levels} on ${c.adapter.target_modules.join(',')}, ${c.quantization.type}\n` +
      `  training ${length}, batch ${c.training.micro_batch_size}×${c.training.gradient_accumulation_steps}, lr ${c.training.learning_rate} ${c.training.lr_scheduler}\n` +
      `  run      ${run.runDir}\n`,
  );
  return 0;
}
