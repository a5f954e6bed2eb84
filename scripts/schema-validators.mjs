// schema-validators.mjs — the validators of the contracts in schemas/, compiled once at build time into standalone
// JavaScript (ajv standalone code), so that no process compiles a schema when it starts (ajv's compile of the
// run-config and trainer-events schemas cost the CLI about 0.9 s of CPU per start).
//
// schemas/generated/<name>.validate.js (and its .d.ts) is derived from schemas/<name>.schema.json and committed,
// like the generated types: `npm run gen:types` and `npm run build` rewrite it, test/unit/schemas.test.ts
// regenerates it in memory and fails when the committed copy is stale. Each file exports
//   validate             the whole schema
//   validate<Def>        $defs/<Def>, for the defs named in EXPORTED_DEFS (a message direction, an event type)
// and run-config.defaults.js exports `validate` compiled with useDefaults (it writes every `default` into the data).
import { readFileSync } from 'node:fs';
import path from 'node:path';

import Ajv2020 from 'ajv/dist/2020.js';
import standaloneCode from 'ajv/dist/standalone/index.js';
import addFormats from 'ajv-formats';

/**
 * The one ajv configuration for every schema in schemas/ (the tests compile each schema with it too).
 * strictRequired is off because `not: {required: [levels, ranks]}` names properties defined one level up.
 * verbose puts the failing subschema into each error (extension/core/schemaProblems.ts takes allowed keys and
 * descriptions from it).
 */
export function makeAjv({ useDefaults = false, source = false } = {}) {
  const ajv = new Ajv2020.default({
    allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true, useDefaults,
    // Standalone code for build time; refs stay inlined as in a runtime compile, so errors (schemaPath included)
    // are the same as ajv compiling the schema would report.
    ...(source ? { code: { source: true } } : {}),
  });
  addFormats.default(ajv); // "date-time" etc. are validated, not ignored
  return ajv;
}

/** $defs compiled as their own validators, by schema (the root schema's `validate` is always there). */
function exportedDefs(name, schema) {
  if (name === 'trainer-events') {
    // One validator per event type: an invalid line is explained by its own type's errors (core/schemas.ts).
    return (schema.oneOf ?? []).map((b) => b.$ref?.replace('#/$defs/', '')).filter(Boolean);
  }
  if (name === 'webview-messages') return ['WebviewToHost', 'HostToWebview'];
  if (name === 'playground-messages') return ['PlaygroundToHost', 'HostToPlayground'];
  if (name === 'sweep-messages') return ['SweepToHost', 'HostToSweep'];
  return [];
}

const HEADER = (schemaFile, what) =>
  `// GENERATED from schemas/${path.basename(schemaFile)} by scripts/schema-validators.mjs — do not edit.\n` +
  `// ${what}\n` +
  '// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.\n' +
  '/* eslint-disable */\n';

/**
 * The generated files of one schema: [{file, text}] for <name>.validate.js and .d.ts (and for run-config, the
 * defaults-filling run-config.defaults.js and .d.ts). `typesName` is the root type's name in schemas/generated/<name>.ts.
 */
export function generateValidators(schemaFile) {
  const schema = JSON.parse(readFileSync(schemaFile, 'utf8'));
  const name = path.basename(schemaFile, '.schema.json');
  const dir = path.join(path.dirname(schemaFile), 'generated');
  const rootType = schema.title ?? 'unknown';
  const defs = exportedDefs(name, schema);
  const variants = [{ suffix: 'validate', useDefaults: false, defs, what: 'Standalone ajv validators (checking only).' }];
  if (name === 'run-config') variants.push({ suffix: 'defaults', useDefaults: true, defs: [], what: 'Standalone ajv validator with useDefaults: it writes every `default` into the data it checks.' });
  const out = [];
  for (const v of variants) {
    const ajv = makeAjv({ useDefaults: v.useDefaults, source: true });
    ajv.addSchema(schema);
    const refs = { validate: schema.$id };
    for (const d of v.defs) refs[`validate${d}`] = `${schema.$id}#/$defs/${d}`;
    for (const ref of Object.values(refs)) if (!ajv.getSchema(ref)) throw new Error(`${schemaFile}: cannot compile ${ref}`);
    const code = standaloneCode(ajv, refs);
    out.push({ file: path.join(dir, `${name}.${v.suffix}.js`), text: HEADER(schemaFile, v.what) + code + '\n' });
    const types = [`validate: ValidateFunction<${rootType}>`, ...v.defs.map((d) => `validate${d}: ValidateFunction<${d}>`)];
    const imported = [rootType, ...v.defs].filter((t) => t !== 'unknown');
    const dts = HEADER(schemaFile, v.what) +
      "import type { ValidateFunction } from 'ajv/dist/2020';\n\n" +
      (imported.length ? `import type { ${[...new Set(imported)].join(', ')} } from './${name}';\n\n` : '') +
      types.map((t) => `export declare const ${t};\n`).join('');
    out.push({ file: path.join(dir, `${name}.${v.suffix}.d.ts`), text: dts });
  }
  return out;
}
