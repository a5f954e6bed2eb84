// stage-playground.mjs — node-llama-cpp for the VSIX: copies it and its runtime dependencies (the production closure
// in package-lock.json) from node_modules/ into dist/node_modules/, where dist/playground.js resolves it. vsce's
// --no-dependencies never packs the top-level node_modules/, and .vscodeignore's allowlist takes dist/node_modules/**.
//   node scripts/stage-playground.mjs [--target linux-x64]
// Of node-llama-cpp's optional prebuilt binaries only the target's are staged: linux-x64 (CPU) and linux-x64-cuda
// (CUDA 13; the playground says when it falls back to the CPU). Left out: linux-x64-cuda-ext (a 374 MB CUDA 12
// fallback), Vulkan, and llama/gitRelease.bundle (llama.cpp's source, only for building from source, which the
// playground never does: build "never"). Prints what it staged and its size.
import { cpSync, existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

const PREBUILT = {
  'linux-x64': ['@node-llama-cpp/linux-x64', '@node-llama-cpp/linux-x64-cuda'],
};
/** Not needed at run time: build-from-source sources, type declarations and source maps. */
const SKIP = [/\/llama\/gitRelease\.bundle$/, /\.d\.ts$/, /\.map$/];

const root = process.cwd();
const ti = process.argv.indexOf('--target');
const target = ti >= 0 ? process.argv[ti + 1] : 'linux-x64';
const prebuilt = PREBUILT[target];
if (!prebuilt) {
  console.error(`stage-playground: no prebuilt node-llama-cpp binaries are listed for --target ${target} (known: ${Object.keys(PREBUILT).join(', ')})`);
  process.exit(2);
}
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')).packages;

/** Node's lookup in lockfile terms: <from>/node_modules/<dep>, then each parent's, up to the top-level node_modules. */
function resolve(from, dep) {
  for (let dir = from; ; ) {
    const p = dir ? `${dir}/node_modules/${dep}` : `node_modules/${dep}`;
    if (lock[p]) return p;
    if (!dir) return undefined;
    const i = dir.lastIndexOf('/node_modules/');
    dir = i >= 0 ? dir.slice(0, i) : '';
  }
}

const closure = new Set();
const stack = ['node_modules/node-llama-cpp'];
while (stack.length > 0) {
  const p = stack.pop();
  if (closure.has(p)) continue;
  const entry = lock[p];
  if (!entry) throw new Error(`stage-playground: package-lock.json has no ${p}`);
  closure.add(p);
  const optional = Object.keys(entry.optionalDependencies ?? {});
  for (const dep of [...Object.keys(entry.dependencies ?? {}), ...optional.filter((d) => prebuilt.includes(d))]) {
    const r = resolve(p, dep);
    if (!r) throw new Error(`stage-playground: ${p} depends on ${dep}, which package-lock.json does not hold: run \`npm ci\``);
    stack.push(r);
  }
}

const out = path.join(root, 'dist');
rmSync(path.join(out, 'node_modules'), { recursive: true, force: true });
let bytes = 0;
for (const p of [...closure].sort()) {
  const from = path.join(root, p);
  if (!existsSync(path.join(from, 'package.json'))) {
    throw new Error(`stage-playground: ${from} is not installed (needed by node-llama-cpp for ${target}): run \`npm ci\``);
  }
  const want = lock[p].version;
  const have = JSON.parse(readFileSync(path.join(from, 'package.json'), 'utf8')).version;
  if (want !== have) throw new Error(`stage-playground: ${from} is ${have} but package-lock.json pins ${want}: run \`npm ci\``);
  cpSync(from, path.join(out, p), {
    recursive: true,
    dereference: true,
    filter: (src) => {
      const rel = path.relative(from, src);
      // A nested node_modules/ is staged as its own lockfile entry (only the packages of the closure).
      if (rel.split(path.sep)[0] === 'node_modules') return false;
      if (SKIP.some((re) => re.test(src))) return false;
      if (statSync(src).isFile()) bytes += statSync(src).size;
      return true;
    },
  });
}
console.log(`stage-playground: ${closure.size} packages (node-llama-cpp ${lock['node_modules/node-llama-cpp'].version}, ${prebuilt.join(', ')}) ` +
  `-> dist/node_modules (${(bytes / 1048576).toFixed(0)} MiB)`);
