// diagnostics.ts — every problem of a run config as an LSP diagnostic with an exact range: YAML syntax (the `yaml`
// parser's own errors and positions), JSON-Schema violations (ajv, the same validator the CLI uses, each error
// mapped back to the node it is about), then the semantic checks. Schema problems carry `data` for the quick fixes.
import { type Diagnostic, DiagnosticSeverity } from 'vscode-languageserver';

import { type ErrorObject, validateRunConfig } from '../run/schemas';
import type { ConfigDoc, KeyPath } from './document';
import { type Check, type CheckEnv, type Facts, CHECKS, SOURCE, runChecks } from './semantic';
import { closest } from './quickfix';

/** What a quick fix does with the diagnostic's range (kept in Diagnostic.data). */
export type FixData = { fix: 'replace'; text: string; title: string };

const MAX_SYNTAX_DIAGNOSTICS = 100;

export interface Analysis {
  diagnostics: Diagnostic[];
  /** Computed values, when the document parsed into a mapping. */
  facts: Facts | null;
  value: Record<string, unknown> | null;
}

function diag(range: Diagnostic['range'], severity: DiagnosticSeverity, message: string, code: string, data?: FixData): Diagnostic {
  return { range, severity, message, code, source: SOURCE, ...(data ? { data } : {}) };
}

