// GENERATED from schemas/sweep.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * A sweep (`*.hqsweep.yaml`, run by `hqlora sweep` and "H-QLoRA: Start Sweep"): a base run config plus the values to vary. Every cell is an ordinary run in its own folder under output.dir/<name>/cells/<cell id>; the finished cells are scored as `eval:` says and collected into sweep-results.json, results.csv and results.md (the paper's Table 2 layout). Relative paths start at the sweep file's folder.
 */
export type SweepConfig = {
  /**
   * Optional URL or path of this schema, for editors.
   */
  $schema?: string;
  /**
   * Name of the sweep: its folder under output.dir. Default: the sweep file's name without `.hqsweep.yaml`.
   */
  name?: string;
  /**
   * The run config (`*.hqlora.yaml`) every cell starts from; its relative paths start at its own folder. A cell replaces the keys its axes name and nothing else (output.dir and output.run_name are the sweep's).
   */
  base: string;
  /**
   * When set, every rank split must add up to this total (the paper's rank budget, 64): a split that does not is an error before anything starts.
   */
  total_rank?: number;
  /**
   * The rank split the other rows are compared with (time relative to it, paired bootstrap of the MMLU difference), written as in results: `64`, `32,8,8,8,8`. Default: the first single-level split, else the first split.
   */
  baseline?: string;
  /**
   * The values to vary; the sweep is their cartesian product, in the order written (the first axis varies slowest). Keys: `adapter.ranks` (rank splits), `data` (datasets), `seed` (training.seed), or the dotted path of any other scalar key of the run config (e.g. `training.learning_rate`).
   */
  axes?: {
    /**
     * Rank splits, coarse to fine: each one a list of ranks (one level per entry), or a comma-separated string (`32,8,8,8,8`). Every level gets the base config's alpha (adapter.alpha, else the first level's alpha, else 16).
     *
     * @minItems 1
     */
    'adapter.ranks'?: RankSplit[];
    /**
     * Datasets: each the path of a training file (or folder), or a mapping of run-config `data` keys (train, eval, format, ...) with an optional `name`; it is merged over the base config's `data`.
     *
     * @minItems 1
     */
    data?: Dataset[];
    /**
     * training.seed values: with several seeds the results show the mean ± std across seeds.
     *
     * @minItems 1
     */
    seed?: number[];
    /**
     * Values of the scalar run-config key at this dotted path.
     *
     * @minItems 1
     */
    [k: string]: (string | number | boolean)[] | RankSplit[] | Dataset[] | number[] | undefined;
  };
  /**
   * An explicit list of cells instead of a cartesian product: each a mapping of the same keys as `axes` to one value each, plus an optional `name`.
   *
   * @minItems 1
   */
  cells?: Cell[];
  eval?: SweepEval;
  /**
   * How many cells may train at the same time: `auto` starts another cell only while the memory estimates of the running cells and the next one fit the GPU (one at a time on the CPU); a number caps that further.
   */
  parallel?: 'auto' | number;
  /**
   * Paired bootstrap of each row's MMLU difference to the baseline row, over questions.
   */
  bootstrap?: {
    /**
     * Resamples.
     */
    samples?: number;
    /**
     * Seed of the resampling (the same seed gives the same interval).
     */
    seed?: number;
  };
  /**
   * Where the sweep goes.
   */
  output?: {
    /**
     * Parent folder of the sweep folder <dir>/<name> (relative to the sweep file).
     */
    dir?: string;
  };
} & {
  [k: string]: unknown | undefined;
};
/**
 * One rank split: a list of ranks, or `32,8,8,8,8`.
 */
export type RankSplit = number[] | string | number;
/**
 * A dataset: the path of its training data, or run-config `data` keys plus an optional `name` (default: the training file's name without extension).
 */
export type Dataset =
  | string
  | {
      /**
       * Column label in the results.
       */
      name?: string;
      /**
       * Training data (relative to the sweep file).
       */
      train: string;
      /**
       * Held-out data for eval loss (relative to the sweep file).
       */
      eval?: string;
      [k: string]: unknown | undefined;
    };

/**
 * One explicit cell.
 */
export interface Cell {
  /**
   * The cell's id (its run folder name); default: made from its values.
   */
  name?: string;
  'adapter.ranks'?: RankSplit;
  data?: Dataset;
  seed?: number;
  [k: string]: string | number | boolean | RankSplit | Dataset | undefined;
}
/**
 * What each finished cell is scored with (`hqlora eval` on its run folder).
 */
export interface SweepEval {
  /**
   * Eval loss on the cell's held-out data (data.eval or data.eval_holdout), when it has some.
   */
  loss?: boolean;
  mmlu?: SweepMmlu;
  /**
   * The level ablation of hierarchical splits: MMLU with levels 1, 1-2, ..., all.
   */
  ablation?: boolean;
}
/**
 * Multiple-choice scoring: a Hendrycks MMLU folder (dev/ val/ test/ of <subject>_<split>.csv) or CSV, or a QLoRA {subject,input,output} JSON file.
 */
export interface SweepMmlu {
  /**
   * The questions (relative to the sweep file).
   */
  path: string;
  /**
   * Solved dev examples before each question (Hendrycks layout).
   */
  shots?: number;
  /**
   * Split scored.
   */
  split?: 'dev' | 'val' | 'test';
  /**
   * Score only the first N questions (0 = all).
   */
  max_questions?: number;
}
