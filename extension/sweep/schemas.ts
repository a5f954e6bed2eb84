// schemas.ts — the compiled validators of the sweep's contracts: the sweep file (schemas/sweep.schema.json), its
// state file (sweep-state.schema.json, read back after a crash) and its results (sweep-results.schema.json).
import type { ValidateFunction } from 'ajv/dist/2020';

import sweepSchema from '../../schemas/sweep.schema.json';
import sweepStateSchema from '../../schemas/sweep-state.schema.json';
import sweepResultsSchema from '../../schemas/sweep-results.schema.json';
import type { SweepConfig } from '../../schemas/generated/sweep';
import type { SweepState } from '../../schemas/generated/sweep-state';
import type { SweepResults } from '../../schemas/generated/sweep-results';
import { makeAjv } from '../core/schemas';

const ajv = makeAjv(false);

export const validateSweepConfig: ValidateFunction<SweepConfig> = ajv.compile<SweepConfig>(sweepSchema);
export const validateSweepState: ValidateFunction<SweepState> = ajv.compile<SweepState>(sweepStateSchema);
export const validateSweepResults: ValidateFunction<SweepResults> = ajv.compile<SweepResults>(sweepResultsSchema);
