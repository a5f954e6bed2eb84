// Types of scripts/layers.mjs for TypeScript callers (test/unit/layering.test.ts).
export const LAYERS: readonly (readonly string[])[];
export const LAYER_OF: ReadonlyMap<string, number>;
