// build-deps.mjs — what the native build needs from the system, and what to do when part of it is missing.
//
// APT_PACKAGES is the ONE list of Debian/Ubuntu packages of the build: `npm install` checks it before building
// (scripts/build-native.mjs runs check() first) and .ci/run runs the same check (scripts/check-build-deps.mjs).
// Plain Node, no npm dependencies: it runs before node_modules is complete.
//
// decide() is pure (inputs: the missing packages, the uid, whether sudo works without a password, the distro), so
// test/unit/build-deps.test.ts asserts its decisions; probe() reads the real machine; check() joins them.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Debian/Ubuntu packages of the native build (compiler, CMake, make, pkg-config, OpenBLAS, JSON, doctest). */
export const APT_PACKAGES = ['cmake', 'g++', 'make', 'pkg-config', 'libopenblas-dev', 'nlohmann-json3-dev', 'doctest-dev'];

/** Packages that are tools: one installed some other way (on PATH, e.g. a newer CMake) counts as present. */
const TOOLS = { cmake: 'cmake', 'g++': 'g++', make: 'make', 'pkg-config': 'pkg-config' };

const WHY = 'the compiler, CMake, OpenBLAS, nlohmann-json and doctest of the native trainer in native/';

/**
 * @typedef {{ id: string, idLike: string[] }} Distro  from /etc/os-release (ID, ID_LIKE)
 * @typedef {'passwordless' | 'password' | 'absent'} Sudo  `sudo -n true` works / sudo asks for a password / no sudo
 * @typedef {{ missing: string[] | null, uid: number, sudo: Sudo, distro: Distro }} Facts
 *   missing: null when the package state cannot be read (no dpkg-query)
 * @typedef {{ kind: 'ok' }
 *   | { kind: 'skip', message: string }
 *   | { kind: 'install', packages: string[], commands: string[][], message: string }
 *   | { kind: 'stop', packages: string[], command: string, message: string }} Decision
 */

/** @param {Distro} distro */
export function isDebianLike(distro) {
  return [distro.id, ...distro.idLike].some((d) => d === 'debian' || d === 'ubuntu');
}

/**
 * What to do, from the facts alone.
 * @param {Facts} facts
 * @returns {Decision}
 */
export function decide(facts) {
  const { missing, uid, sudo, distro } = facts;
  if (!isDebianLike(distro)) {
    return {
      kind: 'skip',
      message: `hqlora: not Debian/Ubuntu (ID=${distro.id || 'unknown'}), so the build packages are not checked; ` +
        'the native build needs CMake ≥ 3.20, a C++17 compiler, make, pkg-config, OpenBLAS (with its static ' +
        'libopenblas.a), nlohmann-json 3 and doctest (Debian names: ' + APT_PACKAGES.join(' ') + ')',
    };
  }
  if (missing === null) {
    return { kind: 'skip', message: 'hqlora: dpkg-query is not available, so the build packages are not checked' };
  }
  if (missing.length === 0) return { kind: 'ok' };
  const list = missing.join(' ');
  const install = ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing];
  if (uid === 0 || sudo === 'passwordless') {
    const prefix = uid === 0 ? [] : ['sudo', '-n'];
    return {
      kind: 'install',
      packages: missing,
      commands: [[...prefix, 'apt-get', 'update', '-qq'], [...prefix, ...install]],
      message: `hqlora: installing the missing build packages with ${uid === 0 ? '' : 'sudo '}apt-get: ${list}`,
    };
  }
  const command = sudo === 'absent'
    ? `su -c 'apt-get install -y ${list}'`
    : `sudo apt-get install -y ${list}`;
  return {
    kind: 'stop',
    packages: missing,
    command,
    message: `hqlora: cannot build the native trainer: missing Debian packages ${list} (${WHY}). ` +
      `Not root${sudo === 'password' ? ' and sudo asks for a password' : sudo === 'absent' ? ' and no sudo' : ''}, ` +
      `so nothing was installed. Run\n  ${command}\nthen run npm install again.`,
  };
}

/** @param {string} text  contents of /etc/os-release @returns {Distro} */
export function parseOsRelease(text) {
  /** @type {Record<string, string>} */
  const kv = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) kv[m[1]] = m[2].replace(/^["']|["']$/g, '');
  }
  return { id: kv.ID ?? '', idLike: (kv.ID_LIKE ?? '').split(/\s+/).filter(Boolean) };
}

/**
 * The packages of `packages` that dpkg does not list as installed; null without dpkg-query.
 * @param {string[]} packages
 * @returns {string[] | null}
 */
export function missingPackages(packages) {
  // One dpkg-query for all: it prints a status line per known package and exits 1 if any is unknown.
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package}\t${db:Status-Abbrev}\n', ...packages], { encoding: 'utf8' });
  if (r.error) return null;
  const installed = new Set(
    r.stdout.split('\n').map((l) => l.split('\t')).filter(([, s]) => s?.startsWith('ii')).map(([p]) => p),
  );
  return packages.filter((p) => !installed.has(p));
}

/** @param {string | undefined} command */
function onPath(command) {
  return command !== undefined && !spawnSync(command, ['--version'], { stdio: 'ignore' }).error;
}

/** @returns {Sudo} */
export function sudoState() {
  const r = spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' });
  if (r.error) return 'absent';
  return r.status === 0 ? 'passwordless' : 'password';
}

/**
 * The facts of this machine.
 * @param {string[]} packages
 * @returns {Facts}
 */
export function probe(packages) {
  let osRelease;
  try {
    osRelease = readFileSync('/etc/os-release', 'utf8');
  } catch {
    osRelease = '';
  }
  const distro = parseOsRelease(osRelease);
  const uid = process.getuid?.() ?? -1;
  if (!isDebianLike(distro)) return { missing: null, uid, sudo: 'absent', distro };
  const missing = missingPackages(packages)?.filter((p) => !onPath(TOOLS[/** @type {keyof TOOLS} */ (p)])) ?? null;
  // sudo is asked only when it matters (not root, something missing).
  const sudo = uid !== 0 && missing && missing.length > 0 ? sudoState() : 'absent';
  return { missing, uid, sudo, distro };
}

/**
 * Checks the build packages and acts: installs them (root / passwordless sudo), or returns a stop decision whose
 * message the caller prints before exiting non-zero. `dryRun` acts on nothing and only returns the decision.
 * @param {{ packages?: string[], dryRun?: boolean, log?: (line: string) => void }} [opts]
 * @returns {Decision}
 */
export function check(opts = {}) {
  const packages = opts.packages ?? APT_PACKAGES;
  const log = opts.log ?? ((line) => console.error(line));
  if (process.env.HQ_SKIP_BUILD_DEPS === '1') return { kind: 'skip', message: 'HQ_SKIP_BUILD_DEPS=1' };
  const decision = decide(probe(packages));
  if (decision.kind === 'skip') log(decision.message);
  if (decision.kind !== 'install' || opts.dryRun) return decision;
  log(decision.message);
  for (const argv of decision.commands) {
    const [cmd = 'apt-get', ...args] = argv;
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) {
      throw new Error(`hqlora: \`${argv.join(' ')}\` failed (exit ${r.status ?? r.signal}); install ${decision.packages.join(' ')} and run npm install again`);
    }
  }
  const still = missingPackages(decision.packages) ?? [];
  if (still.length) throw new Error(`hqlora: apt-get finished but ${still.join(' ')} are still not installed`);
  return decision;
}
