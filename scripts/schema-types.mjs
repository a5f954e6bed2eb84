// schema-types.mjs — TypeScript types generated from the JSON Schemas in schemas/ (json-schema-to-typescript).
//
// The schemas are the single source of truth for every process boundary; schemas/generated/<name>.ts is derived
// from schemas/<name>.schema.json and committed. `npm run gen:types` rewrites the files; test/unit/schemas.test.ts
// regenerates them in memory and fails when a committed copy is stale.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { compile } from 'json-schema-to-typescript';

const OPTIONS = {
  bannerComment: '',
  additionalProperties: false,
  ignoreMinAndMaxItems: true,
  strictIndexSignatures: true,
  style: { singleQuote: true, printWidth: 120 },
};

/** Every `*.schema.json` in `<root>/schemas`, as {name, schemaFile, typesFile}, sorted by name. */
export function listSchemas(root) {
  const dir = path.join(root, 'schemas');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.schema.json'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.schema.json'.length);
      return { name, schemaFile: path.join(dir, f), typesFile: path.join(dir, 'generated', `${name}.ts`) };
    });
}

/** The generated TypeScript source for one schema file. */
export async function generateTypes(schemaFile) {
  const schema = JSON.parse(readFileSync(schemaFile, 'utf8'));
  const body = await compile(schema, schema.title ?? path.basename(schemaFile), {
    ...OPTIONS,
    cwd: path.dirname(schemaFile),
  });
  const header =
    `// GENERATED from schemas/${path.basename(schemaFile)} by scripts/gen-types.mjs — do not edit.\n` +
    '// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.\n' +
    '/* eslint-disable */\n';
  return header + body;
}
