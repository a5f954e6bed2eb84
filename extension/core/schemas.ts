// schemas.ts — the compiled JSON-Schema validators of the contracts in schemas/ (draft 2020-12, ajv).
//
// The schema files are bundled into dist/*.js by esbuild (JSON imports), so validation needs no file lookup at
// run time. Two run-config validators exist: `validateRunConfig` only checks (used on the user's YAML, so error
// reports are not confused by filled-in defaults) and `fillRunConfigDefaults` checks and writes every `default`
// into the object (ajv `useDefaults`).
import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';

import runConfigSchema from '../../schemas/run-config.schema.json';
import trainerEventsSchema from '../../schemas/trainer-events.schema.json';
import type { RunConfig } from '../../schemas/generated/run-config';
import type { TrainerEvent } from '../../schemas/generated/trainer-events';
import { describeAjvErrors } from './schemaProblems';

export type { ErrorObject };

/** The one ajv configuration for every schema in schemas/ (tests compile each schema with it too). */
export function makeAjv(useDefaults = false): Ajv2020 {
  // strictRequired is off because `not: {required: [levels, ranks]}` names properties defined one level up.
  // verbose puts the failing subschema into each error (schemaProblems.ts takes allowed keys and descriptions from it).
  const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true, useDefaults });
  addFormats(ajv); // "date-time" etc. are validated, not ignored
  return ajv;
}

const checking = makeAjv(false);
const defaulting = makeAjv(true);

export const validateRunConfig: ValidateFunction<RunConfig> = checking.compile<RunConfig>(runConfigSchema);
export const fillRunConfigDefaults: ValidateFunction<RunConfig> = defaulting.compile<RunConfig>(runConfigSchema);
export const validateTrainerEvent: ValidateFunction<TrainerEvent> = checking.compile<TrainerEvent>(trainerEventsSchema);

/**
 * One line of trainer output (stdout or events.jsonl) as received: the validated event, or why it was rejected
 * ('not JSON', or the schema problem). Every receiver of trainer events goes through this.
 */
export type ParsedEventLine = { event: TrainerEvent } | { invalid: string };

export function parseEventLine(line: string): ParsedEventLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { invalid: 'not JSON' };
  }
  return validateTrainerEvent(value) ? { event: value } : { invalid: explainInvalidEvent(value) };
}

/**
 * Why `value` is not a valid trainer event, in a few words. A failed top-level oneOf reports every branch; when the
 * value names a known `type`, only that branch's errors are relevant.
 */
export function explainInvalidEvent(value: unknown): string {
  const type = value && typeof value === 'object' && 'type' in value ? value.type : undefined;
  if (typeof type !== 'string') return 'no "type" field';
  const def = `${type.split('_').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('')}Event`;
  const branch = checking.getSchema(`${trainerEventsSchema.$id}#/$defs/${def}`);
  if (!branch) return `unknown event type "${type}"`;
  return branch(value) ? 'invalid' : `${type} event: ${describeAjvErrors(branch.errors)}`;
}
