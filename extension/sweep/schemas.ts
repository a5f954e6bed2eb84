// schemas.ts — the compiled validators of the sweep's contracts: the sweep file (schemas/sweep.schema.json), its
// state file (sweep-state.schema.json, read back after a crash) and its results (sweep-results.schema.json).
// Standalone code compiled at build time (schemas/generated/*.validate.js, see extension/core/schemas.ts).
export { validate as validateSweepConfig } from '../../schemas/generated/sweep.validate';
export { validate as validateSweepState } from '../../schemas/generated/sweep-state.validate';
export { validate as validateSweepResults } from '../../schemas/generated/sweep-results.validate';
