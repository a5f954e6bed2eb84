// layering.test.ts — the import graph of extension/ and webview/ as the layers of scripts/layers.mjs draw it (the
// table eslint.config.mjs enforces too). Every import is read with TypeScript's own pre-processor (static, type-only,
// re-exports, dynamic import() and require()), resolved to a file, and checked:
// - every module of extension/ has a layer;
// - no module imports one of its own layer or one above (a back-edge), named with the file that does it;
// - no circle of files, named file by file;
// - webview/ imports nothing of extension/, no vscode and no node:*; extension/ imports nothing of webview/.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';

import ts from 'typescript';

import { LAYERS, LAYER_OF } from '../../scripts/layers.mjs';

const root = process.cwd();
const rel = (f: string): string => path.relative(root, f);

interface Imports {
  /** Files inside the repository that `file` imports. */
  local: string[];
  /** Package and built-in specifiers. */
  bare: string[];
}

function sources(dir: string): string[] {
  return readdirSync(path.join(root, dir), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(root, dir, f))
    .sort();
}

function resolveLocal(from: string, spec: string): string {
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [base, `${base}.ts`, `${base}.js`, path.join(base, 'index.ts')]) {
    if (existsSync(c) && statSync(c).isFile()) return c;
  }
  assert.fail(`${rel(from)} imports '${spec}', which resolves to no file`);
}

function importsOf(file: string): Imports {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  const out: Imports = { local: [], bare: [] };
  for (const { fileName } of info.importedFiles) {
    if (fileName.startsWith('.')) out.local.push(resolveLocal(file, fileName));
    else out.bare.push(fileName);
  }
  return out;
}

const graph = new Map<string, Imports>([...sources('extension'), ...sources('webview')].map((f) => [f, importsOf(f)]));

/** The module of a file of extension/: its top folder, or its own name for a top-level file. */
function moduleOf(file: string): string | undefined {
  const r = path.relative(path.join(root, 'extension'), file);
  if (r.startsWith('..')) return undefined;
  const [first, ...rest] = r.split(path.sep);
  return rest.length > 0 ? first : first?.replace(/\.ts$/, '');
}

/** Every circle of files (Tarjan's strongly connected components of more than one file, or a file importing itself). */
function circles(): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v)?.local ?? []) {
      if (!graph.has(w)) continue; // schemas/, package.json: leaves
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v) ?? 0, idx.get(w) ?? 0));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w !== undefined) {
          on.delete(w);
          scc.push(w);
        }
      } while (w !== undefined && w !== v);
      if (scc.length > 1 || graph.get(v)?.local.includes(v)) found.push(scc);
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

/** One circle through the files of `scc`, as `a.ts -> b.ts -> a.ts`. */
function describeCircle(scc: string[]): string {
  const inScc = new Set(scc);
  const startFile = [...scc].sort()[0] ?? '';
  const pathTo = (from: string, seen: string[]): string[] | undefined => {
    for (const w of graph.get(from)?.local ?? []) {
      if (w === startFile) return [...seen, w];
      if (inScc.has(w) && !seen.includes(w)) {
        const p = pathTo(w, [...seen, w]);
        if (p) return p;
      }
    }
    return undefined;
  };
  return (pathTo(startFile, [startFile]) ?? scc).map(rel).join(' -> ');
}

describe('layering of extension/ (scripts/layers.mjs)', () => {
  it('names every module once', () => {
    const all = LAYERS.flat();
    assert.equal(new Set(all).size, all.length, `a module in two layers: ${all.join(', ')}`);
  });

  it('gives every module of extension/ a layer', () => {
    const missing = [...new Set([...graph.keys()].map(moduleOf).filter((m): m is string => m !== undefined && !LAYER_OF.has(m)))];
    assert.deepEqual(missing, [], `extension/ modules without a layer (add them to scripts/layers.mjs): ${missing.join(', ')}`);
  });

  it('imports only downward: no module imports its own layer or one above', () => {
    const back: string[] = [];
    for (const [file, { local }] of graph) {
      const from = moduleOf(file);
      if (from === undefined) continue;
      for (const target of local) {
        const to = moduleOf(target);
        if (to === undefined || to === from) continue;
        const a = LAYER_OF.get(from) ?? -1, b = LAYER_OF.get(to) ?? -1;
        if (b <= a) back.push(`${rel(file)} -> ${rel(target)} (${to} is ${b === a ? 'in the layer of' : 'above'} ${from})`);
      }
    }
    assert.deepEqual(back, [], `back-edges:\n  ${back.join('\n  ')}`);
  });

  it('has no import circle', () => {
    const found = circles().map(describeCircle);
    assert.deepEqual(found, [], `import circles:\n  ${found.join('\n  ')}`);
  });

  it('keeps webview/ (the browser) and extension/ (the host) apart; both share only schemas/', () => {
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    const bad: string[] = [];
    for (const [file, { local, bare }] of graph) {
      const inWebview = !rel(file).startsWith('extension');
      for (const target of local) {
        const t = rel(target);
        if (inWebview && t.startsWith(`extension${path.sep}`)) bad.push(`${rel(file)} -> ${t}`);
        if (!inWebview && t.startsWith(`webview${path.sep}`)) bad.push(`${rel(file)} -> ${t}`);
      }
      if (inWebview) for (const b of bare) if (b === 'vscode' || builtins.has(b)) bad.push(`${rel(file)} -> ${b}`);
    }
    assert.deepEqual(bad, [], `imports across the browser/host boundary:\n  ${bad.join('\n  ')}`);
  });

  it('finds the imports it checks (the walk is not empty, type-only and dynamic imports included)', () => {
    const job = graph.get(path.join(root, 'extension', 'job', 'job.ts'));
    assert.ok(job?.local.includes(path.join(root, 'extension', 'data', 'prepare.ts')), 'job.ts -> data/prepare.ts');
    const settings = graph.get(path.join(root, 'extension', 'data', 'settings.ts'));
    assert.ok(settings?.local.includes(path.join(root, 'extension', 'core', 'runjson.ts')), 'a type-only import');
    const server = graph.get(path.join(root, 'extension', 'llama', 'server.ts'));
    assert.ok(server?.bare.includes('node-llama-cpp'), 'a dynamic import()');
  });
});
