#!/usr/bin/env bash
# Creates the project's Python venv (.venv) with what the tests need: Prefect (the oracle for
# the stock plugin, and later the real server the end-to-end tests drive), prefect-kubernetes
# and kubernetes-validate (an independent validator of the Jobs we produce). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=tests/requirements.txt
stamp=.venv/.requirements
if [ -x .venv/bin/python ] && cmp -s "$requirements" "$stamp" 2>/dev/null; then
  exit 0
fi
echo "setting up .venv from $requirements (about a minute the first time)" >&2
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
