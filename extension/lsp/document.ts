// document.ts — one parsed run config as the language features see it: the `yaml` library's Document (YAML and
// JSON configs alike, JSON being YAML's flow style) with source ranges, mapped to LSP positions through the
// TextDocument, plus lookups between key paths and nodes.
import { fileURLToPath } from 'node:url';

import type { Range } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { type Document, type Node, isMap, isNode, isPair, isScalar, isSeq, parseDocument } from 'yaml';

/** A key path into the config, e.g. ['adapter', 'levels', 2, 'rank']. */
export type KeyPath = (string | number)[];

export interface PathAt {
  path: KeyPath;
  /** The offset is on a mapping key (not on its value). */
  onKey: boolean;
  node: Node | null;
}

/** How many alias expansions toJS allows (the `yaml` default), so a "billion laughs" document is an error, not a hang. */
const MAX_ALIAS_COUNT = 100;
/** Nesting limits checked before parsing: the `yaml` parser recurses per level and a run config needs 4 or 5. */
export const MAX_NESTING = 64;
const MAX_INDENT = 512;

/** Where `text` nests deeper than MAX_NESTING (flow brackets, `- - -` items) or indents past MAX_INDENT columns. */
export function nestingProblem(text: string): { offset: number; message: string } | null {
  let depth = 0;
  let lineStart = true;
  let dashes = 0;
  let indent = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      lineStart = true;
      dashes = 0;
      indent = 0;
      continue;
    }
    if (lineStart && c === ' ') {
      if (++indent > MAX_INDENT) return { offset: i, message: `the document is indented more than ${MAX_INDENT} columns` };
      continue;
    }
    if (lineStart && c === '-' && (text[i + 1] === ' ' || text[i + 1] === '\n')) {
      if (++dashes > MAX_NESTING) return { offset: i, message: `the document nests more than ${MAX_NESTING} list levels` };
      i++;
      continue;
    }
    lineStart = false;
    if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      while (i < text.length && text[i] !== '\n') i++;
      i--;
    } else if (c === '"' || c === "'") {
      const end = text.indexOf(c, i + 1);
      const nl = text.indexOf('\n', i + 1);
      if (end > 0 && (nl < 0 || end < nl)) i = end;
    } else if (c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return { offset: i, message: `the document nests more than ${MAX_NESTING} levels of brackets` };
    } else if (c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    }
  }
  return null;
}

export class ConfigDoc {
  /** The parsed document; null when the parser itself failed (e.g. nesting too deep for the stack). */
  readonly doc: Document | null;
  readonly parseFailure: string | null;
  /** Where the parse failure is (0 when unknown). */
  readonly failureOffset: number;
  private value_: { ok: true; value: unknown } | { ok: false; error: string } | undefined;

  private constructor(readonly text: TextDocument, readonly file: string | null) {
    let doc: Document | null = null;
    let failure: string | null = null;
    const deep = nestingProblem(text.getText());
    this.failureOffset = deep?.offset ?? 0;
    if (deep) {
      failure = deep.message;
    } else {
      try {
        doc = parseDocument(text.getText(), { uniqueKeys: true, prettyErrors: false, strict: false, logLevel: 'error' });
      } catch (err) {
        failure = err instanceof Error ? err.message : String(err);
      }
    }
    this.doc = doc;
    this.parseFailure = failure;
  }

  static parse(text: TextDocument): ConfigDoc {
    let file: string | null = null;
    if (text.uri.startsWith('file:')) {
      try {
        file = fileURLToPath(text.uri);
      } catch {
        file = null;
      }
    }
    return new ConfigDoc(text, file);
  }

  /** The document as plain data (aliases expanded, bounded). */
  get value(): { ok: true; value: unknown } | { ok: false; error: string } {
    if (this.value_ === undefined) {
      try {
        this.value_ = { ok: true, value: this.doc ? this.doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) : null };
      } catch (err) {
        this.value_ = { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
    }
    return this.value_;
  }

  range(start: number, end: number): Range {
    const len = this.text.getText().length;
    const s = Math.max(0, Math.min(start, len));
    const e = Math.max(s, Math.min(end, len));
    return { start: this.text.positionAt(s), end: this.text.positionAt(e) };
  }

  /** Range of a node: [start, valueEnd] (without trailing comments). */
  nodeRange(node: { range?: [number, number, number] | null } | null | undefined): Range | null {
    const r = node?.range;
    return r ? this.range(r[0], r[1]) : null;
  }

  /** The node at `path`, if written. */
  nodeAt(path: Readonly<KeyPath>): Node | null {
    if (!this.doc) return null;
    if (path.length === 0) return isNode(this.doc.contents) ? this.doc.contents : null;
    try {
      const n: unknown = this.doc.getIn(path, true);
      return isNode(n) ? n : null;
    } catch {
      return null; // getIn throws when a path segment crosses a scalar
    }
  }

  /** The key node of the last segment of `path` (a string key of a map). */
  keyNodeAt(path: Readonly<KeyPath>): Node | null {
    const last = path[path.length - 1];
    if (typeof last !== 'string') return null;
    const parent = this.nodeAt(path.slice(0, -1));
    if (!isMap(parent)) return null;
    for (const p of parent.items) {
      if (isScalar(p.key) && String(p.key.value) === last) return p.key;
    }
    return null;
  }

  /** The best range to mark a problem at `path`: its value, else its key, else the nearest written ancestor. */
  rangeFor(path: Readonly<KeyPath>, prefer: 'value' | 'key' = 'value'): Range {
    for (let n = path.length; n >= 0; n--) {
      const p = path.slice(0, n);
      const key = n > 0 ? this.keyNodeAt(p) : null;
      const val = this.nodeAt(p);
      const first = prefer === 'key' || n < path.length ? [key, val] : [val, key];
      for (const node of first) {
        const r = this.nodeRange(node);
        if (r) return r;
      }
    }
    return this.firstLineRange();
  }

  /** The first line's text (a whole-document problem is marked there). */
  firstLineRange(): Range {
    const text = this.text.getText();
    const nl = text.indexOf('\n');
    return this.range(0, nl < 0 ? Math.min(text.length, 1000) : nl);
  }

  /** What the offset points at: the key path of the innermost key or value containing it. */
  pathAt(offset: number): PathAt {
    const out: PathAt = { path: [], onKey: false, node: null };
    let node: unknown = this.doc?.contents;
    for (let depth = 0; depth < 256 && isNode(node); depth++) {
      out.node = node;
      let next: unknown = null;
      if (isMap(node)) {
        for (const pair of node.items) {
          if (!isPair(pair)) continue;
          const k = pair.key as Node | null;
          const v = pair.value as Node | null;
          const key = isScalar(k) ? String(k.value) : null;
          if (key === null) continue;
          if (k?.range && offset >= k.range[0] && offset <= k.range[1]) {
            out.path.push(key);
            out.onKey = true;
            out.node = k;
            return out;
          }
          if (v?.range && offset >= v.range[0] && offset <= v.range[1]) {
            out.path.push(key);
            next = v;
            break;
          }
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => {
          const r = (item as Node | null)?.range;
          if (next === null && r && offset >= r[0] && offset <= r[1]) {
            out.path.push(i);
            next = item;
          }
        });
      }
      if (next === null) return out;
      node = next;
    }
    return out;
  }
}
