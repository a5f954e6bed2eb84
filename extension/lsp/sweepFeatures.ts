// sweepFeatures.ts — completion and hover in a sweep file (*.hqsweep.yaml), from schemas/sweep.schema.json through
// schemanav.ts (the same walk as run configs): the sweep's keys with their docs; under `axes:` (and in a `cells:`
// item) adapter.ranks, data, seed and the dotted path of every scalar run-config key (sweep/paths.ts), documented
// by the run-config schema; the paper's rank splits as `adapter.ranks` items and as `baseline`; enum, const and
// default values. The cursor's key path comes from indentation (yamlParentPath), as in run configs.
import { type CompletionItem, CompletionItemKind, type Hover, MarkupKind, type Position } from 'vscode-languageserver';

import sweepSchema from '../../schemas/sweep.schema.json';
import runConfigSchema from '../../schemas/run-config.schema.json';
import { scalarPaths } from '../sweep/paths';
import { LEVEL_PRESETS, yamlParentPath } from './completion';
import type { ConfigDoc, KeyPath } from './document';
import { type Schema, enumValues, properties, schemaAt, schemaMarkdown, typeNames } from './schemanav';

const ROOT = sweepSchema as unknown as Schema;
const AXIS_KEYS = ['adapter.ranks', 'data', 'seed'];
const KEY_LINE = /^(\s*)(-\s+)?([A-Za-z0-9_.$-]*)$/;
const VALUE_LINE = /^(\s*)(-\s+)?([A-Za-z0-9_.$-]+)\s*:\s*(.*)$/;

const isAxisMap = (p: KeyPath): boolean => (p.length === 1 && p[0] === 'axes') || (p.length === 2 && p[0] === 'cells' && typeof p[1] === 'number');

/** The schema and its root of a key path: an axis named by a run-config path is documented by the run-config schema. */
function schemaOf(p: KeyPath): { s: Schema | null; root: Schema } {
  const axis = isAxisMap(p.slice(0, -1)) ? p[p.length - 1] : undefined;
  if (typeof axis === 'string' && !AXIS_KEYS.includes(axis) && axis !== 'name') {
    return { s: schemaAt(axis.split('.')), root: runConfigSchema };
  }
  return { s: schemaAt(p, ROOT), root: ROOT };
}

function axisKeyItems(present: Set<string>): CompletionItem[] {
  const sweepAxes = properties(schemaAt(['axes'], ROOT), ROOT);
  const keys = [...AXIS_KEYS, ...scalarPaths(runConfigSchema).filter((k) => !AXIS_KEYS.includes(k) && k !== 'training.seed')];
  return keys.filter((k) => !present.has(k)).map((k, i) => {
    const own = sweepAxes[k];
    const doc = own ? schemaMarkdown(k, schemaAt(['axes', k], ROOT), ROOT) : schemaMarkdown(k, schemaAt(k.split('.')));
    return { label: k, kind: CompletionItemKind.Property, sortText: String(i).padStart(4, '0'), insertText: `${k}:`,
      documentation: { kind: MarkupKind.Markdown, value: doc } };
  });
}

function keyItems(parent: KeyPath, present: Set<string>): CompletionItem[] {
  if (isAxisMap(parent)) return axisKeyItems(present);
  return Object.keys(properties(schemaAt(parent, ROOT), ROOT)).filter((k) => !present.has(k) && k !== '$schema').map((k, i) => {
    const sub = schemaAt([...parent, k], ROOT);
    const object = typeNames(sub, ROOT).join() === 'object' || Object.keys(properties(sub, ROOT)).length > 0;
    return { label: k, kind: CompletionItemKind.Property, sortText: String(i).padStart(3, '0'), insertText: object ? `${k}:\n  ` : `${k}: `,
      documentation: { kind: MarkupKind.Markdown, value: schemaMarkdown(k, sub, ROOT) } };
  });
}

const splitLabel = (r: readonly number[]): string => `levels ${r.join('+')} = rank ${r.reduce((a, b) => a + b, 0)}`;

