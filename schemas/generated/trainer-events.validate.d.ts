// GENERATED from schemas/trainer-events.schema.json by scripts/schema-validators.mjs — do not edit.
// Standalone ajv validators (checking only).
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
import type { ValidateFunction } from 'ajv/dist/2020';

import type { TrainerEvent, StartEvent, StepEvent, EvalEvent, CheckpointEvent, AdapterStatsEvent, WarningEvent, ErrorEvent, DoneEvent, McqEvent, EvalProgressEvent, EvalResultEvent } from './trainer-events';

export declare const validate: ValidateFunction<TrainerEvent>;
export declare const validateStartEvent: ValidateFunction<StartEvent>;
export declare const validateStepEvent: ValidateFunction<StepEvent>;
export declare const validateEvalEvent: ValidateFunction<EvalEvent>;
export declare const validateCheckpointEvent: ValidateFunction<CheckpointEvent>;
export declare const validateAdapterStatsEvent: ValidateFunction<AdapterStatsEvent>;
export declare const validateWarningEvent: ValidateFunction<WarningEvent>;
export declare const validateErrorEvent: ValidateFunction<ErrorEvent>;
export declare const validateDoneEvent: ValidateFunction<DoneEvent>;
export declare const validateMcqEvent: ValidateFunction<McqEvent>;
export declare const validateEvalProgressEvent: ValidateFunction<EvalProgressEvent>;
export declare const validateEvalResultEvent: ValidateFunction<EvalResultEvent>;
