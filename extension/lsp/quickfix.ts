// quickfix.ts — code actions for the diagnostics that know their fix (Diagnostic.data, set in diagnostics.ts):
// an unknown key renamed to the nearest allowed key (edit distance), an out-of-range number clamped to the nearest
// valid value, an invalid enum value replaced by the nearest allowed one. Quoted scalars stay quoted. A warning whose
// fixes are whole edits (lengthfix.ts: the lengths against the model's context) offers each of them.
import { type CodeAction, CodeActionKind, type Diagnostic } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';

import type { FixData } from './diagnostics';
import type { EditsFixData } from './lengthfix';

function isFixData(d: unknown): d is FixData {
  return !!d && typeof d === 'object' && (d as FixData).fix === 'replace' && typeof (d as FixData).text === 'string';
}

function isEditsFixData(d: unknown): d is EditsFixData {
  return !!d && typeof d === 'object' && (d as EditsFixData).fix === 'edits' && Array.isArray((d as EditsFixData).actions);
}

export function codeActions(doc: TextDocument, diagnostics: readonly Diagnostic[]): CodeAction[] {
  const out: CodeAction[] = [];
  for (const d of diagnostics) {
    if (isEditsFixData(d.data)) {
      for (const a of d.data.actions) {
        out.push({ title: a.title, kind: CodeActionKind.QuickFix, diagnostics: [d], isPreferred: a.preferred === true, edit: { changes: a.changes } });
      }
      continue;
    }
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
