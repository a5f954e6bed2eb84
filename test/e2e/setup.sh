#!/usr/bin/env bash
# test/e2e/setup.sh — installs a REAL VS Code (code-server 4.100.3 = VS Code 1.100.3, on this machine's Node 20) and
# playwright-core, from the npm registry only, into a cache folder outside the repository (reused when present):
#   $HQLORA_E2E_CACHE (default ~/.cache/hqlora-e2e). Needs Debian packages chromium, libkrb5-dev, ripgrep
# (installed here when missing and running as root). Writes $CACHE/env.sh, which the other scripts source.
# Recipe: ../shared/e2e/README.md (node20 variant: ripgrep seeded into @vscode/ripgrep's download cache).
set -euo pipefail
CACHE=${HQLORA_E2E_CACHE:-$HOME/.cache/hqlora-e2e}
CS_VERSION=4.100.3
PW_VERSION=1.65.1
mkdir -p "$CACHE"
t() { echo "[e2e setup $(date +%T)] $*"; }

missing=""; for p in chromium libkrb5-dev ripgrep; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  t "apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# @vscode/ripgrep downloads rg from GitHub in its postinstall; seed its cache (keyed on os.tmpdir()) with Debian's rg.
RG_CACHE=$CACHE/rgcache/vscode-ripgrep-cache-1.15.11
mkdir -p "$RG_CACHE"
if [ ! -f "$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" ]; then
  tmp=$(mktemp -d); cp /usr/bin/rg "$tmp/rg"
  tar czf "$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$tmp" rg; rm -rf "$tmp"
fi

CS_DIR=$CACHE/code-server-$CS_VERSION
if [ ! -x "$CS_DIR/node_modules/.bin/code-server" ] || [ ! -d "$CS_DIR/node_modules/code-server/lib/vscode/node_modules" ]; then
  t "npm install code-server@$CS_VERSION (node $(node -v)); builds native modules, takes minutes"
  rm -rf "$CS_DIR"; mkdir -p "$CS_DIR"
  echo '{ "name": "code-server-install", "private": true, "allowScripts": { "code-server": true, "argon2": true } }' > "$CS_DIR/package.json"
  # npm_config_yes: node-pty's postinstall runs `npx node-gyp`; unsafe_perm: 4.100.3's postinstall refuses root without it.
  (cd "$CS_DIR" && TMPDIR=$CACHE/rgcache npm_config_yes=true npm_config_unsafe_perm=true \
     npm install --no-audit --no-fund --foreground-scripts "code-server@$CS_VERSION" > install.log 2>&1) \
     || { tail -50 "$CS_DIR/install.log"; exit 1; }
fi

PW_DIR=$CACHE/playwright-$PW_VERSION
if [ ! -d "$PW_DIR/node_modules/playwright-core" ]; then
  t "npm install playwright-core@$PW_VERSION (no browser download: Debian's /usr/bin/chromium is used)"
  mkdir -p "$PW_DIR"; echo '{ "name": "pw", "private": true }' > "$PW_DIR/package.json"
  (cd "$PW_DIR" && npm install --no-audit --no-fund --loglevel=error "playwright-core@$PW_VERSION")
fi

cat > "$CACHE/env.sh" <<ENV
export CS_VERSION=$CS_VERSION
export CS_BIN=$CS_DIR/node_modules/.bin/code-server
export PLAYWRIGHT_CORE=$PW_DIR/node_modules/playwright-core/index.mjs
ENV
t "ready: code-server $CS_VERSION, playwright-core $PW_VERSION in $CACHE"
