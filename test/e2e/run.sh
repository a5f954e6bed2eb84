#!/usr/bin/env bash
# test/e2e/run.sh — `npm run test:e2e`: installs the real-VS-Code harness if needed (setup.sh, cached in
# ~/.cache/hqlora-e2e), builds, then runs the extension-host suite and the UI test in code-server + Chromium.
# Artifacts (screenshots, code-server logs, workspaces) go to test-results/e2e/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECONDS=0
bash test/e2e/setup.sh
npm run build --silent
[ -x native/build/bin/hqlora-train ] || npm run build:native --silent
echo "e2e: extension-host suite"; node test/e2e/run-ext-tests.mjs
echo "e2e: UI test"; node test/e2e/ui-test.mjs
echo "e2e: all passed in ${SECONDS}s (screenshots in test-results/e2e/)"