export function analyze(cd: ConfigDoc, env: CheckEnv, checks: readonly Check[] = CHECKS): Analysis {
  const none = { facts: null, value: null };
  if (cd.parseFailure !== null || !cd.doc) {
    const why = /call stack/i.test(cd.parseFailure ?? '') ? 'the document is nested too deeply to parse' : `cannot parse: ${cd.parseFailure}`;
    const at = cd.failureOffset > 0 ? cd.range(cd.failureOffset, cd.failureOffset + 1) : cd.firstLineRange();
    return { diagnostics: [diag(at, DiagnosticSeverity.Error, why, 'yaml-syntax')], ...none };
  }
  const doc = cd.doc;
  const out: Diagnostic[] = [];
  for (const w of doc.warnings) {
    out.push(diag(cd.range(w.pos[0], w.pos[1]), DiagnosticSeverity.Warning, firstLine(w.message), 'yaml-warning'));
  }
  if (doc.errors.length > 0) {
    // A broken document can produce one error per token; the first ones locate the problem.
    for (const e of doc.errors.slice(0, MAX_SYNTAX_DIAGNOSTICS)) {
      out.push(diag(cd.range(e.pos[0], Math.max(e.pos[1], e.pos[0] + 1)), DiagnosticSeverity.Error, `YAML syntax error: ${firstLine(e.message)}`, 'yaml-syntax'));
    }
    return { diagnostics: out, ...none };
  }
  const v = cd.value;
  if (!v.ok) {
    out.push(diag(cd.firstLineRange(), DiagnosticSeverity.Error, `cannot read the document: ${v.error}`, 'yaml-syntax'));
    return { diagnostics: out, ...none };
  }
  const value = v.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    out.push(diag(cd.firstLineRange(), DiagnosticSeverity.Error, 'the config must be a mapping of keys (model:, data:, ...)', 'schema'));
    return { diagnostics: out, ...none };
  }
  if (!validateRunConfig(value)) out.push(...schemaDiagnostics(cd, validateRunConfig.errors ?? []));
  const cfg = value as Record<string, unknown>;
  const r = runChecks(cd, cfg, env, checks);
  out.push(...r.diagnostics);
  return { diagnostics: out, facts: r.facts, value: cfg };
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function keyPathOf(instancePath: string): KeyPath {
  if (!instancePath) return [];
  return instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

export function formatKeyPath(key: KeyPath): string {
  return key.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('') || '(top level)';
}

/** ajv errors → diagnostics; a failed oneOf reports its branches too, only its summary is kept. */
export function schemaDiagnostics(cd: ConfigDoc, errors: ErrorObject[]): Diagnostic[] {
  const unions = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf').map((e) => e.instancePath);
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const inUnion = e.keyword !== 'oneOf' && e.keyword !== 'anyOf' && unions.some((u) => e.instancePath === u || e.instancePath.startsWith(`${u}/`));
    if (inUnion) continue;
    const d = schemaDiagnostic(cd, e);
    const id = `${d.range.start.line}:${d.range.start.character}|${d.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      out.push(d);
    }
  }
  return out;
}

function schemaDiagnostic(cd: ConfigDoc, e: ErrorObject): Diagnostic {
  const key = keyPathOf(e.instancePath);
  const params = e.params as Record<string, unknown>;
  const parent: Record<string, unknown> | undefined = e.parentSchema;
  const where = formatKeyPath(key);
  const E = DiagnosticSeverity.Error;
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = String(params.additionalProperty);
      const allowed = Object.keys((parent?.properties as Record<string, unknown> | undefined) ?? {});
      const present = new Set(Object.keys((e.data as Record<string, unknown> | null) ?? {}));
      const close = closest(extra, allowed.filter((a) => !present.has(a)));
      const range = cd.rangeFor([...key, extra], 'key');
      return diag(range, E, `unknown key "${extra}" in ${where}${close ? `; did you mean "${close}"?` : ''} Allowed: ${allowed.join(', ')}`,
        'unknown-key', close ? { fix: 'replace', text: close, title: `Rename to "${close}"` } : undefined);
    }
    case 'required': {
      const missing = String(params.missingProperty);
      const range = key.length === 0 ? cd.firstLineRange() : cd.rangeFor(key, 'key');
      return diag(range, E, `missing required key "${missing}" in ${where}`, 'missing-key');
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum': {
      const clamped = clamp(e.keyword, params.limit as number, parent);
      return diag(cd.rangeFor(key), E, `${where} ${e.message ?? 'is out of range'} (got ${JSON.stringify(e.data)})`, 'out-of-range',
        { fix: 'replace', text: String(clamped), title: `Clamp to ${clamped}` });
    }
    case 'enum': {
      const allowed = params.allowedValues as unknown[];
      const best = nearestEnum(e.data, allowed);
      return diag(cd.rangeFor(key), E, `${where} must be one of: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, 'enum',
        best === undefined ? undefined : { fix: 'replace', text: best, title: `Change to ${best}` });
    }
    case 'not':
      return diag(cd.rangeFor(key, 'key'), E, `${where}: give the levels either as \`levels\` or as \`ranks\` + \`alpha\`, not both`, 'schema');
    case 'dependentRequired':
      return diag(cd.rangeFor([...key, String(params.property)], 'key'), E,
        `${where}: "${String(params.property)}" needs "${String(params.missingProperty)}"`, 'schema');
    case 'oneOf':
    case 'anyOf':
      return diag(cd.rangeFor(key), E, `${where} has a value of the wrong form: ${typeof parent?.description === 'string' ? parent.description : ''}`.trim(), 'schema');
    default:
      return diag(cd.rangeFor(key), E, `${where} ${e.message ?? 'is invalid'}`, 'schema');
  }
}

/** The nearest valid value for a violated bound (integers step by 1, numbers by 1% of the bound or 0.01). */
function clamp(keyword: string, limit: number, parent: Record<string, unknown> | undefined): number {
  const integer = parent?.type === 'integer';
  const step = integer ? 1 : limit === 0 ? 0.01 : Math.abs(limit) / 100;
  switch (keyword) {
    case 'exclusiveMinimum': return +(limit + step).toPrecision(12);
    case 'exclusiveMaximum': return +(limit - step).toPrecision(12);
    default: return limit;
  }
}

function nearestEnum(value: unknown, allowed: unknown[]): string | undefined {
  if (typeof value === 'number') {
    const nums = allowed.filter((a): a is number => typeof a === 'number');
    const best = nums.sort((a, b) => Math.abs(a - value) - Math.abs(b - value))[0];
    return best === undefined ? undefined : String(best);
  }
  if (typeof value === 'string') return closest(value, allowed.filter((a): a is string => typeof a === 'string'));
  return undefined;
}
