// spec.ts — a sweep file (`*.hqsweep.yaml`, schemas/sweep.schema.json) turned into its cells: the base run config
// with the axis values put in, one complete run config per cell, every problem reported at file:line before
// anything starts (unknown axis key, missing dataset, a split whose ranks miss the declared total, a cell whose
// config the run-config schema rejects).
//
// A cell's config is the base config as written, with:
//   adapter.ranks   adapter.ranks = the split, adapter.alpha = the base's alpha (adapter.alpha, else levels[0].alpha,
//                   else 16); adapter.levels is dropped
//   data            the dataset's keys over the base's data; the base's train, eval and format are dropped first
//                   (a base eval file belongs to the base's dataset), other data keys (lengths, holdout) are kept
//   seed            training.seed
//   <a.b.c>         that scalar key
// Paths from the sweep file are made absolute against the sweep file's folder; the base config's own relative paths
// keep resolving against the base file (the cell is resolved as if it were the base file).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { type Document, LineCounter, isMap, isPair, isScalar, parseDocument } from 'yaml';

import runConfigSchema from '../../schemas/run-config.schema.json';
import type { RunConfig } from '../../schemas/generated/run-config';
import type { Cell, Dataset, RankSplit, SweepConfig } from '../../schemas/generated/sweep';
import { type KeyPath, formatKeyPath } from '../core/keypath';
import { type LoadedRunConfig, loadRunConfig } from '../job/config';
import { HqError, HqErrors, errnoCode } from '../core/errors';
import { validateRunConfig } from '../core/schemas';
import { editDistance } from '../core/spelling';
import { scalarPaths } from './paths';
import { validateSweepConfig } from './schemas';

export const SWEEP_SUFFIXES = ['.hqsweep.yaml', '.hqsweep.yml'] as const;

export type Scalar = string | number | boolean;

export interface SweepCell {
  /** The cell's id: its run folder name under <sweep>/cells/. */
  id: string;
  /** Position in the sweep (cartesian order, or the order of `cells:`). */
  index: number;
  /** The rank split, coarse to fine. */
  ranks: number[];
  /** `32,8,8,8,8`: the row label. */
  split: string;
  /** The dataset's label (the column), or '' when the sweep has no data axis. */
  data: string;
  /** training.seed of this cell. */
  seed: number;
  /** Other axis values by dotted path (part of the row key). */
  extra: Record<string, Scalar>;
  /** The cell's run config as written (base + axis values), ready for resolveRunConfig. */
  loaded: LoadedRunConfig;
  /** sha256 of the canonical JSON of the cell's config: a changed config is a different cell. */
  fingerprint: string;
  /** Where the cell comes from in the sweep file. */
  line: number;
}

export interface LoadedSweep {
  file: string;
  name: string;
  raw: SweepConfig;
  /** <output.dir>/<name>, absolute. */
  dir: string;
  baseFile: string;
  cells: SweepCell[];
  eval: { loss: boolean; ablation: boolean; mmlu: { path: string; shots: number; split: 'dev' | 'val' | 'test'; maxQuestions: number } | null };
  /** The baseline row's split label. */
  baseline: string;
  parallel: 'auto' | number;
  bootstrap: { samples: number; seed: number };
  /** sha256 of what decides the scores (eval settings), beside the per-cell fingerprints. */
  evalFingerprint: string;
  locate(key: KeyPath): { line: number; col: number };
}

/** `table2` for `table2.hqsweep.yaml`. */
export function sweepName(file: string): string {
  const base = path.basename(file);
  for (const ext of [...SWEEP_SUFFIXES, '.yaml', '.yml', '.json']) if (base.endsWith(ext)) return base.slice(0, -ext.length);
  return base;
}

export async function loadSweep(file: string): Promise<LoadedSweep> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new HqError(errnoCode(err) === 'ENOENT' ? 'sweep file not found' : `cannot read the sweep file (${String(errnoCode(err) ?? err)})`,
      { file: abs }, 'pass the path of a *.hqsweep.yaml file, e.g. hqlora sweep test/fixtures/sweep.hqsweep.yaml');
  }
  return parseSweep(abs, text);
}

