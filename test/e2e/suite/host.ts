// host.ts — what the extension-host suites share: the workspace folder made by test/e2e/run-ext-tests.mjs, the
// activated extension, and a wait polled against a deadline (never a fixed sleep).
import assert from 'node:assert/strict';

import * as vscode from 'vscode';

import type { HqloraApi } from '../../../extension/extension';

export const ws = (): string => vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';

/** Polls fn every 50 ms until it returns a truthy value, which is returned; throws naming `what` after ms. */
export async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Activates hqlora.hqlora and returns its API with the extension itself. */
export async function activate(): Promise<{ api: HqloraApi; ext: vscode.Extension<HqloraApi> }> {
  const ext = vscode.extensions.getExtension<HqloraApi>('hqlora.hqlora');
  assert.ok(ext, 'extension hqlora.hqlora not found');
  return { api: await ext.activate(), ext };
}
