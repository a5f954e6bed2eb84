// quickfix.ts — code actions for the diagnostics that know their fix (Diagnostic.data, set in diagnostics.ts):
// an unknown key renamed to the nearest allowed key (edit distance), an out-of-range number clamped to the nearest
// valid value, an invalid enum value replaced by the nearest allowed one. Quoted scalars stay quoted.
import { type CodeAction, CodeActionKind, type Diagnostic } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';

import type { FixData } from './diagnostics';

/** Edit distance with adjacent transpositions (optimal string alignment): "cdua" is 1 from "cuda". */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row[j] = j;
        continue;
      }
      const up = rows[i - 1]!;
      let d = Math.min(up[j]! + 1, row[j - 1]! + 1, up[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row[j] = d;
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/** The candidate closest to `word` within a distance of max(2, a third of its length), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  if (word.length > 64) return undefined; // a huge junk key is nobody's typo, and the distance is quadratic
  let best: string | undefined;
  let bestDist = Math.max(2, Math.ceil(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best;
}

function isFixData(d: unknown): d is FixData {
  return !!d && typeof d === 'object' && (d as FixData).fix === 'replace' && typeof (d as FixData).text === 'string';
}

export function codeActions(doc: TextDocument, diagnostics: readonly Diagnostic[]): CodeAction[] {
  const out: CodeAction[] = [];
  for (const d of diagnostics) {
    if (!isFixData(d.data)) continue;
    const old = doc.getText(d.range);
    const quote = old.startsWith('"') ? '"' : old.startsWith("'") ? "'" : '';
    const isNumber = /^-?\d/.test(d.data.text) && !Number.isNaN(Number(d.data.text));
    const text = quote && !isNumber ? (quote === '"' ? JSON.stringify(d.data.text) : `'${d.data.text}'`) : d.data.text;
    out.push({
      title: d.data.title,
      kind: CodeActionKind.QuickFix,
      diagnostics: [d],
      isPreferred: true,
      edit: { changes: { [doc.uri]: [{ range: d.range, newText: text }] } },
    });
  }
  return out;
}
