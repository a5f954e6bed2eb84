// truncation.ts — the one wording of "the configured lengths exceed the model's context", for the language server
// (a warning on data.source_max_len with quick fixes, lsp/semantic.ts) and `hqlora validate` (file:line:col,
// cli/validate.ts). The trainer cuts every example at min(source_max_len + target_max_len, max_position_embeddings)
// and warns W_TRUNCATED after the fact with the same advice (native/src/truncation.cpp): keep the two in step.
//
// Rope scaling is read the way hqlora-train reads config.json (native/src/model_config.cpp): `rope_scaling`
// (transformers 4.x), overridden by `rope_parameters` (5.x; Gemma-3 keeps the global layers' under
// `rope_parameters.full_attention`). A model without scaling is extended by linear position interpolation; linear and
// llama3 scaling by a larger factor; Phi-3's longrope factors are fitted to its checkpoint and are not stretched.

/** The data keys the lengths come from. */
export const LENGTH_KEY = ['data', 'source_max_len'] as const;

/**
 * The longest sequence hqlora trains: source_max_len + target_max_len (and pack_max_len) at most this many tokens.
 * The schema caps each key at it and hqlora-train refuses a larger sum (kMaxSeqLen, native/src/run_config.h).
 */
export const MAX_SEQ_LEN = 16384;

/** The error when source_max_len + target_max_len exceeds MAX_SEQ_LEN, else null (same words as the trainer's). */
export function seqLenLimitProblem(source: number, target: number): { message: string; hint: string } | null {
  if (source + target <= MAX_SEQ_LEN) return null;
  const fit = fittingLengths(source, target, MAX_SEQ_LEN);
  return {
    message: `source_max_len + target_max_len = ${source + target} exceeds ${MAX_SEQ_LEN}, the longest sequence hqlora trains`,
    hint: `lower source_max_len / target_max_len to a sum of at most ${MAX_SEQ_LEN} (e.g. ${fit.source} + ${fit.target})`,
  };
}

export type RopeKind = 'none' | 'linear' | 'llama3' | 'longrope' | 'other';

