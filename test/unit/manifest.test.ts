// manifest.test.ts — package.json as VS Code reads it: no key written twice in one object (JSON.parse keeps the last
// and silently drops the first, as a second "view/item/context" once dropped the Sweeps view's inline button), and
// every command a menu or keybinding names is contributed.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { parseDocument } from 'yaml';

const text = readFileSync(path.join(process.cwd(), 'package.json'), 'utf8');

interface Manifest {
  contributes: {
    commands: { command: string }[];
    menus: Record<string, { command?: string; submenu?: string }[]>;
    keybindings?: { command: string }[];
  };
}

describe('package.json', () => {
  it('has no duplicate key in any object', () => {
    // YAML is a superset of JSON whose parser reports a repeated map key with its position.
    const doc = parseDocument(text, { uniqueKeys: true });
    assert.deepEqual(doc.errors.map((e) => e.message), []);
  });

  it('contributes every command its menus and keybindings name', () => {
    const m = JSON.parse(text) as Manifest;
    const known = new Set(m.contributes.commands.map((c) => c.command));
    const named = [...Object.values(m.contributes.menus).flat().map((e) => e.command), ...(m.contributes.keybindings ?? []).map((k) => k.command)];
    const unknown = named.filter((c): c is string => c !== undefined && !known.has(c));
    assert.deepEqual(unknown, []);
    assert.ok(named.includes('hqlora.openSweepResults'), 'the Sweeps view keeps its inline Open Sweep Results button');
  });
});
