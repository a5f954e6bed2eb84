// config.ts — loading a `*.hqlora.yaml` run config: YAML syntax, then the JSON Schema, every problem reported with
// file:line:col, the config key path and what to do.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { type Document, isMap, isPair, isScalar, LineCounter, parseDocument } from 'yaml';

import type { RunConfig } from '../../schemas/generated/run-config';
import { errnoCode, HqError, HqErrors } from './errors';
import { type ErrorObject, validateRunConfig } from './schemas';

/** A key path into the config, e.g. ['adapter', 'levels', 2, 'rank']. */
export type KeyPath = readonly (string | number)[];

/** A parsed and schema-valid config file, with a way to find where each key is written. */
export interface LoadedRunConfig {
  /** Absolute path of the config file. */
  file: string;
  /** The config as written (no defaults, paths as written). */
  raw: RunConfig;
  /** 1-based line and column of the node at `key` (or of its nearest written ancestor). */
  locate(key: KeyPath): { line: number; col: number };
}

/** `adapter.levels[2].rank` for ['adapter', 'levels', 2, 'rank']. */
export function formatKeyPath(key: KeyPath): string {
  return key.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}

/** Reads, parses and validates a run config. Throws HqError / HqErrors (every problem at once). */
export async function loadRunConfig(configPath: string): Promise<LoadedRunConfig> {
  const file = path.resolve(configPath);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    throw new HqError(
      code === 'ENOENT' ? 'config file not found' : `cannot read the config file (${code ?? String(err)})`,
      { file },
      'pass the path of a *.hqlora.yaml file, e.g. hqlora run test/fixtures/demo.hqlora.yaml',
    );
  }
  return parseRunConfig(file, text);
}

/** Parses and validates config text that came from `file` (used by loadRunConfig and by the editor). */
export function parseRunConfig(file: string, text: string): LoadedRunConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);

  if (doc.errors.length > 0) {
    throw new HqErrors(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? at(e.pos[0]);
        return new HqError(`YAML syntax error: ${firstLine(e.message)}`, { file, ...pos }, 'fix the YAML syntax at this position');
      }),
    );
  }
  const locate = (key: KeyPath): { line: number; col: number } => at(nodeOffset(doc, key));

  const value: unknown = doc.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new HqError('the config must be a YAML mapping of keys (model:, data:, ...)', { file, line: 1, col: 1 },
      'start from test/fixtures/demo.hqlora.yaml; the keys are described in schemas/run-config.schema.json');
  }
  if (!validateRunConfig(value)) {
    throw new HqErrors(schemaErrors(validateRunConfig.errors ?? []).map(({ key, message, hint }) => {
      return new HqError(message, { file, ...locate(key), key: formatKeyPath(key) || '(top level)' }, hint);
    }));
  }
  return { file, raw: value, locate };
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** Source offset of the node at `key`, or of the nearest ancestor present in the document (0 if none). */
function nodeOffset(doc: Document, key: KeyPath): number {
  for (let n = key.length; n >= 0; n--) {
    const parent = n > 0 ? doc.getIn(key.slice(0, n - 1), true) : undefined;
    if (n > 0 && isMap(parent)) {
      // Point at the key itself (the map may have the pair even when its value is empty).
      const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key[n - 1]);
      const range = pair && isScalar(pair.key) ? pair.key.range : undefined;
      if (range) return range[0];
    }
    const node: unknown = n > 0 ? doc.getIn(key.slice(0, n), true) : doc.contents;
    if (node && typeof node === 'object' && 'range' in node && Array.isArray(node.range)) {
      return (node.range as number[])[0] ?? 0;
    }
  }
  return 0;
}

interface SchemaProblem {
  key: KeyPath;
  message: string;
  hint: string;
}

function toKeyPath(instancePath: string): (string | number)[] {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

const SCHEMA_HINT = 'see schemas/run-config.schema.json for every key, its type and its default';

/** Turns ajv errors into one readable problem per real mistake. */
function schemaErrors(errors: ErrorObject[]): SchemaProblem[] {
  // A failed oneOf/anyOf also reports every branch's errors below it; keep only the summary for that value.
  const unions = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf').map((e) => e.instancePath);
  const underUnion = (e: ErrorObject): boolean =>
    e.keyword !== 'oneOf' && e.keyword !== 'anyOf' &&
    unions.some((u) => e.instancePath === u || e.instancePath.startsWith(`${u}/`));
  const problems: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (underUnion(e)) continue;
    const p = describe(e);
    const id = `${formatKeyPath(p.key)}|${p.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      problems.push(p);
    }
  }
  return problems;
}

function describe(e: ErrorObject): SchemaProblem {
  const key = toKeyPath(e.instancePath);
  const params = e.params as Record<string, unknown>;
  const parent = e.parentSchema as { description?: string; properties?: Record<string, unknown> } | undefined;
  switch (e.keyword) {
    case 'required': {
      const missing = String(params.missingProperty);
      return { key: [...key, missing], message: `missing required key "${missing}"`, hint: SCHEMA_HINT };
    }
    case 'additionalProperties': {
      const extra = String(params.additionalProperty);
      const allowed = Object.keys(parent?.properties ?? {});
      const close = closest(extra, allowed);
      return {
        key: [...key, extra],
        message: `unknown key "${extra}"`,
        hint: close ? `did you mean "${close}"? allowed keys: ${allowed.join(', ')}` : `allowed keys: ${allowed.join(', ')}`,
      };
    }
    case 'enum':
      return {
        key,
        message: `must be one of: ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
        hint: parent?.description ?? SCHEMA_HINT,
      };
    case 'not':
      return { key, message: 'give the levels either as `levels` or as `ranks` + `alpha`, not both', hint: SCHEMA_HINT };
    case 'oneOf':
    case 'anyOf':
      return { key, message: 'has a value of the wrong form', hint: parent?.description ?? SCHEMA_HINT };
    default:
      return { key, message: e.message ?? 'is invalid', hint: parent?.description ?? SCHEMA_HINT };
  }
}

/** The allowed name closest to a misspelt one (edit distance <= 3), if any. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 4;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}
