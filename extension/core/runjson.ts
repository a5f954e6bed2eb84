// runjson.ts — the type of <run>/run.json, the complete config a trainer reads (docs/CONTRACTS.md §2 and §6): the run
// config of schemas/run-config.schema.json with every default filled in. job/resolve.ts builds it; data/ reads its
// data settings from it.
import type { Adapter, Data, ModelRef, RunConfig } from '../../schemas/generated/run-config';

/** T with every optional property made present (defaults filled), recursively. */
export type Filled<T> = T extends readonly (infer U)[]
  ? Filled<U>[]
  : T extends object
    ? { [K in keyof T]-?: Filled<T[K]> }
    : T;

/** The run.json a trainer reads: every default present, `model` as {path}, `levels` expanded, paths absolute. */
export type ResolvedRunConfig = Filled<Omit<RunConfig, '$schema' | 'model' | 'adapter' | 'data'>> & {
  model: ModelRef;
  adapter: Filled<Omit<Adapter, 'ranks' | 'alpha'>>;
  data: Filled<Omit<Data, 'train_tokens' | 'eval_tokens'>> & { train_tokens?: string; eval_tokens?: string | null };
};
