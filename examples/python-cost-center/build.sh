#!/usr/bin/env bash
# Builds the plugin: build.sh [OUT.wasm] (default: cost_center.wasm here). componentize-py is
# in the project's venv (tests/requirements.txt); the helper module is plugins/sdk-python.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/cost_center.wasm}
componentize_py=${COMPONENTIZE_PY:-$root/.venv/bin/componentize-py}
"$componentize_py" -d "$root/wit" -w plugin componentize app \
  -p "$here" -p "$root/plugins/sdk-python" -o "$out"
