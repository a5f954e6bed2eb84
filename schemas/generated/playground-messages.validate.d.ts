// GENERATED from schemas/playground-messages.schema.json by scripts/schema-validators.mjs — do not edit.
// Standalone ajv validators (checking only).
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
import type { ValidateFunction } from 'ajv/dist/2020';

import type { PlaygroundMessage, PlaygroundToHost, HostToPlayground } from './playground-messages';

export declare const validate: ValidateFunction<PlaygroundMessage>;
export declare const validatePlaygroundToHost: ValidateFunction<PlaygroundToHost>;
export declare const validateHostToPlayground: ValidateFunction<HostToPlayground>;