/** Parses, validates and expands a sweep file's text. Throws HqErrors naming every problem found. */
export async function parseSweep(file: string, text: string): Promise<LoadedSweep> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new HqErrors(doc.errors.map((e) => new HqError(`YAML syntax error: ${e.message.split('\n')[0] ?? ''}`,
      { file, ...(e.linePos?.[0] ?? lineCounter.linePos(e.pos[0])) }, 'fix the YAML syntax at this position')));
  }
  const locate = (key: KeyPath): { line: number; col: number } => lineCounter.linePos(nodeOffset(doc, key));
  const at = (key: KeyPath, message: string, hint: string): HqError =>
    new HqError(message, { file, ...locate(key), key: formatKeyPath(key) || '(top level)' }, hint);

  const value: unknown = doc.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new HqError('the sweep file must be a YAML mapping (base:, axes:, eval:, ...)', { file, line: 1, col: 1 },
      'start from test/fixtures/sweep.hqsweep.yaml; every key is described in schemas/sweep.schema.json');
  }
  if (!validateSweepConfig(value)) {
    throw new HqErrors(sweepSchemaErrors(validateSweepConfig.errors ?? []).map((p) => at(p.key, p.message, p.hint)));
  }
  const raw = value;
  const dir = path.dirname(file);
  const fromSweep = (p: string): string => path.resolve(dir, p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p);
  const problems: HqError[] = [];

  const baseFile = fromSweep(raw.base);
  if (!existsSync(baseFile)) {
    throw at(['base'], `base run config not found: ${baseFile}`, 'base: is the path of a *.hqlora.yaml file, relative to the sweep file');
  }
  const base = await loadRunConfig(baseFile);

  // The axes as a list of (key, values, where) in the written order; explicit cells are one "axis" each.
  const combos: { values: Map<string, unknown>; name?: string; key: KeyPath }[] = [];
  const keyProblems = (k: string, where: KeyPath): void => {
    if (k === 'adapter.ranks' || k === 'data' || k === 'seed' || k === 'name') return;
    const known = scalarPaths(runConfigSchema);
    if (!known.includes(k)) {
      const close = closestPath(k, known);
      problems.push(at(where, `unknown axis key "${k}": it is not a scalar key of the run config`,
        `${close ? `did you mean "${close}"? ` : ''}axes are adapter.ranks, data, seed or the dotted path of a scalar run-config key (schemas/run-config.schema.json)`));
    } else if (k.startsWith('output.')) {
      problems.push(at(where, `"${k}" cannot vary across cells: the sweep sets every cell's output folder`, 'remove this axis'));
    }
  };
  if (raw.axes) {
    const axes = Object.entries(raw.axes as Record<string, unknown>).filter((e): e is [string, unknown[]] => Array.isArray(e[1]));
    for (const [k] of axes) keyProblems(k, ['axes', k]);
    let acc: { values: Map<string, unknown>; idx: number[] }[] = [{ values: new Map(), idx: [] }];
    for (const [k, vs] of axes) acc = acc.flatMap((c) => vs.map((v, i) => ({ values: new Map([...c.values, [k, v]]), idx: [...c.idx, i] })));
    for (const c of acc) combos.push({ values: c.values, key: ['axes', axes[0]?.[0] ?? '', c.idx[0] ?? 0] });
  } else {
    (raw.cells ?? []).forEach((cell: Cell, i) => {
      const values = new Map(Object.entries(cell).filter(([k]) => k !== 'name'));
      for (const k of values.keys()) keyProblems(k, ['cells', i, k]);
      combos.push({ values, ...(cell.name !== undefined ? { name: cell.name } : {}), key: ['cells', i] });
    });
  }

  if (problems.length) throw new HqErrors(problems); // the cells of an unknown key would only repeat it

  // Where each axis value is written, to point errors at it.
  const valueKey = (k: string, v: unknown, combo: KeyPath): KeyPath => {
    if (combo[0] === 'cells') return [...combo, k];
    const vs = raw.axes?.[k];
    const i = Array.isArray(vs) ? vs.indexOf(v as never) : -1;
    return ['axes', k, Math.max(0, i)];
  };

  const cells: SweepCell[] = [];
  const ids = new Map<string, number>();
  const baseAlpha = base.raw.adapter?.alpha ?? base.raw.adapter?.levels?.[0]?.alpha ?? 16;
  const baseRanks = base.raw.adapter?.ranks ?? base.raw.adapter?.levels?.map((l) => l.rank) ?? [32, 8, 8, 8, 8];
  for (const [index, combo] of combos.entries()) {
    const cfg = structuredClone(base.raw) as RunConfig & Record<string, unknown>;
    const labels: string[] = [];
    let ranks = baseRanks;
    let data = '';
    let seed = base.raw.training?.seed ?? 0;
    const extra: Record<string, Scalar> = {};
    let bad = false;
    for (const [k, v] of combo.values) {
      const where = valueKey(k, v, combo.key);
      if (k === 'adapter.ranks') {
        ranks = parseSplit(v as RankSplit);
        if (raw.total_rank !== undefined && ranks.reduce((a, b) => a + b, 0) !== raw.total_rank) {
          problems.push(at(where, `rank split ${ranks.join(',')} adds up to ${ranks.reduce((a, b) => a + b, 0)}, not the sweep's total_rank ${raw.total_rank}`,
            `make the ranks of every split add up to ${raw.total_rank}, or remove total_rank to allow unequal totals`));
          bad = true;
        }
        cfg.adapter = { ...(cfg.adapter ?? {}), ranks, alpha: baseAlpha };
        delete cfg.adapter.levels;
        labels.push(`r${ranks.join('-')}`);
      } else if (k === 'data') {
        const ds = normalizeDataset(v as Dataset, fromSweep);
        for (const [what, p] of [['training data', ds.data.train], ['eval data', ds.data.eval]] as const) {
          if (typeof p === 'string' && !existsSync(p)) {
            problems.push(at(where, `${what} of dataset "${ds.name}" not found: ${p}`, 'dataset paths are relative to the sweep file'));
            bad = true;
          }
        }
        const rest = { ...(cfg.data ?? {}) } as Record<string, unknown>;
        delete rest.train;
        delete rest.eval;
        delete rest.format;
        cfg.data = { ...rest, ...ds.data } as unknown as RunConfig['data'];
        data = ds.name;
        labels.push(ds.name);
      } else if (k === 'seed') {
        seed = v as number;
        cfg.training = { ...(cfg.training ?? {}), seed };
        labels.push(`s${seed}`);
      } else {
        setPath(cfg, k.split('.'), v);
        extra[k] = v as Scalar;
        labels.push(`${k.split('.').at(-1) ?? k}${String(v)}`.replace(/[^A-Za-z0-9._+-]/g, '-'));
      }
    }
    if (bad) continue;
    delete cfg.$schema;
    if (cfg.output) {
      delete cfg.output.dir;
      delete cfg.output.run_name;
    }
    const id = combo.name ?? (labels.join('_') || `cell${index}`);
    const line = locate(combo.key).line;
    const dup = ids.get(id);
    if (dup !== undefined) {
      problems.push(at(combo.key, `two cells have the id "${id}" (the other at line ${dup})`, 'give the cells distinct values or names'));
      continue;
    }
    ids.set(id, line);
    if (!validateRunConfig(cfg)) {
      const e = validateRunConfig.errors?.[0];
      const k = (e?.instancePath ?? '').slice(1).replace(/\//g, '.');
      problems.push(at(combo.key, `cell ${id}: its run config is invalid: ${k || '(top level)'} ${e?.message ?? 'is invalid'}`,
        'check the axis values against schemas/run-config.schema.json'));
      continue;
    }
    const loaded: LoadedRunConfig = { file: baseFile, raw: cfg, locate: (k) => base.locate(k) };
    cells.push({ id, index, ranks, split: ranks.join(','), data, seed, extra, loaded, line, fingerprint: sha256(canonicalJson(cfg)) });
  }

  const ev = (raw.eval ?? {});
  const mmlu = ev.mmlu
    ? { path: fromSweep(ev.mmlu.path), shots: ev.mmlu.shots ?? 5, split: ev.mmlu.split ?? 'test', maxQuestions: ev.mmlu.max_questions ?? 0 }
    : null;
  if (mmlu && !existsSync(mmlu.path)) {
    problems.push(at(['eval', 'mmlu', 'path'], `multiple-choice data not found: ${mmlu.path}`,
      'a Hendrycks MMLU folder (dev/ val/ test/), a <subject>_<split>.csv or a QLoRA JSON file, relative to the sweep file'));
  }
  const splits = [...new Set(cells.map((c) => c.split))];
  const baseline = raw.baseline ?? splits.find((s) => !s.includes(',')) ?? splits[0] ?? '';
  if (raw.baseline !== undefined && !splits.includes(raw.baseline)) {
    problems.push(at(['baseline'], `baseline ${raw.baseline} is not one of the sweep's splits (${splits.join(' | ')})`, 'name one of the adapter.ranks values'));
  }
  // A bad split or dataset is checked in every cell that uses it: each problem is reported once.
  if (problems.length) throw new HqErrors([...new Map(problems.map((p) => [p.format(), p])).values()]);
  const evalSettings = { loss: ev.loss ?? true, ablation: ev.ablation ?? true, mmlu };
  const name = raw.name ?? sweepName(file);
  return {
    file, name, raw, baseFile, cells, baseline, locate,
    dir: path.join(fromSweep(raw.output?.dir ?? 'sweeps'), name),
    eval: evalSettings,
    parallel: raw.parallel ?? 'auto',
    bootstrap: { samples: raw.bootstrap?.samples ?? 10000, seed: raw.bootstrap?.seed ?? 0 },
    evalFingerprint: sha256(canonicalJson(evalSettings)),
  };
}

