// Types of scripts/schema-validators.mjs for TypeScript callers (test/unit/schemas.test.ts).
import type Ajv2020 from 'ajv/dist/2020';

export function makeAjv(opts?: { useDefaults?: boolean; source?: boolean }): Ajv2020;
export function generateValidators(schemaFile: string): { file: string; text: string }[];
