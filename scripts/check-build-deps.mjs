#!/usr/bin/env node
// check-build-deps.mjs — the build-package check of `npm install`, as a command (used by .ci/run and the tests).
// Usage: node scripts/check-build-deps.mjs [--dry-run] [extra-package...]
//   Installs the missing packages of scripts/build-deps.mjs (APT_PACKAGES, plus any extra names) with apt-get when
//   root or with passwordless sudo; otherwise prints the exact command and exits 1. --dry-run prints what it would
//   run and installs nothing. HQ_SKIP_BUILD_DEPS=1 skips the check (libraries installed some other way).
import { APT_PACKAGES, check } from './build-deps.mjs';

const args = process.argv.slice(2);
const dryRun = args.includes('--dry-run');
const extra = args.filter((a) => a !== '--dry-run');
try {
  const d = check({ packages: [...APT_PACKAGES, ...extra], dryRun });
  if (d.kind === 'stop') {
    console.error(d.message);
    process.exit(1);
  }
  if (dryRun && d.kind === 'install') {
    console.log(`dry run: ${d.message}`);
    for (const argv of d.commands) console.log(`dry run: would run: ${argv.join(' ')}`);
  }
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
