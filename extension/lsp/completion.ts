// completion.ts — completion in a run config: keys (with their schema docs), enum and boolean values, defaults,
// file and folder paths relative to the config, model ids from the local Hugging Face cache, the target modules of
// the model's architecture and level presets. The cursor's key path comes from indentation in block YAML (the text
// being typed is usually not valid YAML yet) and from the parsed nodes in JSON / flow style.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import { type CompletionItem, CompletionItemKind, MarkupKind, type Position } from 'vscode-languageserver';

import type { ConfigDoc, KeyPath } from './document';
import { listCachedModels } from '../model/hfcache';
import { ALL_MODULES } from '../model/memory';
import { modulesOf } from '../model/modelinfo';
import { enumValues, properties, schemaAt, schemaMarkdown, typeNames } from './schemanav';
import type { Facts } from './semantic';

export interface CompletionEnv {
  facts: Facts | null;
  cacheDir: string;
}

/** The level presets: QLoRA's rank-64 budget as one level or split coarse to fine. */
export const LEVEL_PRESETS: readonly (readonly number[])[] = [[64], [32, 32], [32, 16, 16], [32, 8, 8, 8, 8]];

const KEY_LINE = /^(\s*)(-\s+)?([A-Za-z0-9_$-]*)$/;
const VALUE_LINE = /^(\s*)(-\s+)?([A-Za-z0-9_$-]+)\s*:\s*(.*)$/;
const MAX_SCAN_LINES = 2000;

function indentOf(s: string): number {
  return s.length - s.trimStart().length;
}

