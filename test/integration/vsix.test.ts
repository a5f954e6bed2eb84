// vsix.test.ts — the VSIX as a user gets it: `vsce package --target linux-x64` of this build, unzipped into a temp
// folder. Its ELF files must need only the base libraries (readelf -d NEEDED against an allowlist; a library outside
// it only if it is bundled beside the binary and found through RUNPATH $ORIGIN), stay within the README's glibc
// floor, and the packaged CLI + trainer + addon must run the demo fine-tune and a merge with the repository's
// native/ hidden (a tmpfs mounted over it in a private mount namespace, when root can do that).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import YAML from 'yaml';

import { fixtures, requireBuilds, root } from './helpers';

/** glibc, libm, libstdc++, libgcc_s, the loader (and libdl/libpthread/librt, which are glibc too). */
const BASE_LIBS = new Set(['libc.so.6', 'libm.so.6', 'libstdc++.so.6', 'libgcc_s.so.1', 'ld-linux-x86-64.so.2',
  'libdl.so.2', 'libpthread.so.0', 'librt.so.1']);
/** The README's glibc floor ("Portable binaries"). */
const GLIBC_FLOOR = [2, 34];

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-vsix-'));
const ext = path.join(tmp, 'x', 'extension');
const bin = path.join(ext, 'native', 'build', 'bin');
after(() => rmSync(tmp, { recursive: true, force: true }));

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: root, maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.error?.message ?? ''}${r.stderr}`);
  return r.stdout;
}

function isElf(file: string): boolean {
  return readFileSync(file).subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
}

before(() => {
  requireBuilds();
  // What `npm run package` runs after its builds (vsce honours .vscodeignore's allowlist).
  const vsce = path.join(root, 'node_modules', '@vscode', 'vsce', 'vsce');
  sh(process.execPath, [vsce, 'package', '--target', 'linux-x64', '--no-dependencies', '--no-rewrite-relative-links',
    '--allow-missing-repository', '-o', path.join(tmp, 'hqlora.vsix')]);
  sh('unzip', ['-q', path.join(tmp, 'hqlora.vsix'), '-d', path.join(tmp, 'x')]);
});

describe('the packaged VSIX (linux-x64)', () => {
  it('is for linux-x64 only and carries the trainer, the addon and the addon\'s libgomp', () => {
    const manifest = readFileSync(path.join(tmp, 'x', 'extension.vsixmanifest'), 'utf8');
    assert.match(manifest, /TargetPlatform="linux-x64"/);
    assert.deepEqual(readdirSync(bin).sort(), ['hqlora-train', 'hqlora.node', 'libgomp.so.1']);
  });

  it('its binaries NEED only base libraries (or one bundled beside them via RUNPATH $ORIGIN)', () => {
    for (const name of readdirSync(bin)) {
      const file = path.join(bin, name);
      assert.ok(isElf(file), name);
      const dyn = sh('readelf', ['-d', file]);
      const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] ?? '');
      const runpath = /\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]/.exec(dyn)?.[1]?.split(':') ?? [];
      assert.ok(needed.includes('libc.so.6'), `${name}: ${needed.join(' ')}`);
      for (const lib of needed) {
        if (BASE_LIBS.has(lib)) continue;
        assert.ok(runpath.includes('$ORIGIN') && existsSync(path.join(bin, lib)),
          `${name} needs ${lib}, which is not a base library nor bundled beside it with RUNPATH $ORIGIN (RUNPATH ${runpath.join(':') || 'none'})`);
        // The bundled one itself needs only base libraries (checked as its own entry of this loop).
      }
      assert.ok(runpath.every((p) => p === '$ORIGIN'), `${name}: RUNPATH ${runpath.join(':')} points outside the package`);
    }
  });

  it('its binaries ask for no glibc newer than the README\'s floor (objdump -T)', () => {
    for (const name of readdirSync(bin)) {
      const versions = [...sh('objdump', ['-T', path.join(bin, name)]).matchAll(/GLIBC_(\d+)\.(\d+)/g)]
        .map((m) => [Number(m[1]), Number(m[2])] as const);
      const max = versions.reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a), [0, 0] as const);
      assert.ok(max[0] < (GLIBC_FLOOR[0] ?? 0) || (max[0] === GLIBC_FLOOR[0] && max[1] <= (GLIBC_FLOOR[1] ?? 0)),
        `${name} needs GLIBC_${max.join('.')}, newer than the README's floor ${GLIBC_FLOOR.join('.')}`);
    }
  });

  it('runs the demo fine-tune and a merge with the packaged CLI, trainer and addon, native/ out of reach', async () => {
    const cfg = YAML.parse(readFileSync(path.join(fixtures, 'demo.hqlora.yaml'), 'utf8')) as Record<string, unknown> & {
      model: string;
      data: { train: string; eval: string };
      output: { dir: string };
    };
    cfg.model = path.join(fixtures, cfg.model);
    cfg.data.train = path.join(fixtures, cfg.data.train);
    cfg.data.eval = path.join(fixtures, cfg.data.eval);
    cfg.output.dir = path.join(tmp, 'runs');
    const file = path.join(tmp, 'demo.hqlora.yaml');
    writeFileSync(file, YAML.stringify(cfg));

    const cli = path.join(ext, 'dist', 'cli.js');
    // Root hides the build tree: a tmpfs over <repo>/native in a mount namespace of the commands' own.
    const hide = process.getuid?.() === 0 && spawnSync('unshare', ['-m', 'true']).status === 0;
    const script = [
      hide ? `mount -t tmpfs hqlora-hidden '${path.join(root, 'native')}' && test ! -e '${path.join(root, 'native', 'build')}'` : 'true',
      `'${process.execPath}' '${cli}' run '${file}'`,
      `run=$(ls -d '${cfg.output.dir}'/*/ | head -1) && LD_DEBUG=libs '${process.execPath}' '${cli}' merge "$run/adapter"`,
    ].join(' && ');
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, OMP_NUM_THREADS: '2' };
    const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
      const child = spawn(hide ? 'unshare' : 'sh', hide ? ['-m', 'sh', '-c', script] : ['-c', script],
        { cwd: tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, out, err }));
    });
    if (!hide) console.log('vsix: not root (or no mount namespaces), so native/ was left in place; the packaged paths are still the ones used');
    const tail = (r.err.split('\n').filter((l) => !/^\s*\d+:/.test(l)).join('\n') + r.out).slice(-3000);
    assert.equal(r.code, 0, tail);
    const runs = readdirSync(cfg.output.dir);
    assert.equal(runs.length, 1, runs.join(','));
    const run = path.join(cfg.output.dir, runs[0] ?? '');
    assert.ok(existsSync(path.join(run, 'peft', 'adapter_model.safetensors')), tail);
    const ran = readFileSync(path.join(run, 'events.jsonl'), 'utf8');
    assert.match(ran, /"type":"done"/, ran.slice(-500));
    assert.match(r.out, /verify: PASS/, tail);
    // The addon's OpenMP runtime is the bundled copy, found through RUNPATH $ORIGIN.
    assert.ok(r.err.includes(`calling init: ${path.join(bin, 'libgomp.so.1')}`), tail);
  });
});
