// schemas.ts — the validators of the run-config and trainer-events contracts in schemas/ (draft 2020-12, ajv).
//
// The validators are ajv standalone code compiled at build time (scripts/schema-validators.mjs writes
// schemas/generated/<name>.validate.js; `npm run gen:types` and every build regenerate it, a unit test fails when
// the committed copy is stale), so no process compiles a schema when it starts. Two run-config validators exist:
// `validateRunConfig` only checks (used on the user's YAML, so error reports are not confused by filled-in
// defaults) and `fillRunConfigDefaults` checks and writes every `default` into the object (ajv `useDefaults`).
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020';

import type { RunConfig } from '../../schemas/generated/run-config';
import type { TrainerEvent } from '../../schemas/generated/trainer-events';
import { validate as fillDefaults } from '../../schemas/generated/run-config.defaults';
import { validate as checkRunConfig } from '../../schemas/generated/run-config.validate';
import * as trainerEvents from '../../schemas/generated/trainer-events.validate';
import { describeAjvErrors } from './schemaProblems';

export type { ErrorObject };

export const validateRunConfig: ValidateFunction<RunConfig> = checkRunConfig;
export const fillRunConfigDefaults: ValidateFunction<RunConfig> = fillDefaults;
export const validateTrainerEvent: ValidateFunction<TrainerEvent> = trainerEvents.validate;

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
  const branch = (trainerEvents as Partial<Record<string, ValidateFunction>>)[`validate${def}`];
  if (!branch) return `unknown event type "${type}"`;
  return branch(value) ? 'invalid' : `${type} event: ${describeAjvErrors(branch.errors)}`;
}
