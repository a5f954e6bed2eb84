// build-deps.test.ts — the decisions of the build-package check of `npm install` (scripts/build-deps.mjs) from
// given facts: what it installs, what it prints without root. test/integration/build-deps.test.ts runs it for real.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { APT_PACKAGES, decide, parseOsRelease } from '../../scripts/build-deps.mjs';

const debian = { id: 'debian', idLike: [] };
const ubuntu = { id: 'ubuntu', idLike: ['debian'] };
const mint = { id: 'linuxmint', idLike: ['ubuntu', 'debian'] };

describe('decide (build packages)', () => {
  it('does nothing when nothing is missing', () => {
    assert.deepEqual(decide({ missing: [], uid: 1000, sudo: 'absent', distro: debian }), { kind: 'ok' });
  });

  it('as root installs exactly the missing packages with apt-get, after an update, and says so in one line', () => {
    const d = decide({ missing: ['nlohmann-json3-dev', 'doctest-dev'], uid: 0, sudo: 'absent', distro: debian });
    assert.equal(d.kind, 'install');
    assert.deepEqual(d.packages, ['nlohmann-json3-dev', 'doctest-dev']);
    assert.deepEqual(d.commands, [
      ['apt-get', 'update', '-qq'],
      ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'nlohmann-json3-dev', 'doctest-dev'],
    ]);
    assert.equal(d.message, 'hqlora: installing the missing build packages with apt-get: nlohmann-json3-dev doctest-dev');
    assert.ok(!d.message.includes('\n'));
  });

  it('with passwordless sudo installs through sudo -n (never a password prompt)', () => {
    const d = decide({ missing: ['doctest-dev'], uid: 1000, sudo: 'passwordless', distro: ubuntu });
    assert.equal(d.kind, 'install');
    assert.deepEqual(d.commands, [
      ['sudo', '-n', 'apt-get', 'update', '-qq'],
      ['sudo', '-n', 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'doctest-dev'],
    ]);
    assert.match(d.message, /with sudo apt-get: doctest-dev$/);
  });

  it('without root and with a sudo that asks for a password stops with the exact sudo command and why', () => {
    const d = decide({ missing: ['libopenblas-dev', 'doctest-dev'], uid: 1000, sudo: 'password', distro: mint });
    assert.equal(d.kind, 'stop');
    assert.equal(d.command, 'sudo apt-get install -y libopenblas-dev doctest-dev');
    assert.ok(d.message.includes(`\n  sudo apt-get install -y libopenblas-dev doctest-dev\n`), d.message);
    assert.match(d.message, /missing Debian packages libopenblas-dev doctest-dev \(the compiler, CMake, OpenBLAS/);
    assert.match(d.message, /sudo asks for a password, so nothing was installed/);
    assert.match(d.message, /npm install again/);
  });

  it('without root and without sudo stops with the command to run as root', () => {
    const d = decide({ missing: ['cmake'], uid: 1000, sudo: 'absent', distro: debian });
    assert.equal(d.kind, 'stop');
    assert.equal(d.command, "su -c 'apt-get install -y cmake'");
  });

  it('on a distro without apt names what the build needs and checks nothing', () => {
    const d = decide({ missing: null, uid: 0, sudo: 'absent', distro: { id: 'fedora', idLike: [] } });
    assert.equal(d.kind, 'skip');
    assert.match(d.message, /not Debian\/Ubuntu \(ID=fedora\)/);
    assert.match(d.message, /CMake ≥ 3\.20/);
    for (const p of APT_PACKAGES) assert.ok(d.message.includes(p), p);
  });

  it('reads ID and ID_LIKE from os-release, quoted or not', () => {
    assert.deepEqual(parseOsRelease('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'), ubuntu);
    assert.deepEqual(parseOsRelease('ID="linuxmint"\nID_LIKE="ubuntu debian"'), mint);
    assert.deepEqual(parseOsRelease(''), { id: '', idLike: [] });
  });
});
