// preview.ts — `hqlora preview-data <config> [--n 5] [--json]`: the first N training examples as the trainer will
// see them (rendered text, the trained part marked, token counts), without preparing the run.
import { dataSettings } from '../data/settings';
import { formatPreview, previewData } from '../data/preview';
import { loadRunConfig } from '../job/config';
import { resolveRunConfig } from '../job/resolve';

export async function previewCommand(configPath: string, n: number, json: boolean): Promise<number> {
  const run = resolveRunConfig(await loadRunConfig(configPath));
  const preview = await previewData(run.config.model.path, dataSettings(run.config), n);
  if (json) {
    process.stdout.write(`${JSON.stringify(preview, null, 2)}\n`);
  } else if (process.stdout.isTTY) {
    process.stdout.write(formatPreview(preview, '\x1b[32m', '\x1b[0m')); // trained text in green
  } else {
    process.stdout.write(formatPreview(preview));
  }
  return 0;
}
