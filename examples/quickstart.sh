#!/usr/bin/env bash
# Quickstart on a fresh machine, with no cluster and no Prefect account: starts a local Prefect 3
# server and the Kubernetes API emulator, creates a work pool, a deployment and three flow runs,
# then runs `agent start` once with the naming plugin and, last in the chain, the Pod Security
# Standards plugin setting the restricted defaults: each run becomes a Kubernetes Job. Shows
# the Jobs and the runs' states. Everything it starts stops when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "toolchain and Python venv (Prefect)"
rustup target add wasm32-wasip2
tests/setup-python.sh

step "building the agent, the emulator and the plugins (the first build takes a few minutes)"
cargo build --quiet -p agent -p kube-emulator
cargo build --quiet --profile plugin --target wasm32-wasip2 -p plugin-naming -p plugin-pod-security
plugins=target/wasm32-wasip2/plugin

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PREFECT_API_URL="http://127.0.0.1:$port/api"
export KUBECONFIG="$work/kubeconfig"

step "starting a Prefect server at $PREFECT_API_URL and the Kubernetes API emulator"
.venv/bin/python tests/prefect/serve.py "$port" "$work" 2>"$work/prefect.log" &
target/debug/kube-emulator --kubeconfig "$KUBECONFIG" >/dev/null 2>"$work/emulator.log" &
for _ in $(seq 1 240); do
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('$PREFECT_API_URL/health')" 2>/dev/null && break
  sleep 0.5
done

step "a work pool, a deployment and three flow runs"
.venv/bin/python examples/quickstart_setup.py "$PREFECT_API_URL" quickstart

step "agent start --run-once (naming prefixes every Job name with 'etl'; pod-security, last, makes each pod restricted)"
target/debug/agent start --pool quickstart --run-once \
  --plugin "naming=$plugins/plugin_naming.wasm" -c naming.prefix=etl \
  --plugin "pod-security=$plugins/plugin_pod_security.wasm" \
  -c pod-security.mode=enforce-defaults -c pod-security.run-as-user=1000

step "the Jobs in the (emulated) cluster"
if command -v kubectl >/dev/null; then
  kubectl get jobs -L prefect-agent/flow-run-id
else
  echo "(install kubectl to list them: KUBECONFIG=$KUBECONFIG kubectl get jobs)"
fi

step "the flow runs in Prefect"
.venv/bin/python - <<PY
import json, urllib.request
request = urllib.request.Request("$PREFECT_API_URL/flow_runs/filter", data=b"{}", method="POST", headers={"Content-Type": "application/json"})
for run in json.load(urllib.request.urlopen(request)):
    print(f"{run['name']:<24} {run['state_type']:<10} infrastructure_pid={run['infrastructure_pid']}")
PY
