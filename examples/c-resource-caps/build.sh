#!/usr/bin/env bash
# Builds the plugin: build.sh [OUT.wasm] (default: resource_caps.wasm here). Needs Debian's
# clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (tests/setup-c.sh installs them) and the
# workspace's agent-plugin-c (C bindings of wit/, and the core module made a component).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sdk=$root/plugins/sdk-c/c
out=${1:-$here/resource_caps.wasm}
target_dir=${AGENT_PLUGIN_C_TARGET_DIR:-$root/target/plugins}
cargo build --quiet --manifest-path "$root/Cargo.toml" -p agent-plugin-c --target-dir "$target_dir"
tool=$target_dir/debug/agent-plugin-c
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$tool" bindings "$root/wit" "$work"
cc() { clang --target=wasm32-wasi -O2 -I "$work" -I "$sdk" -I "$sdk/vendor/cjson" "$@"; }
cc -c -Wall -Wextra -Werror "$here/resource_caps.c" -o "$work/resource_caps.o"
cc -c -Wall -Wextra -Werror "$sdk/agent_plugin.c" -o "$work/agent_plugin.o"
cc -c "$sdk/vendor/cjson/cJSON.c" -o "$work/cJSON.o"
cc -c "$work/plugin.c" -o "$work/plugin.o"
cc -mexec-model=reactor "$work"/{resource_caps,agent_plugin,cJSON,plugin}.o "$work/plugin_component_type.o" -o "$work/core.wasm"
"$tool" componentize "$work/core.wasm" "$out"
