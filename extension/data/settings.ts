// settings.ts — the data settings of a resolved run config (run.json `data`, schemas/run-config.schema.json), as
// prepareData / previewData take them. One mapping, used by the run module and by `hqlora preview-data`.
import type { ResolvedRunConfig } from '../core/runjson';
import type { DataSettings } from './prepare';

export function dataSettings(c: Pick<ResolvedRunConfig, 'data' | 'training'>): DataSettings {
  const d = c.data;
  return {
    train: d.train,
    ...(d.eval != null ? { eval: d.eval } : {}),
    format: d.format,
    sourceMaxLen: d.source_max_len,
    targetMaxLen: d.target_max_len,
    trainOnSource: d.train_on_source,
    evalHoldout: d.eval_holdout,
    seed: c.training.seed,
    oasstPaths: d.oasst1.paths,
    oasstLang: d.oasst1.lang,
    oasstRender: d.oasst1.render,
    packing: d.packing,
    packMaxLen: d.pack_max_len,
    groupByLength: d.group_by_length,
    // transformers' LengthGroupedSampler: mega-batches of 50 x the batch size.
    groupSize: d.group_size ?? 50 * c.training.micro_batch_size,
    maxLineBytes: d.max_line_bytes,
  };
}
