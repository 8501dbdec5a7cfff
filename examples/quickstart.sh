#!/usr/bin/env bash
# Quickstart on a fresh machine: builds the agent and the shipped plugins, then renders the
# Job for an example flow run through the stock plugin and three more, showing what each
# plugin changed. No Prefect server and no cluster needed.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
echo "==> building the agent and the plugins (the first build takes a few minutes)" >&2
cargo build --quiet -p agent
cargo build --quiet --profile plugin --target wasm32-wasip2 -p plugin-naming -p plugin-resources -p plugin-policy
plugins=target/wasm32-wasip2/plugin

echo "==> agent render (Job on stdout, --explain on stderr)" >&2
target/debug/agent render \
  --flow-run examples/flow-runs/etl-nightly.json \
  --api-url http://prefect.example.com/api \
  --plugin "naming=$plugins/plugin_naming.wasm" -c naming.prefix=etl \
  --plugin "resources=$plugins/plugin_resources.wasm" -c resources.cpu.max=250m -c resources.memory.default=1Gi \
  --plugin "policy=$plugins/plugin_policy.wasm" -c policy.allowed-registries=registry.example.com \
  --explain
