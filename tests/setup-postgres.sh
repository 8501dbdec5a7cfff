#!/usr/bin/env bash
# Installs PostgreSQL's server binaries from Debian's packages when missing, for a Prefect
# server on PostgreSQL (tests/src/postgres.rs starts a throw-away cluster of its own; the
# package's own cluster is not used). apt-get needs root (CI runs as root).
set -euo pipefail
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0
echo "installing postgresql (Debian package, for Prefect on PostgreSQL)" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root, or install it yourself: apt-get install postgresql" >&2
  exit 1
fi
apt-get update -qq
# The package's own cluster is not wanted: only the binaries.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main-cluster.conf
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
