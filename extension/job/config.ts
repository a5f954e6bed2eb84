// config.ts — loading a `*.hqlora.yaml` run config: YAML syntax, then the JSON Schema, every problem reported with
// file:line:col, the config key path and what to do.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { type Document, isMap, isPair, isScalar, LineCounter, parseDocument } from 'yaml';

import type { RunConfig } from '../../schemas/generated/run-config';
import { errnoCode, HqError, HqErrors } from '../core/errors';
import { type KeyPath, formatKeyPath } from '../core/keypath';
import { schemaProblems } from '../core/schemaProblems';
import { validateRunConfig } from '../core/schemas';

/** A parsed and schema-valid config file, with a way to find where each key is written. */
export interface LoadedRunConfig {
  /** Absolute path of the config file. */
  file: string;
  /** The config as written (no defaults, paths as written). */
  raw: RunConfig;
  /** 1-based line and column of the node at `key` (or of its nearest written ancestor). */
  locate(key: KeyPath): { line: number; col: number };
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
    throw new HqErrors(schemaProblems(validateRunConfig.errors ?? []).map(({ key, message, hint }) => {
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
