#!/usr/bin/env node
// gen-types.mjs — writes schemas/generated/<name>.ts for every schemas/<name>.schema.json.
// Usage: node scripts/gen-types.mjs [--check]   (--check: exit 1 if any committed file is stale, write nothing)
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { generateTypes, listSchemas } from './schema-types.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
let stale = 0;
for (const { schemaFile, typesFile } of listSchemas(root)) {
  const text = await generateTypes(schemaFile);
  const old = existsSync(typesFile) ? readFileSync(typesFile, 'utf8') : null;
  const rel = path.relative(root, typesFile);
  if (old === text) continue;
  if (check) {
    console.error(`${rel} is stale: run npm run gen:types`);
    stale++;
  } else {
    mkdirSync(path.dirname(typesFile), { recursive: true });
    writeFileSync(typesFile, text);
    console.log(`wrote ${rel}`);
  }
}
process.exitCode = stale ? 1 : 0;
