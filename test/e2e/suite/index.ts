// index.ts — entry of the extension-host suites (payload extensionTestsPath = out/e2e/suite/index.js): mocha (tdd)
// over every *.test.js beside it, in a real VS Code extension host.
import fs from 'node:fs';
import path from 'node:path';

import Mocha from 'mocha';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', color: false, timeout: 180_000, reporter: 'spec' });
  const only = process.env.HQLORA_E2E_GREP;
  if (only) mocha.grep(only);
  for (const f of fs.readdirSync(__dirname).sort()) if (f.endsWith('.test.js')) mocha.addFile(path.join(__dirname, f));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => {
      console.log(`${mocha.suite.total() - failures} passed, ${failures} failed`);
      if (failures > 0) reject(new Error(`${failures} tests failed`));
      else resolve();
    });
  });
}