/** [32, 8, 8] for `32,8,8`, [64] for 64. */
export function parseSplit(v: RankSplit): number[] {
  if (Array.isArray(v)) return v;
  if (typeof v === 'number') return [v];
  return v.split(',').map(Number);
}

function normalizeDataset(v: Dataset, abs: (p: string) => string): { name: string; data: Record<string, unknown> } {
  const d: Record<string, unknown> = typeof v === 'string' ? { train: v } : { ...v };
  const name = typeof d.name === 'string' ? d.name : path.basename(String(d.train)).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '-');
  delete d.name;
  d.train = abs(String(d.train));
  if (typeof d.eval === 'string') d.eval = abs(d.eval);
  return { name, data: d };
}

function setPath(obj: Record<string, unknown>, keys: string[], v: unknown): void {
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    const next = o[k];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  o[keys[keys.length - 1] ?? ''] = v;
}

/** JSON with every object's keys sorted (what the fingerprints hash). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function closestPath(word: string, candidates: string[]): string | undefined {
  const last = word.split('.').at(-1) ?? word;
  let best: string | undefined;
  let bestDist = 4;
  for (const c of candidates) {
    const d = Math.min(editDistance(word, c), editDistance(last, c.split('.').at(-1) ?? c) + 1);
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best;
}

/** Source offset of the key (or value) at `key`, else of its nearest written ancestor. */
function nodeOffset(doc: Document, key: KeyPath): number {
  for (let n = key.length; n >= 0; n--) {
    const parent = n > 0 ? doc.getIn(key.slice(0, n - 1), true) : undefined;
    if (n > 0 && isMap(parent) && typeof key[n - 1] === 'string') {
      const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key[n - 1]);
      const range = pair && isScalar(pair.key) ? pair.key.range : undefined;
      if (range) return range[0];
    }
    const node: unknown = n > 0 ? doc.getIn(key.slice(0, n), true) : doc.contents;
    if (node && typeof node === 'object' && 'range' in node && Array.isArray(node.range)) return (node.range as number[])[0] ?? 0;
  }
  return 0;
}

