// schemaProblems.ts — the one wording of JSON-Schema violations (ajv errors) for people.
//
// `schemaProblems()` turns ajv's error list into one problem per real mistake: the key path it is about, what is
// wrong, what to do, and (where one exists) the replacement that fixes it. The CLI shows each problem as an HqError
// at file:line:col (run/config.ts); the language server shows the same words at the problem's range and offers
// `fix` as a quick fix (lsp/diagnostics.ts). `describeAjvErrors()` is the compact one-line form for machine input
// (a rejected trainer event line).
import type { ErrorObject } from 'ajv/dist/2020';

import { type KeyPath, keyPathOfPointer } from './keypath';
import { closest } from './spelling';

export type ProblemCode = 'unknown-key' | 'missing-key' | 'out-of-range' | 'enum' | 'schema';

export interface SchemaProblem {
  /** The key the problem is about: the unknown, missing or conflicting key itself, or the key of the bad value. */
  key: KeyPath;
  /**
   * 'key': the key itself is wrong (unknown, missing, needing another), and the message names it in quotes;
   * 'value': the value at `key` is wrong, and the message reads after the key path ("<key> must be one of ...").
   */
  on: 'key' | 'value';
  /** Which part of the document shows the problem best: the key or its value. */
  mark: 'key' | 'value';
  code: ProblemCode;
  /** What is wrong, without the location (each surface says where in its own way). */
  message: string;
  /** What to do. */
  hint: string;
  /** The text that fixes it when put in place of the marked key or value (`mark`). */
  fix?: { text: string; title: string };
}

export const SCHEMA_HINT = 'see schemas/run-config.schema.json for every key, its type and its default';

/** One problem per real mistake: a failed oneOf/anyOf also reports every branch's errors below it; only its summary is kept. */
export function schemaProblems(errors: readonly ErrorObject[]): SchemaProblem[] {
  const isUnion = (e: ErrorObject): boolean => e.keyword === 'oneOf' || e.keyword === 'anyOf';
  const unions = errors.filter(isUnion).map((e) => e.instancePath);
  const underUnion = (e: ErrorObject): boolean =>
    !isUnion(e) && unions.some((u) => e.instancePath === u || e.instancePath.startsWith(`${u}/`));
  const problems: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (underUnion(e)) continue;
    const p = describe(e);
    const id = `${JSON.stringify(p.key)}|${p.on}|${p.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      problems.push(p);
    }
  }
  return problems;
}

function describe(e: ErrorObject): SchemaProblem {
  const key = keyPathOfPointer(e.instancePath);
  const params = e.params as Record<string, unknown>;
  const parent = e.parentSchema as { description?: unknown; properties?: Record<string, unknown>; type?: unknown } | undefined;
  const about = typeof parent?.description === 'string' ? parent.description : SCHEMA_HINT;
  switch (e.keyword) {
    case 'required': {
      const missing = String(params.missingProperty);
      return { key: [...key, missing], on: 'key', mark: 'key', code: 'missing-key', message: `missing required key "${missing}"`, hint: SCHEMA_HINT };
    }
    case 'additionalProperties': {
      const extra = String(params.additionalProperty);
      const allowed = Object.keys(parent?.properties ?? {});
      // A key already written is not what a typo meant.
      const present = new Set(Object.keys(e.data && typeof e.data === 'object' ? e.data : {}));
      const close = closest(extra, allowed.filter((a) => !present.has(a)));
      return {
        key: [...key, extra],
        on: 'key',
        mark: 'key',
        code: 'unknown-key',
        message: `unknown key "${extra}"`,
        hint: close ? `did you mean "${close}"? allowed keys: ${allowed.join(', ')}` : `allowed keys: ${allowed.join(', ')}`,
        ...(close ? { fix: { text: close, title: `Rename to "${close}"` } } : {}),
      };
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum': {
      const clamped = clamp(e.keyword, params.limit as number, parent?.type === 'integer');
      return {
        key,
        on: 'value',
        mark: 'value',
        code: 'out-of-range',
        message: `${e.message ?? 'is out of range'} (got ${JSON.stringify(e.data)})`,
        hint: about,
        fix: { text: String(clamped), title: `Clamp to ${clamped}` },
      };
    }
    case 'enum': {
      const allowed = params.allowedValues as unknown[];
      const best = nearestEnum(e.data, allowed);
      return {
        key,
        on: 'value',
        mark: 'value',
        code: 'enum',
        message: `must be one of: ${allowed.map((v) => JSON.stringify(v)).join(', ')}`,
        hint: about,
        ...(best === undefined ? {} : { fix: { text: best, title: `Change to ${best}` } }),
      };
    }
    case 'not':
      return {
        key, on: 'value', mark: 'key', code: 'schema',
        message: 'has both `levels` and `ranks` + `alpha`', hint: 'give the levels either as `levels` or as `ranks` + `alpha`, not both',
      };
    case 'dependentRequired': {
      const property = String(params.property);
      return { key: [...key, property], on: 'key', mark: 'key', code: 'schema', message: `"${property}" needs "${String(params.missingProperty)}"`, hint: SCHEMA_HINT };
    }
    case 'oneOf':
    case 'anyOf':
      return { key, on: 'value', mark: 'value', code: 'schema', message: 'has a value of the wrong form', hint: about };
    default:
      return { key, on: 'value', mark: 'value', code: 'schema', message: e.message ?? 'is invalid', hint: about };
  }
}

/** The nearest valid value for a violated bound (integers step by 1, numbers by 1% of the bound or 0.01). */
function clamp(keyword: string, limit: number, integer: boolean): number {
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

/** ajv's error list as short `path: message` strings (a rejected trainer event line, an internal check). */
export function describeAjvErrors(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`).join('; ');
}
