#!/usr/bin/env bash
# test/e2e/run.sh — `npm run test:e2e`: installs the real-VS-Code harness if needed (setup.sh, cached in
# ~/.cache/hqlora-e2e), builds, then runs the extension-host suite and the UI tests in code-server + Chromium.
# Artifacts (screenshots, code-server logs, workspaces) go to test-results/e2e/.
# usage: bash test/e2e/run.sh [ext] [ui] [dashboard] [sweep] [chat]   (default: all five; e.g. `npm run test:e2e -- dashboard`)
#   ext        test/e2e/run-ext-tests.mjs (mocha suite test/e2e/suite/; HQLORA_E2E_GREP=<pattern> picks tests)
#   ui         test/e2e/ui-test.mjs (palette, status bar, reload mid-run, stop/resume, language server)
#   dashboard  test/e2e/dashboard-test.mjs (one selected run everywhere, overlay, reload, merge/export buttons)
#   sweep      test/e2e/sweep-test.mjs (the sweep results panel following a sweep started from the palette: live cells,
#              curves, matrix with Δ and significance marks, save/copy, sorting, reload)
#   chat       test/e2e/chat-test.mjs (Chat with Adapter on the demo run: base, level-subset and tuned panes stream a
#              greedy answer; the tuned one equals `hqlora generate`'s)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECONDS=0
parts=("$@"); [ ${#parts[@]} -gt 0 ] || parts=(ext ui dashboard sweep chat)
for p in "${parts[@]}"; do
  case $p in ext|ui|dashboard|sweep|chat) ;; *) echo "test/e2e/run.sh: unknown part '$p' (ext, ui, dashboard, sweep, chat)" >&2; exit 2 ;; esac
done
bash test/e2e/setup.sh
npm run build --silent
[ -x native/build/bin/hqlora-train ] || npm run build:native --silent
for p in "${parts[@]}"; do
  case $p in
    ext) echo "e2e: extension-host suite"; node test/e2e/run-ext-tests.mjs ;;
    ui) echo "e2e: UI test"; node test/e2e/ui-test.mjs ;;
    dashboard) echo "e2e: dashboard test"; node test/e2e/dashboard-test.mjs ;;
    sweep) echo "e2e: sweep results test"; node test/e2e/sweep-test.mjs ;;
    chat) echo "e2e: chat playground test"; node test/e2e/chat-test.mjs ;;
  esac
done
echo "e2e: ${parts[*]} passed in ${SECONDS}s (screenshots in test-results/e2e/)"
