#!/usr/bin/env node
// gen-types.mjs — writes the files derived from every schemas/<name>.schema.json: the TypeScript types
// schemas/generated/<name>.ts (schema-types.mjs) and the standalone validators schemas/generated/<name>.validate.js
// with their .d.ts (schema-validators.mjs).
// Usage: node scripts/gen-types.mjs [--check] [--validators]
//   --check       exit 1 if any committed file is stale, write nothing
//   --validators  only the validators (esbuild.mjs runs this before every build)
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { generateTypes, listSchemas } from './schema-types.mjs';
import { generateValidators } from './schema-validators.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Writes (or with check, only compares) every derived file; returns how many were stale. */
export async function generateAll({ check = false, validatorsOnly = false, log = console.log } = {}) {
  let stale = 0;
  for (const { schemaFile, typesFile } of listSchemas(root)) {
    const files = [...(validatorsOnly ? [] : [{ file: typesFile, text: await generateTypes(schemaFile) }]), ...generateValidators(schemaFile)];
    for (const { file, text } of files) {
      const old = existsSync(file) ? readFileSync(file, 'utf8') : null;
      const rel = path.relative(root, file);
      if (old === text) continue;
      if (check) {
        console.error(`${rel} is stale: run npm run gen:types`);
        stale++;
      } else {
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, text);
        log(`wrote ${rel}`);
      }
    }
  }
  return stale;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const stale = await generateAll({ check: process.argv.includes('--check'), validatorsOnly: process.argv.includes('--validators') });
  process.exitCode = stale ? 1 : 0;
}
