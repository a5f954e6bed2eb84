// oasst.ts — the OpenAssistant OASST1 message-tree export turned into conversation threads.
//
// Input, either form (both are exports users have):
//   flat    one message per record: {message_id, parent_id (null at a root), role: "prompter"|"assistant", text,
//           rank (null or 0 = best among siblings), lang, deleted?, review_result?}   (OpenAssistant/oasst1 rows)
//   nested  one tree per record: {message_tree_id?, prompt: {message_id, role, text, ..., replies: [...]}}
//           (the *.trees.jsonl export); flattened to the flat form first.
// Threads: from each root (a prompter message) down to a leaf. `best` (default) follows, at each node, the child
// with the lowest rank (null rank last, ties in file order) — OASST's "top-1 thread", what the Guanaco dataset used;
// `all` yields every root-to-leaf path. A thread that ends with a prompter message is cut back to its last
// assistant reply; a thread with no reply is dropped. Messages marked `deleted: true` or `review_result: false` are
// left out with their subtrees. The language filter keeps threads whose root message has one of the languages.
// Errors name the record's file:line: a dangling parent_id, a duplicate message_id, an unknown role, a missing text.
import { HqError } from '../core/errors';
import type { RawRecord } from './reader';

export type OasstRole = 'prompter' | 'assistant';

export interface OasstOptions {
  /** 'best': one thread per tree (lowest rank at each step); 'all': every root-to-leaf path. */
  paths: 'best' | 'all';
  /** Keep threads whose root `lang` is in this list; null keeps all. */
  lang: string[] | null;
}

export interface OasstThread {
  messages: { role: OasstRole; text: string }[];
  file: string;
  /** Line of the thread's root message. */
  line: number;
}

interface Node {
  id: string;
  parent: string | null;
  role: OasstRole;
  text: string;
  rank: number | null;
  lang: string | null;
  dropped: boolean;
  line: number;
  order: number;
  children: Node[];
}

const HINT = 'OASST1 messages are {"message_id", "parent_id" (null for a root), "role": "prompter"|"assistant", "text", "rank", "lang"}';

/** True when a record looks like an OASST1 message or tree. */
export function isOasstRecord(rec: Record<string, unknown>): boolean {
  return ('message_id' in rec && 'parent_id' in rec) || ('prompt' in rec && typeof rec.prompt === 'object' && rec.prompt !== null && 'message_id' in rec.prompt);
}

function flattenNested(tree: Record<string, unknown>, parent: string | null, out: Record<string, unknown>[]): void {
  const { replies, ...msg } = tree;
  out.push({ ...msg, parent_id: parent });
  if (Array.isArray(replies)) {
    for (const r of replies) {
      if (r && typeof r === 'object') flattenNested(r as Record<string, unknown>, String(msg.message_id), out);
    }
  }
}

function toNode(rec: Record<string, unknown>, file: string, line: number, order: number): Node {
  const bad = (msg: string): HqError => new HqError(msg, { file, line }, HINT);
  const id = rec.message_id;
  if (typeof id !== 'string' || id === '') throw bad('`message_id` must be a non-empty string');
  const parent = rec.parent_id;
  if (parent !== null && parent !== undefined && typeof parent !== 'string') throw bad(`\`parent_id\` of ${id} must be a string or null`);
  const role = rec.role;
  if (role !== 'prompter' && role !== 'assistant') {
    throw bad(`unknown role ${JSON.stringify(role)} in message ${id} (expected "prompter" or "assistant")`);
  }
  if (typeof rec.text !== 'string' || rec.text === '') throw bad(`missing or empty \`text\` in message ${id}`);
  const rank = rec.rank;
  if (rank !== null && rank !== undefined && typeof rank !== 'number') throw bad(`\`rank\` of ${id} must be a number or null`);
  return {
    id, parent: parent ?? null, role, text: rec.text, rank: rank ?? null,
    lang: typeof rec.lang === 'string' ? rec.lang : null,
    dropped: rec.deleted === true || rec.review_result === false, line, order, children: [],
  };
}

/** Lower rank first; null rank after every number; then file order. */
function byRank(a: Node, b: Node): number {
  if (a.rank !== b.rank) {
    if (a.rank === null) return 1;
    if (b.rank === null) return -1;
    return a.rank - b.rank;
  }
  return a.order - b.order;
}

/** Threads of all OASST1 records of one or more files (parents may sit in another record of the same file set). */
export function oasstThreads(records: { raw: RawRecord; file: string }[], opts: OasstOptions): OasstThread[] {
  const nodes = new Map<string, Node>();
  const files = new Map<Node, string>();
  let order = 0;
  for (const { raw, file } of records) {
    const v = raw.value;
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      throw new HqError('expected a JSON object (an OASST1 message or tree)', { file, line: raw.line }, HINT);
    }
    const rec = v as Record<string, unknown>;
    const flat: Record<string, unknown>[] = [];
    if ('prompt' in rec && !('message_id' in rec)) flattenNested(rec.prompt as Record<string, unknown>, null, flat);
    else flat.push(rec);
    for (const m of flat) {
      const node = toNode(m, file, raw.line, order++);
      const prev = nodes.get(node.id);
      if (prev) {
        throw new HqError(`duplicate message_id ${node.id} (first at ${files.get(prev)}:${prev.line})`, { file, line: raw.line }, HINT);
      }
      nodes.set(node.id, node);
      files.set(node, file);
    }
  }
  const roots: Node[] = [];
  for (const n of nodes.values()) {
    if (n.parent === null) {
      roots.push(n);
      continue;
    }
    const p = nodes.get(n.parent);
    if (!p) {
      throw new HqError(`message ${n.id} has parent_id ${n.parent}, which is not in the data (dangling parent)`,
        { file: files.get(n)!, line: n.line }, 'export whole message trees; a reply whose parent is missing cannot be placed in a thread');
    }
    p.children.push(n);
  }
  const threads: OasstThread[] = [];
  for (const root of roots.sort((a, b) => a.order - b.order)) {
    if (root.dropped) continue;
    if (root.role !== 'prompter') {
      throw new HqError(`thread root ${root.id} is an assistant message; a thread starts with a prompter message`,
        { file: files.get(root)!, line: root.line }, HINT);
    }
    if (opts.lang && !opts.lang.includes(root.lang ?? '')) continue;
    const emit = (path: Node[]): void => {
      let end = path.length;
      while (end > 0 && path[end - 1]!.role !== 'assistant') end--;
      if (end === 0) return;
      threads.push({ messages: path.slice(0, end).map((n) => ({ role: n.role, text: n.text })), file: files.get(root)!, line: root.line });
    };
    const walk = (path: Node[]): void => {
      const kids = path[path.length - 1]!.children.filter((c) => !c.dropped).sort(byRank);
      if (kids.length === 0) return emit(path);
      for (const k of opts.paths === 'best' ? kids.slice(0, 1) : kids) walk([...path, k]);
    };
    walk([root]);
  }
  return threads;
}

/** The Guanaco text form of a thread, as in timdettmers/openassistant-guanaco: "### Human: …### Assistant: …". */
export function guanacoText(messages: { role: OasstRole; text: string }[]): string {
  return messages.map((m) => `${m.role === 'prompter' ? '### Human: ' : '### Assistant: '}${m.text}`).join('');
}
