#!/usr/bin/env bash
# Installs the JavaScript plugin toolchain (componentize-js, jco, rolldown, TypeScript) into
# plugins/sdk-js/node_modules, exactly as its package-lock.json says. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../plugins/sdk-js"
stamp=node_modules/.installed-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
echo "installing plugins/sdk-js/node_modules from package-lock.json (about 30 s the first time)" >&2
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
