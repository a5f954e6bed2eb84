// lengthfix.ts — the quick fixes of the 'seq-len' warning (core/truncation.ts words it): lower the run config's
// lengths to fit the model, or give the model the longer context in its config.json (max_position_embeddings and
// the rope scaling the trainer reads). The edits are computed when the warning is made and travel in
// Diagnostic.data; quickfix.ts turns them into code actions. Formatting is kept: a value is replaced in place, a
// missing key is inserted before the first key of its mapping at the same indentation (block or flow style).
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import type { TextEdit } from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { type Document, isMap, isScalar, parseDocument } from 'yaml';

import type { LengthProblem } from '../core/truncation';
import type { ConfigDoc } from './document';

/** One code action: a title and the edits per document URI. */
export interface FixAction {
  title: string;
  changes: Record<string, TextEdit[]>;
  preferred?: boolean;
}

/** Diagnostic.data of a warning whose fixes are whole edits (possibly in other files). */
export interface EditsFixData {
  fix: 'edits';
  actions: FixAction[];
}

interface Text {
  text: string;
  positionAt(offset: number): { line: number; character: number };
}

/** Sets `key` of a mapping to `value` (already formatted): in place when written, else inserted before the first key. */
function setIn(doc: Document, t: Text, key: readonly (string | number)[], value: string): TextEdit | null {
  const node: unknown = doc.getIn(key, true);
  const range = (node as { range?: [number, number, number] } | null)?.range;
  if (node && range) return { range: { start: t.positionAt(range[0]), end: t.positionAt(range[1]) }, newText: value };
  const parent: unknown = key.length > 1 ? doc.getIn(key.slice(0, -1), true) : doc.contents;
  if (!isMap(parent) || !parent.range) return null;
  const name = String(key[key.length - 1]);
  const first = parent.items[0]?.key;
  if (!isScalar(first) || !first.range) {
    // An empty mapping: `{}` gets the pair inside its braces.
    if (!parent.flow) return null;
    const at = parent.range[0] + 1;
    return { range: { start: t.positionAt(at), end: t.positionAt(at) }, newText: `${JSON.stringify(name)}: ${value}` };
  }
  const at = first.range[0];
  const quoted = t.text[at] === '"' || t.text[at] === "'";
  const k = quoted ? JSON.stringify(name) : name;
  const lineStart = t.text.lastIndexOf('\n', at - 1) + 1;
  const ownLine = /^\s*$/.test(t.text.slice(lineStart, at));
  const sep = parent.flow ? ',' : '';
  const newText = ownLine ? `${k}: ${value}${sep}\n${t.text.slice(lineStart, at)}` : `${k}: ${value}${sep} `;
  return { range: { start: t.positionAt(at), end: t.positionAt(at) }, newText };
}

/** The run config edits that set data.source_max_len / target_max_len to the lengths that fit. */
function lowerLengths(cd: ConfigDoc, p: LengthProblem, current: { source: number; target: number }): FixAction | null {
  if (!cd.doc) return null;
  const t: Text = { text: cd.text.getText(), positionAt: (o) => cd.text.positionAt(o) };
  const edits: TextEdit[] = [];
  const parts: string[] = [];
  for (const [name, want, now] of [['source_max_len', p.fit.source, current.source], ['target_max_len', p.fit.target, current.target]] as const) {
    if (want === now) continue;
    const e = setIn(cd.doc, t, ['data', name], String(want));
    if (!e) return null;
    edits.push(e);
    parts.push(`${name} to ${want}`);
  }
  if (!edits.length) return null;
  return { title: `Lower ${parts.join(' and ')} (sum ${p.fit.source + p.fit.target}, the model's max_position_embeddings)`,
    changes: { [cd.text.uri]: edits }, preferred: true };
}

/** The config.json edits that set max_position_embeddings and the rope scaling (null when it cannot be read or edited). */
function extendContext(configJson: string, p: LengthProblem): FixAction | null {
  const ext = p.extension;
  if (!ext) return null;
  let text: string;
  try {
    text = readFileSync(configJson, 'utf8');
  } catch {
    return null;
  }
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: false, logLevel: 'silent' });
  if (doc.errors.length || !isMap(doc.contents)) return null;
  const uri = pathToFileURL(configJson).href;
  const td = TextDocument.create(uri, 'json', 0, text);
  const t: Text = { text, positionAt: (o) => td.positionAt(o) };
  const mp = setIn(doc, t, ['max_position_embeddings'], String(ext.maxPositions));
  const rope = setIn(doc, t, ext.ropePath, JSON.stringify(ext.ropeFields));
  if (!mp || !rope) return null;
  // Two insertions at one offset would depend on the client's ordering: make them one edit.
  const same = mp.range.start.line === rope.range.start.line && mp.range.start.character === rope.range.start.character &&
    mp.range.end.line === mp.range.start.line && mp.range.end.character === mp.range.start.character;
  const edits = same ? [{ range: mp.range, newText: mp.newText + rope.newText }] : [mp, rope];
  const k = ext.ropeFields.rope_type ?? ext.ropeFields.type;
  const kind = typeof k === 'string' ? k : 'linear';
  return { title: `Extend the model's context to ${ext.maxPositions} in its config.json (max_position_embeddings, ` +
    `${kind} rope scaling factor ${String(ext.ropeFields.factor)})`, changes: { [uri]: edits } };
}

/**
 * The fixes of a length problem: lower the lengths (the run config); extend the context (config.json) when the
 * model is a folder of its own (not a shared Hugging Face cache snapshot) and its scaling can be stretched.
 */
export function lengthFixes(cd: ConfigDoc, p: LengthProblem, current: { source: number; target: number },
  configJson: string, editable: boolean): EditsFixData | undefined {
  const actions = [lowerLengths(cd, p, current), editable ? extendContext(configJson, p) : null].filter((a): a is FixAction => a !== null);
  return actions.length ? { fix: 'edits', actions } : undefined;
}
