#!/usr/bin/env bash
# Builds the plugin: build.sh [OUT.wasm] (default: gpu_placement.wasm here). The tools come
# from plugins/sdk-js (`npm ci` there; tests/setup-js.sh does it): rolldown bundles the plugin
# with the SDK helper into one module (componentize-js reads only its source's folder), and
# componentize-js makes the component; `--disable http fetch-event` leaves out the HTTP imports
# the sandbox would refuse.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/plugins/sdk-js/node_modules/.bin
out=${1:-$here/gpu_placement.wasm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The WIT's TypeScript types (jco), then a type check of the plugin against them.
(cd "$root" && "$bin/jco" guest-types wit --world-name plugin -o plugins/sdk-js/types -q)
"$bin/tsc" --noEmit --allowJs --checkJs --strict --target es2022 --module es2022 \
  --moduleResolution bundler "$here/plugin.js"
"$bin/rolldown" "$here/plugin.js" --format esm --platform neutral --external 'agent:plugin/log@0.1.1' \
  --file "$work/plugin.js" --log-level warn
"$bin/componentize-js" "$work/plugin.js" --wit "$root/wit" --world-name plugin \
  --disable http fetch-event -o "$out"
