// diagnostics.ts — every problem of a run config as an LSP diagnostic with an exact range: YAML syntax (the `yaml`
// parser's own errors and positions), JSON-Schema violations (ajv, the same validator and the same words as the
// CLI, each problem mapped back to the node it is about), then the semantic checks.
// Schema problems carry `data` for the quick fixes.
import { type Diagnostic, DiagnosticSeverity } from 'vscode-languageserver';

import { type KeyPath, formatKeyPath } from '../core/keypath';
import { schemaProblems } from '../core/schemaProblems';
import { type ErrorObject, validateRunConfig } from '../core/schemas';
import type { ConfigDoc } from './document';
import { type Check, type CheckEnv, type Facts, CHECKS, SOURCE, runChecks } from './semantic';

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

/** `adapter.levels[2].rank`, or `(top level)`. */
function where(key: KeyPath): string {
  return formatKeyPath(key) || '(top level)';
}

/**
 * ajv errors → diagnostics: the words are core/schemaProblems.ts's (the CLI shows the same); the language server adds
 * the range (the key, or the value it is about) and the quick fix.
 */
export function schemaDiagnostics(cd: ConfigDoc, errors: ErrorObject[]): Diagnostic[] {
  return schemaProblems(errors).map((p) => {
    const parent = p.key.slice(0, -1);
    const range = p.code === 'missing-key'
      ? (parent.length === 0 ? cd.firstLineRange() : cd.rangeFor(parent, 'key'))
      : cd.rangeFor(p.key, p.mark);
    const sentence = p.on === 'value' ? `${where(p.key)} ${p.message}` : `${p.message} in ${where(parent)}`;
    const fix: FixData | undefined = p.fix ? { fix: 'replace', ...p.fix } : undefined;
    return diag(range, DiagnosticSeverity.Error, `${sentence}; ${p.hint}`, p.code, fix);
  });
}
