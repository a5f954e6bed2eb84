// sweep.ts — diagnostics of a sweep file (*.hqsweep.yaml) in the language server: the same parse, schema check and
// cell expansion as `hqlora sweep` (extension/sweep/spec.ts), so the editor shows exactly what the command would
// refuse (unknown axis key, missing dataset, a split off total_rank, a cell the run-config schema rejects), each at
// its file:line, with the hint.
import { type Diagnostic, DiagnosticSeverity } from 'vscode-languageserver';

import { HqError, HqErrors } from '../core/errors';
import { parseSweep } from '../sweep/spec';

export const isSweepFile = (p: string): boolean => /\.hqsweep\.ya?ml$/.test(p);

export async function sweepDiagnostics(file: string, text: string): Promise<Diagnostic[]> {
  try {
    await parseSweep(file, text);
    return [];
  } catch (err) {
    const errors = err instanceof HqErrors ? err.errors : err instanceof HqError ? [err] : null;
    if (!errors) throw err;
    const lines = text.split('\n');
    return errors.map((e): Diagnostic => {
      const line = Math.max(0, (e.where.line ?? 1) - 1);
      const col = Math.max(0, (e.where.col ?? 1) - 1);
      return {
        range: { start: { line, character: col }, end: { line, character: Math.max(col + 1, (lines[line] ?? '').length) } },
        severity: DiagnosticSeverity.Error, source: 'hqlora', code: 'sweep',
        message: e.hint ? `${e.message}\n${e.hint}` : e.message,
      };
    });
  }
}
