// validate.ts — `hqlora validate <config>`: schema + path checks without running anything.
import { loadRunConfig } from '../run/config';
import { resolveRunConfig } from '../run/resolve';

export async function validateCommand(configPath: string, json: boolean): Promise<number> {
  const run = resolveRunConfig(await loadRunConfig(configPath));
  const c = run.config;
  if (json) {
    process.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
    return 0;
  }
  const levels = c.adapter.levels.map((l) => `r${l.rank}/α${l.alpha}`).join(' + ');
  const length = c.training.epochs != null ? `${c.training.epochs} epochs` : `${c.training.max_steps} steps`;
  process.stdout.write(
    `${run.configFile}: valid\n` +
      `  model    ${c.model.path}\n` +
      `  data     ${c.data.train}${c.data.eval ? ` (eval ${c.data.eval})` : ''}\n` +
      `  adapter  ${levels} on ${c.adapter.target_modules.join(',')}, ${c.quantization.type}\n` +
      `  training ${length}, batch ${c.training.micro_batch_size}×${c.training.gradient_accumulation_steps}, lr ${c.training.learning_rate} ${c.training.lr_scheduler}\n` +
      `  run      ${run.runDir}\n`,
  );
  return 0;
}