interface Problem {
  key: KeyPath;
  message: string;
  hint: string;
}

const SWEEP_HINT = 'see schemas/sweep.schema.json for every key of a sweep file';

/** ajv errors of the sweep schema, one per mistake (a failed oneOf reports only its summary). */
function sweepSchemaErrors(errors: NonNullable<typeof validateSweepConfig.errors>): Problem[] {
  const unions = errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath);
  const out: Problem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (e.schemaPath.includes('/propertyNames/')) continue; // the propertyNames error itself says it
    if (e.keyword !== 'oneOf' && unions.some((u) => e.instancePath === u || e.instancePath.startsWith(`${u}/`))) continue;
    const key = e.instancePath ? e.instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s)) : [];
    const params = e.params as Record<string, unknown>;
    let p: Problem;
    if (e.keyword === 'additionalProperties') {
      const extra = String(params.additionalProperty);
      const allowed = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      p = { key: [...key, extra], message: `unknown key "${extra}"`, hint: `allowed keys: ${allowed.join(', ')}` };
    } else if (e.keyword === 'required') {
      p = { key: [...key, String(params.missingProperty)], message: `missing required key "${String(params.missingProperty)}"`, hint: SWEEP_HINT };
    } else if (e.keyword === 'oneOf' && key.length === 0) {
      p = { key, message: 'give the cells either as axes: (a cartesian product) or as cells: (an explicit list), exactly one of them', hint: SWEEP_HINT };
    } else if (e.keyword === 'propertyNames') {
      p = { key: [...key, String(params.propertyName)], message: `"${String(params.propertyName)}" is not a dotted key path`, hint: 'axis keys look like adapter.ranks, data, seed or training.learning_rate' };
    } else {
      const d = (e.parentSchema as { description?: unknown } | undefined)?.description;
      p = { key, message: e.keyword === 'oneOf' ? 'has a value of the wrong form' : e.message ?? 'is invalid', hint: typeof d === 'string' ? d : SWEEP_HINT };
    }
    const id = `${formatKeyPath(p.key)}|${p.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      out.push(p);
    }
  }
  return out;
}
