// build-deps.test.ts — the build-package check of `npm install` run for real (scripts/check-build-deps.mjs): dpkg's
// database, the real uid and sudo, as this user and, through setpriv, as nobody (no root, no sudo).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { APT_PACKAGES, missingPackages, probe } from '../../scripts/build-deps.mjs';

// Debian/Ubuntu only (CI and the dev machines are).
const script = path.join(process.cwd(), 'scripts', 'check-build-deps.mjs');
const onDebian = existsSync('/usr/bin/dpkg-query');
const absent = 'hqlora-no-such-package';

// nobody runs copies of the two scripts from a world-readable folder: the checkout itself may sit in a folder only
// its owner can enter (a mktemp -d clone is 0700).
function scriptForNobody(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hq-build-deps-'));
  chmodSync(dir, 0o755);
  for (const f of ['check-build-deps.mjs', 'build-deps.mjs']) {
    copyFileSync(path.join(path.dirname(script), f), path.join(dir, f));
    chmodSync(path.join(dir, f), 0o644);
  }
  return path.join(dir, 'check-build-deps.mjs');
}

function runCheck(args: string[], asNobody = false): { code: number | null; out: string } {
  const argv = asNobody
    ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, scriptForNobody(), ...args]
    : [process.execPath, script, ...args];
  const [cmd = '', ...rest] = argv;
  const r = spawnSync(cmd, rest, { encoding: 'utf8', env: { ...process.env, HQ_SKIP_BUILD_DEPS: '' } });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('check-build-deps.mjs on this machine', { skip: !onDebian && 'not a Debian/Ubuntu machine' }, () => {
  it('finds every build package installed here (the build that runs these tests needed them)', () => {
    assert.deepEqual(missingPackages(APT_PACKAGES), []);
    assert.deepEqual(missingPackages([...APT_PACKAGES, absent]), [absent]);
    const r = runCheck(['--dry-run']);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, '');
  });

  it('plans to install exactly a missing package, or stops with the command when it cannot', () => {
    const facts = probe([absent]);
    const r = runCheck(['--dry-run', absent]);
    if (facts.uid === 0 || facts.sudo === 'passwordless') {
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, new RegExp(`would run: (sudo -n )?apt-get install -y -qq --no-install-recommends ${absent}\\n`));
    } else {
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, new RegExp(`apt-get install -y ${absent}'?\\n`));
    }
  });

  it('as a user without root or sudo (nobody) stops before building with the exact command', { skip: process.getuid?.() !== 0 && 'needs root to switch to nobody' }, () => {
    const r = runCheck([absent], true);
    assert.equal(r.code, 1, r.out);
    assert.ok(/\n {2}(su -c 'apt-get install -y|sudo apt-get install -y) hqlora-no-such-package'?\n/.test(r.out), r.out);
    assert.match(r.out, /so nothing was installed/);
  });
});
