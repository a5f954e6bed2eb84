// GENERATED from schemas/token-file.schema.json by scripts/schema-validators.mjs — do not edit.
// Standalone ajv validators (checking only).
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
import type { ValidateFunction } from 'ajv/dist/2020';

import type { TokenFileHeader } from './token-file';

export declare const validate: ValidateFunction<TokenFileHeader>;
