// symbols.ts — the outline of a run config: one symbol per key (sections as namespaces, lists as arrays, scalars by
// type), with the scalar value as detail. Bounded in depth and count so a pathological document stays cheap.
import { type DocumentSymbol, SymbolKind } from 'vscode-languageserver';
import { type Node, isMap, isPair, isScalar, isSeq } from 'yaml';

import type { ConfigDoc } from './document';

const MAX_SYMBOLS = 5000;
const MAX_DEPTH = 32;

function kindOf(n: unknown): SymbolKind {
  if (isMap(n)) return SymbolKind.Namespace;
  if (isSeq(n)) return SymbolKind.Array;
  if (isScalar(n)) {
    if (typeof n.value === 'number') return SymbolKind.Number;
    if (typeof n.value === 'boolean') return SymbolKind.Boolean;
    if (n.value === null) return SymbolKind.Null;
  }
  return SymbolKind.String;
}

export function documentSymbols(cd: ConfigDoc): DocumentSymbol[] {
  let budget = MAX_SYMBOLS;
  const walk = (node: unknown, depth: number): DocumentSymbol[] => {
    const out: DocumentSymbol[] = [];
    if (depth > MAX_DEPTH) return out;
    const entries: { name: string; key: Node | null; value: unknown }[] = [];
    if (isMap(node)) {
      for (const p of node.items) if (isPair(p)) entries.push({ name: isScalar(p.key) ? String(p.key.value) : '?', key: p.key as Node | null, value: p.value });
    } else if (isSeq(node)) {
      node.items.forEach((v, i) => entries.push({ name: `[${i}]`, key: null, value: v }));
    }
    for (const e of entries) {
      if (budget-- <= 0) break;
      const v = e.value as Node | null;
      const start = e.key?.range?.[0] ?? v?.range?.[0];
      const end = v?.range?.[1] ?? e.key?.range?.[1];
      if (start === undefined || end === undefined) continue;
      const range = cd.range(start, end);
      const sel = e.key?.range ? cd.range(e.key.range[0], e.key.range[1]) : range;
      out.push({
        name: e.name || '""',
        kind: kindOf(v),
        range,
        selectionRange: sel,
        ...(isScalar(v) ? { detail: String(v.value).slice(0, 80) } : {}),
        children: isMap(v) || isSeq(v) ? walk(v, depth + 1) : [],
      });
    }
    return out;
  };
  return walk(cd.doc?.contents, 0);
}
