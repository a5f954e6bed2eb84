// paths.ts — the dotted paths of the run config's scalar keys (e.g. training.learning_rate), read from
// schemas/run-config.schema.json: what a sweep axis may vary besides adapter.ranks, data and seed.

interface SchemaNode {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  oneOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  enum?: unknown[];
  $defs?: Record<string, SchemaNode>;
}

const SCALAR = new Set(['string', 'number', 'integer', 'boolean']);
const cache = new WeakMap<object, string[]>();

/** Every dotted path whose value is a scalar (or may be one, e.g. a string-or-object key), sorted. */
export function scalarPaths(schema: object): string[] {
  const hit = cache.get(schema);
  if (hit) return hit;
  const root = schema as SchemaNode;
  const resolve = (n: SchemaNode): SchemaNode => {
    const m = n.$ref ? /^#\/\$defs\/(.+)$/.exec(n.$ref) : null;
    return m ? { ...(root.$defs?.[m[1] ?? ''] ?? {}), ...n, $ref: undefined } : n;
  };
  const out: string[] = [];
  const walk = (node: SchemaNode, prefix: string, depth: number): void => {
    const n = resolve(node);
    if (depth > 8) return;
    const types = Array.isArray(n.type) ? n.type : n.type ? [n.type] : [];
    const variants = [...(n.oneOf ?? []), ...(n.anyOf ?? [])].map(resolve);
    const scalar = types.some((t) => SCALAR.has(t)) || n.enum !== undefined ||
      variants.some((v) => (Array.isArray(v.type) ? v.type : [v.type]).some((t) => t !== undefined && SCALAR.has(t)));
    if (prefix && scalar) out.push(prefix);
    for (const [k, child] of Object.entries(n.properties ?? {})) walk(child, prefix ? `${prefix}.${k}` : k, depth + 1);
    for (const v of variants) for (const [k, child] of Object.entries(v.properties ?? {})) walk(child, prefix ? `${prefix}.${k}` : k, depth + 1);
  };
  walk(root, '', 0);
  const sorted = [...new Set(out)].filter((p) => !p.startsWith('$schema')).sort();
  cache.set(schema, sorted);
  return sorted;
}
