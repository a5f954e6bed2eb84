// GENERATED from schemas/sweep-results.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * A number, or null where it is not known (yet).
 */
export type Num = number | null;

/**
 * <sweep>/sweep-results.json, written by `hqlora sweep` (and the extension) whenever a cell finishes: the paper's Table 2 as data. Rows are rank splits (with the other non-data, non-seed axis values), columns are datasets; each row × dataset entry holds the MMLU scores (micro average over questions, and per category), their uncertainty, eval loss and the training cost. results.csv and results.md are rendered from it. Fields whose name ends in _s, tokens_per_s and time_vs_baseline are measured times (they differ between two runs of the same sweep); every other field is determined by the sweep file, the data and the trainer.
 */
export interface SweepResults {
  /**
   * Format version (always 1).
   */
  v: 1;
  /**
   * The sweep's name.
   */
  name: string;
  /**
   * Absolute path of the sweep file.
   */
  sweep_file: string;
  /**
   * The split the rows are compared with, e.g. "64".
   */
  baseline: string;
  /**
   * Column datasets, in sweep order.
   */
  datasets: string[];
  /**
   * training.seed values of the sweep.
   */
  seeds: number[];
  /**
   * The multiple-choice data scored, or null without eval.mmlu.
   */
  mmlu: {
    path: string;
    shots: number;
    split: string;
    /**
     * Questions scored per cell.
     */
    questions: number;
  } | null;
  /**
   * Settings of the paired bootstrap (over questions) of each row's MMLU difference to the baseline row.
   */
  bootstrap: {
    samples: number;
    seed: number;
    level: number;
  };
  rows: Row[];
  cells: CellResult[];
}
/**
 * One table row: a rank split (and the values of other axes).
 */
export interface Row {
  /**
   * Row label, e.g. "32,8,8,8,8" or "64 · learning_rate=0.0002".
   */
  key: string;
  /**
   * The rank split, e.g. "32,8,8,8,8".
   */
  split: string;
  ranks: number[];
  /**
   * Other axis values of the row.
   */
  extra: {
    [k: string]: string | number | boolean | undefined;
  };
  /**
   * One entry per dataset, in `datasets` order.
   */
  columns: Column[];
}
/**
 * One row × dataset entry: the cells of every seed, aggregated.
 */
export interface Column {
  data: string;
  /**
   * Cell ids (one per seed).
   */
  cells: string[];
  /**
   * Cells of this entry that are finished and scored.
   */
  done: number;
  /**
   * MMLU accuracy (micro, over questions), mean over seeds.
   */
  mmlu: number | null;
  /**
   * Standard error of one seed's accuracy, sqrt(p(1-p)/n), averaged over seeds.
   */
  mmlu_se: number | null;
  /**
   * Sample standard deviation across seeds (null with one seed).
   */
  mmlu_std: number | null;
  /**
   * Accuracy (micro, mean over seeds) per MMLU category: stem, humanities, social_sciences, other; null when no subject of the category was scored.
   */
  categories: {
    stem: Num;
    humanities: Num;
    social_sciences: Num;
    other: Num;
  };
  /**
   * Paired bootstrap of this entry's MMLU minus the baseline row's (same dataset, same seeds, same questions), or null (baseline row, or not scored yet).
   */
  diff: {
    /**
     * Observed difference (accuracy points as a fraction).
     */
    delta: number;
    /**
     * Lower end of the 95 % percentile interval.
     */
    lo: number;
    /**
     * Upper end.
     */
    hi: number;
    /**
     * The interval excludes 0.
     */
    significant: boolean;
  } | null;
  /**
   * A number, or null where it is not known (yet).
   */
  eval_loss: number | null;
  /**
   * A number, or null where it is not known (yet).
   */
  train_s: number | null;
  /**
   * A number, or null where it is not known (yet).
   */
  time_vs_baseline: number | null;
  /**
   * A number, or null where it is not known (yet).
   */
  tokens_per_s: number | null;
  /**
   * A number, or null where it is not known (yet).
   */
  peak_memory_bytes: number | null;
  /**
   * Level ablation (hierarchical splits): MMLU with levels 1, 1-2, ..., all, mean over seeds.
   */
  ablation: {
    levels: number;
    ranks: number[];
    mmlu: Num;
  }[];
}
/**
 * One cell (one run).
 */
export interface CellResult {
  id: string;
  status: 'queued' | 'training' | 'evaluating' | 'done' | 'failed' | 'removed';
  run_dir: string;
  split: string;
  data: string;
  seed: number;
  /**
   * sha256 of the final adapter.safetensors, or null.
   */
  adapter_sha256: string | null;
  mmlu: {
    n: number;
    correct: number;
    accuracy: number;
    se: number;
  } | null;
  eval_loss: Num;
  error: string | null;
}