function valueItems(p: KeyPath): CompletionItem[] {
  const key = p.filter((s) => typeof s === 'string').join('.');
  if (key === 'axes.adapter.ranks' || (p[0] === 'cells' && p[p.length - 1] === 'adapter.ranks')) {
    return LEVEL_PRESETS.map((r, i) => ({ label: `[${r.join(', ')}]`, kind: CompletionItemKind.Snippet, detail: splitLabel(r), sortText: String(i) }));
  }
  if (key === 'baseline') {
    return LEVEL_PRESETS.map((r, i) => ({ label: `"${r.join(',')}"`, kind: CompletionItemKind.Value, detail: splitLabel(r), sortText: String(i) }));
  }
  const { s, root } = schemaOf(p);
  const values = [...enumValues(s, root), ...[s, ...((s?.oneOf ?? []) as Schema[])].flatMap((b) => (b && b.const !== undefined ? [b.const] : []))];
  if (values.length) return [...new Set(values)].map((v, i) => ({ label: String(v), kind: CompletionItemKind.EnumMember, detail: v === s?.default ? 'default' : '', sortText: String(i) }));
  const d = s?.default;
  return typeof d === 'string' || typeof d === 'number' || typeof d === 'boolean' ? [{ label: String(d), kind: CompletionItemKind.Value, detail: 'default' }] : [];
}

function presentKeys(cd: ConfigDoc, p: KeyPath): Set<string> {
  let cur: unknown = cd.value.ok ? cd.value.value : null;
  for (const seg of p) cur = cur && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[seg] : undefined;
  return new Set(cur && typeof cur === 'object' && !Array.isArray(cur) ? Object.keys(cur) : []);
}

/** The key of the nearest line above `lineNo` indented less than `indent` (yamlParentPath skips dotted keys). */
function ownerKey(lines: readonly string[], lineNo: number, indent: number): string | undefined {
  for (let l = lineNo - 1; l >= 0 && l >= lineNo - 2000; l--) {
    const t = lines[l]!;
    if (t.trim() === '' || t.trim().startsWith('#') || t.length - t.trimStart().length >= indent) continue;
    return /^\s*(?:-\s+)?([A-Za-z0-9_.$-]+)\s*:/.exec(t)?.[1];
  }
  return undefined;
}

export function completeSweep(cd: ConfigDoc, pos: Position): CompletionItem[] {
  const text = cd.text.getText();
  const offset = cd.text.offsetAt(pos);
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const before = text.slice(lineStart, offset);
  const lines = text.slice(0, lineStart).split('\n');
  lines.pop();
  const k = KEY_LINE.exec(before);
  if (k) {
    const ind = k[1]!.length;
    const parent = yamlParentPath(lines.concat(['']), pos.line, ind);
    if (k[2] !== undefined) {
      // A list item: a rank split under adapter.ranks, the keys of a cell under cells.
      if (ownerKey(lines, pos.line, ind + 1) === 'adapter.ranks') return valueItems(['axes', 'adapter.ranks', 0]);
      if (parent.length === 1 && parent[0] === 'cells') return axisKeyItems(new Set());
      return valueItems([...parent, 0]);
    }
    return keyItems(parent, presentKeys(cd, parent));
  }
  const v = VALUE_LINE.exec(before);
  if (v) {
    const ind = v[1]!.length + (v[2]?.length ?? 0);
    const parent = yamlParentPath(lines.concat(['']), pos.line, ind);
    return valueItems([...parent, ...(v[2] !== undefined ? [0] : []), v[3]!]);
  }
  return [];
}

export function hoverSweep(cd: ConfigDoc, pos: Position): Hover | null {
  const at = cd.pathAt(cd.text.offsetAt(pos));
  if (at.path.length === 0 || !at.node?.range) return null;
  const last = at.path[at.path.length - 1]!;
  const named = [...at.path].reverse().find((p): p is string => typeof p === 'string') ?? '';
  const { s, root } = schemaOf(typeof last === 'number' ? at.path.slice(0, -1) : at.path);
  const item = typeof last === 'number' ? schemaAt(at.path, ROOT) : null;
  const doc = schemaMarkdown(typeof last === 'number' ? `${named}[${last}]` : named, item ?? s, item ? ROOT : root);
  if (!doc) return null;
  const r = at.node.range;
  return { contents: { kind: MarkupKind.Markdown, value: doc }, range: cd.range(r[0], r[1]) };
}
