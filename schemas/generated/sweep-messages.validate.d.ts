// GENERATED from schemas/sweep-messages.schema.json by scripts/schema-validators.mjs — do not edit.
// Standalone ajv validators (checking only).
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
import type { ValidateFunction } from 'ajv/dist/2020';

import type { SweepMessage, SweepToHost, HostToSweep } from './sweep-messages';

export declare const validate: ValidateFunction<SweepMessage>;
export declare const validateSweepToHost: ValidateFunction<SweepToHost>;
export declare const validateHostToSweep: ValidateFunction<HostToSweep>;
