#!/usr/bin/env bash
# Installs the C plugin toolchain from Debian's packages when missing: clang and lld for
# wasm32, wasi-libc, and compiler-rt's wasm32 builtins. apt-get needs root (CI runs as root).
set -euo pipefail
packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]} (Debian packages, for C plugins)" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root, or install them yourself: apt-get install ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
