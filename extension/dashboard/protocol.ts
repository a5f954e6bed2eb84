// protocol.ts — the host side of the dashboard's message contract (schemas/webview-messages.schema.json).
// Messages from the webview are untrusted: `parseWebviewMessage` validates each one against $defs/WebviewToHost
// (ajv standalone code, schemas/generated/webview-messages.validate.js) and returns the reason for anything else.
import type { HostToWebview, WebviewToHost } from '../../schemas/generated/webview-messages';
import { validateHostToWebview as validateToWebview, validateWebviewToHost as validateToHost } from '../../schemas/generated/webview-messages.validate';
import { describeAjvErrors } from '../core/schemaProblems';

export type ParseResult = { ok: true; message: WebviewToHost } | { ok: false; reason: string };

export function parseWebviewMessage(value: unknown): ParseResult {
  // postMessage data is structured-cloned: always a plain object. Anything else (e.g. an object whose prototype
  // carries `type`, which ajv's property reads would see) is refused before validation.
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    return { ok: false, reason: 'not a plain JSON object' };
  }
  if (validateToHost(value)) return { ok: true, message: value };
  const type = value && typeof value === 'object' && 'type' in value ? String((value).type).slice(0, 40) : '?';
  return { ok: false, reason: `type ${JSON.stringify(type)}: ${describeAjvErrors(validateToHost.errors).slice(0, 300)}` };
}

/** Checks an outgoing message (tests use it to prove the host only sends what the schema allows). */
export function isHostMessage(value: unknown): value is HostToWebview {
  return validateToWebview(value);
}
