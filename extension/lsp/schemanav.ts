// schemanav.ts — walking schemas/run-config.schema.json by key path: the subschema of a key (with `$ref`s
// resolved and a union's object branch chosen), its properties, and its documentation as Markdown. Completion,
// hover and quick fixes all read the schema through here, so the schema stays the one source of the docs. Every
// function takes the root schema last (default: the run config); sweep files pass schemas/sweep.schema.json.
import runConfigSchema from '../../schemas/run-config.schema.json';
import type { KeyPath } from './document';

export type Schema = Record<string, unknown>;

const ROOT = runConfigSchema as unknown as Schema;

function deref(s: Schema, root: Schema = ROOT): Schema {
  let cur = s;
  for (let i = 0; i < 8 && typeof cur.$ref === 'string'; i++) {
    const ref = cur.$ref;
    const target = ref.startsWith('#/$defs/') ? ((root.$defs as Record<string, Schema>)[ref.slice('#/$defs/'.length)]) : undefined;
    if (!target) break;
    // The referring schema's own annotations (description, default, examples) win over the target's.
    const { $ref: _ref, ...own } = cur;
    cur = { ...target, ...own };
  }
  return cur;
}

/** The branches of a union (oneOf/anyOf) or the schema itself, each dereferenced. */
function branches(s: Schema, root: Schema = ROOT): Schema[] {
  const u = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  return u ? u.map((b) => deref(b, root)) : [s];
}

/** The schema of an object at `s` (the object branch of a union), if any. */
export function objectSchema(s: Schema | null, root: Schema = ROOT): Schema | null {
  if (!s) return null;
  // A schema with its own properties is the object (a sweep's root: properties beside a oneOf of required keys).
  if (s.properties && typeof s.properties === 'object') return s;
  return branches(s, root).find((b) => b.properties && typeof b.properties === 'object') ?? null;
}

export function properties(s: Schema | null, root: Schema = ROOT): Record<string, Schema> {
  const o = objectSchema(s, root);
  return (o?.properties as Record<string, Schema> | undefined) ?? {};
}

function arraySchema(s: Schema, root: Schema): Schema | null {
  return branches(s, root).find((b) => b.items && typeof b.items === 'object') ?? null;
}

/** The subschema at `path`, or null when the path leaves the schema. */
export function schemaAt(path: KeyPath, root: Schema = ROOT): Schema | null {
  let s: Schema | null = deref(root, root);
  for (const seg of path) {
    if (!s) return null;
    if (typeof seg === 'number') {
      const a = arraySchema(s, root);
      s = a ? deref(a.items as Schema, root) : null;
    } else {
      const p: Schema | undefined = properties(s, root)[seg];
      s = p ? deref(p, root) : null;
    }
  }
  return s;
}

/** The parent schema's description for a union member, merged: `model` has the useful text on the union itself. */
export function describe(s: Schema | null): string {
  return typeof s?.description === 'string' ? s.description : '';
}

export function enumValues(s: Schema | null, root: Schema = ROOT): unknown[] {
  if (!s) return [];
  const out: unknown[] = [];
  for (const b of branches(s, root)) {
    if (Array.isArray(b.enum)) out.push(...(b.enum as unknown[]));
    const types = Array.isArray(b.type) ? b.type : [b.type];
    if (types.includes('boolean')) out.push(true, false);
  }
  return [...new Set(out)];
}

export function typeNames(s: Schema | null, root: Schema = ROOT): string[] {
  if (!s) return [];
  const out: string[] = [];
  for (const b of branches(s, root)) {
    if (Array.isArray(b.type)) out.push(...(b.type as string[]));
    else if (typeof b.type === 'string') out.push(b.type);
  }
  return [...new Set(out)];
}

/** Markdown documentation of a key: description, type, allowed values, range, default, examples. */
export function schemaMarkdown(key: string, s: Schema | null, root: Schema = ROOT): string {
  if (!s) return '';
  const lines = [`**${key}**`, '', describe(s)];
  const facts: string[] = [];
  const types = typeNames(s, root);
  if (types.length) facts.push(`type: \`${types.join(' | ')}\``);
  const en = branches(s, root).flatMap((b) => (Array.isArray(b.enum) ? (b.enum as unknown[]) : []));
  if (en.length) facts.push(`one of: ${en.map((v) => `\`${JSON.stringify(v)}\``).join(', ')}`);
  const lo = (s.minimum ?? s.exclusiveMinimum) as number | undefined;
  const hi = (s.maximum ?? s.exclusiveMaximum) as number | undefined;
  if (lo !== undefined || hi !== undefined) {
    facts.push(`range: ${s.exclusiveMinimum !== undefined ? '(' : '['}${lo === undefined ? '-∞' : String(lo)}, ` +
      `${hi === undefined ? '∞' : String(hi)}${s.exclusiveMaximum !== undefined ? ')' : ']'}`);
  }
  if (s.default !== undefined) facts.push(`default: \`${JSON.stringify(s.default)}\``);
  if (Array.isArray(s.examples) && s.examples.length) {
    facts.push(`examples: ${(s.examples as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(', ')}`);
  }
  if (facts.length) lines.push('', ...facts.map((f) => `- ${f}`));
  return lines.join('\n');
}

export const rootSchema = ROOT;