/** The key path of the mapping that a line indented by `indent` belongs to, from the lines above. */
export function yamlParentPath(lines: readonly string[], lineNo: number, indent: number): KeyPath {
  const out: KeyPath = [];
  let cur = indent;
  for (let l = lineNo - 1; l >= 0 && l >= lineNo - MAX_SCAN_LINES && cur > 0; l--) {
    const t = lines[l]!;
    const s = t.trim();
    if (s === '' || s.startsWith('#')) continue;
    const ind = indentOf(t);
    const item = /^(\s*)-\s+(.*)$/.exec(t);
    if (item && ind < cur && item[1]!.length + t.slice(item[1]!.length).indexOf(item[2]!) === cur) {
      out.unshift(0); // inside the mapping of a list item; any index has the same schema
      cur = ind;
      continue;
    }
    if (ind >= cur) continue;
    const m = /^\s*(?:-\s+)?([A-Za-z0-9_$-]+)\s*:\s*(#.*)?$/.exec(t);
    if (m) {
      out.unshift(m[1]!);
      cur = ind;
    } else {
      cur = ind; // a scalar entry at a lower indent closes nothing we are inside of
    }
  }
  return out;
}

function keyItems(parent: KeyPath, present: Set<string>, json: boolean, indent: string): CompletionItem[] {
  return Object.keys(properties(schemaAt(parent)))
    .filter((k) => !present.has(k))
    .map((k, i) => {
      const sub = schemaAt([...parent, k]);
      const types = typeNames(sub);
      const isObject = !json && (types.length === 1 && types[0] === 'object');
      const isList = !json && types.length === 1 && types[0] === 'array' && Object.keys(properties(schemaAt([...parent, k, 0]))).length > 0;
      return {
        label: k,
        kind: CompletionItemKind.Property,
        sortText: String(i).padStart(3, '0'),
        documentation: { kind: MarkupKind.Markdown, value: schemaMarkdown(k, sub) },
        insertText: json ? `"${k}": ` : isObject ? `${k}:\n${indent}  ` : isList ? `${k}:\n${indent}  - ` : `${k}: `,
      };
    });
}

function presentKeys(cd: ConfigDoc, p: KeyPath): Set<string> {
  const v = cd.value;
  let cur: unknown = v.ok ? v.value : null;
  for (const seg of p) cur = cur && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[seg] : undefined;
  return new Set(cur && typeof cur === 'object' && !Array.isArray(cur) ? Object.keys(cur) : []);
}

function valueItem(label: string, detail: string, kind: CompletionItemKind = CompletionItemKind.Value): CompletionItem {
  return { label, kind, detail };
}

function pathItems(baseDir: string | null, partial: string, pos: Position, wantFiles: boolean): CompletionItem[] {
  if (baseDir === null) return [];
  const raw = partial.replace(/^["']/, '');
  const slash = raw.lastIndexOf('/');
  const dirPart = slash >= 0 ? raw.slice(0, slash + 1) : '';
  const prefix = raw.slice(slash + 1);
  const dir = path.resolve(baseDir, dirPart || '.');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const range = { start: { line: pos.line, character: pos.character - prefix.length }, end: pos };
  const out: CompletionItem[] = [];
  for (const n of names.slice(0, 500)) {
    if (!n.startsWith(prefix) || n.startsWith('.')) continue;
    let isDir: boolean;
    try {
      isDir = statSync(path.join(dir, n)).isDirectory();
    } catch {
      continue;
    }
    if (!isDir && (!wantFiles || !/\.(jsonl|json|txt)$/i.test(n))) continue;
    out.push({ label: isDir ? `${n}/` : n, kind: isDir ? CompletionItemKind.Folder : CompletionItemKind.File,
      sortText: `${isDir ? 0 : 1}${n}`, textEdit: { range, newText: isDir ? `${n}/` : n }, detail: path.join(dir, n) });
  }
  return out;
}

function valueItems(cd: ConfigDoc, p: KeyPath, partial: string, pos: Position, env: CompletionEnv, indent: string): CompletionItem[] {
  const key = p.join('.');
  const baseDir = cd.file ? path.dirname(cd.file) : null;
  const arch = env.facts?.model?.info?.architecture;
  const mods = arch ? modulesOf(arch) : [...ALL_MODULES];
  const flow = partial.trimStart().startsWith('[');
  if (key === 'model' || key === 'model.path') {
    return [
      ...pathItems(baseDir, partial, pos, false),
      ...listCachedModels(env.cacheDir).map((m) => ({ ...valueItem(m.repoId, `Hugging Face cache: ${m.snapshots.length} snapshot(s), refs ${m.refs.join(', ')}`, CompletionItemKind.Module) })),
    ];
  }
  if (key === 'data.train' || key === 'data.eval') return pathItems(baseDir, partial, pos, true);
  if (key === 'output.dir') return pathItems(baseDir, partial, pos, false);
  if (key === 'adapter.ranks') {
    return LEVEL_PRESETS.map((r, i) => ({ ...valueItem(`[${r.join(', ')}]`, `levels ${r.join('+')} = rank ${r.reduce((a, b) => a + b, 0)}`, CompletionItemKind.Snippet), sortText: String(i) }));
  }
  if (key === 'adapter.levels') {
    return LEVEL_PRESETS.map((r, i) => ({
      ...valueItem(`levels ${r.join(',')}`, `${r.length} level(s), total rank ${r.reduce((a, b) => a + b, 0)}, alpha 16`, CompletionItemKind.Snippet),
      sortText: String(i),
      insertText: r.map((rank) => `\n${indent}  - { rank: ${rank}, alpha: 16 }`).join(''),
    }));
  }
  if (key === 'adapter.target_modules') {
    if (flow) {
      const listed = new Set(partial.replace(/[[\]\s"']/g, '').split(',').filter(Boolean));
      return mods.filter((m) => !listed.has(m)).map((m) => valueItem(m, `${arch ?? 'llama/gemma'} projection`, CompletionItemKind.EnumMember));
    }
    return [
      valueItem(`[${mods.join(', ')}]`, 'every projection (QLoRA)', CompletionItemKind.Snippet),
      valueItem(`[${mods.slice(0, 4).join(', ')}]`, 'attention projections only', CompletionItemKind.Snippet),
    ];
  }
  if (/^adapter\.target_modules\.\d+$/.test(key)) return mods.map((m) => valueItem(m, 'projection', CompletionItemKind.EnumMember));
  const s = schemaAt(p);
  const en = enumValues(s);
  if (en.length) return en.map((v, i) => ({ ...valueItem(String(v), v === s?.default ? 'default' : '', CompletionItemKind.EnumMember), sortText: String(i) }));
  const d = s?.default;
  if (typeof d === 'string' || typeof d === 'number' || typeof d === 'boolean') return [valueItem(String(d), 'default')];
  return [];
}

export function complete(cd: ConfigDoc, pos: Position, env: CompletionEnv): CompletionItem[] {
  const text = cd.text.getText();
  const offset = cd.text.offsetAt(pos);
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const before = text.slice(lineStart, offset);
  const json = cd.text.uri.endsWith('.json') || text.trimStart().startsWith('{');
  if (json) return completeJson(cd, offset, before, pos, env);
  const lines = text.slice(0, lineStart).split('\n');
  lines.pop();
  const lineNo = pos.line;
  const k = KEY_LINE.exec(before);
  if (k) {
    const dash = k[2] !== undefined;
    const ind = k[1]!.length;
    const parent = yamlParentPath(lines.concat(['']), lineNo, ind);
    if (dash) {
      const arr = schemaAt(parent);
      const items = arr && arr.items ? schemaAt([...parent, 0]) : null;
      if (items && Object.keys(properties(items)).length) return keyItems([...parent, 0], new Set(), false, ' '.repeat(ind + 2));
      return valueItems(cd, [...parent, 0], k[3]!, pos, env, ' '.repeat(ind));
    }
    return keyItems(parent, presentKeys(cd, parent), false, ' '.repeat(ind));
  }
  const v = VALUE_LINE.exec(before);
  if (v) {
    const ind = v[1]!.length + (v[2]?.length ?? 0);
    const parent = yamlParentPath(lines.concat(['']), lineNo, ind);
    const p = [...parent, ...(v[2] !== undefined ? [0] : []), v[3]!];
    return valueItems(cd, p, v[4]!, pos, env, ' '.repeat(ind));
  }
  return [];
}

function completeJson(cd: ConfigDoc, offset: number, before: string, pos: Position, env: CompletionEnv): CompletionItem[] {
  const at = cd.pathAt(offset);
  const val = /"([A-Za-z0-9_$-]+)"\s*:\s*("?[^",{}[\]]*|\[[^\]]*)$/.exec(before);
  if (val) {
    const parent = at.onKey ? at.path.slice(0, -1) : at.path[at.path.length - 1] === val[1] ? at.path.slice(0, -1) : at.path;
    return valueItems(cd, [...parent, val[1]!], val[2]!, pos, env, '');
  }
  if (/[{,]\s*"?[A-Za-z0-9_$-]*$/.test(before) || /^\s*"?[A-Za-z0-9_$-]*$/.test(before)) {
    const parent = at.onKey ? at.path.slice(0, -1) : at.path;
    return keyItems(parent, presentKeys(cd, parent), true, '');
  }
  return [];
}
