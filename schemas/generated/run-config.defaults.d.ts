// GENERATED from schemas/run-config.schema.json by scripts/schema-validators.mjs — do not edit.
// Standalone ajv validator with useDefaults: it writes every `default` into the data it checks.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
import type { ValidateFunction } from 'ajv/dist/2020';

import type { RunConfig } from './run-config';

export declare const validate: ValidateFunction<RunConfig>;