/** What config.json says about the model's context. */
export interface ModelContext {
  /** max_position_embeddings (the trainer's default 2048 when absent). */
  maxPositions: number;
  /** The config.json key path of the rope scaling the trainer uses, e.g. ['rope_scaling']. */
  ropePath: string[];
  rope: RopeKind;
  /** The scaling factor (1 without scaling; the trainer's defaults: linear 1, llama3 8). */
  factor: number;
  /** The rope object as written (null when absent or null). */
  ropeFields: Record<string, unknown> | null;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** The context of a model from its parsed config.json. */
export function modelContext(cfg: Record<string, unknown>): ModelContext {
  const mp = cfg.max_position_embeddings;
  const maxPositions = typeof mp === 'number' && Number.isInteger(mp) && mp > 0 ? mp : 2048;
  let ropePath = ['rope_scaling'];
  let fields = isObj(cfg.rope_scaling) ? cfg.rope_scaling : null;
  const rp = cfg.rope_parameters;
  if (isObj(rp)) {
    if (cfg.model_type === 'gemma3_text' && ('full_attention' in rp || 'sliding_attention' in rp)) {
      if (isObj(rp.full_attention)) [ropePath, fields] = [['rope_parameters', 'full_attention'], rp.full_attention];
    } else {
      [ropePath, fields] = [['rope_parameters'], rp];
    }
  }
  const type = !fields ? 'default' : typeof fields.rope_type === 'string' ? fields.rope_type : typeof fields.type === 'string' ? fields.type : 'default';
  const rope: RopeKind = type === 'default' ? 'none' : type === 'su' || type === 'longrope' ? 'longrope'
    : type === 'linear' || type === 'llama3' ? type : 'other';
  const f = fields?.factor;
  const factor = typeof f === 'number' && f > 0 ? f : rope === 'llama3' ? 8 : 1;
  return { maxPositions, ropePath, rope, factor, ropeFields: fields };
}

/** A factor as config.json would carry it: up to 4 decimals, no trailing zeros ("8", "1.5", "2.6667"). */
export function factorText(f: number): string {
  return f.toFixed(4).replace(/0+$/, '').replace(/\.$/, '');
}

/** The config.json edit that gives the model `want` positions, or null where its scaling cannot be stretched. */
export interface RopeExtension {
  maxPositions: number;
  /** Where the rope object lives in config.json and what it becomes (its other fields kept). */
  ropePath: string[];
  ropeFields: Record<string, unknown>;
  /** The advice, in the trainer's words. */
  advice: string;
}

export function ropeExtension(ctx: ModelContext, want: number): RopeExtension | null {
  const grow = want / ctx.maxPositions;
  const at = ctx.ropePath.join('.');
  if (ctx.rope === 'none') {
    const factor = Number(factorText(grow));
    const ropeFields: Record<string, unknown> = { ...(ctx.ropeFields ?? {}), rope_type: 'linear', factor };
    delete ropeFields.type; // one name for the kind (early 4.x configs wrote "type")
    const what = at === 'rope_scaling' ? `"rope_scaling": {"rope_type": "linear", "factor": ${factorText(grow)}}`
      : `${at}.rope_type "linear" with ${at}.factor ${factorText(grow)}`;
    return { maxPositions: want, ropePath: ctx.ropePath, ropeFields, advice: `set max_position_embeddings to ${want} and ${what} in the ` +
      "model's config.json (linear position interpolation; the fine-tune then learns the longer context)" };
  }
  if (ctx.rope === 'linear' || ctx.rope === 'llama3') {
    const factor = Number(factorText(ctx.factor * grow));
    return { maxPositions: want, ropePath: ctx.ropePath, ropeFields: { ...(ctx.ropeFields ?? {}), factor },
      advice: `set max_position_embeddings to ${want} and ${at}.factor from ${factorText(ctx.factor)} to ` +
        `${factorText(ctx.factor * grow)} in the model's config.json (${ctx.rope} rope scaling)` };
  }
  return null;
}

/** Lengths that fit `max` positions: keep target_max_len and lower source_max_len where that suffices. */
export function fittingLengths(source: number, target: number, max: number): { source: number; target: number } {
  if (target < max) return { source: Math.min(source, max - target), target };
  if (source < max) return { source, target: max - source };
  const t = Math.max(1, Math.floor(max / 4));
  return { source: max - t, target: t };
}

export interface LengthProblem {
  /** What is wrong (both numbers and the file the limit comes from). */
  message: string;
  /** What to do: lower the lengths, or extend the context where the model's rope scaling allows it. */
  hint: string;
  /** Lengths that fit. */
  fit: { source: number; target: number };
  /** The config.json edit, or null (longrope; the model's scaling cannot be stretched). */
  extension: RopeExtension | null;
}

/**
 * The problem when source_max_len + target_max_len exceeds the model's max_position_embeddings, else null.
 * `configJson` names the model's config.json; `shared` says it is a Hugging Face cache file (edited in place it
 * would change every user of that snapshot).
 */
export function lengthProblem(source: number, target: number, ctx: ModelContext, configJson: string, shared = false): LengthProblem | null {
  const want = source + target;
  const max = ctx.maxPositions;
  if (want <= max) return null;
  const fit = fittingLengths(source, target, max);
  const ext = ropeExtension(ctx, want);
  const lower = `lower source_max_len / target_max_len to a sum of at most ${max} (e.g. ${fit.source} + ${fit.target})`;
  const copy = shared ? ' (the model is in the Hugging Face cache, whose files are shared: copy its folder and point model at the copy first)' : '';
  const hint = ext ? `${lower}, or ${ext.advice}${copy}`
    : `${lower}; this model's ${ctx.rope} rope scaling was fitted to ${max} positions and cannot be stretched (use a longer-context checkpoint)`;
  return {
    message: `source_max_len + target_max_len = ${want} exceeds the model's max_position_embeddings ${max} (${configJson}): ` +
      `the trainer cuts every example at ${max} tokens and trains none past it`,
    hint,
    fit,
    extension: ext,
  };
}
