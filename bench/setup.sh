#!/usr/bin/env bash
# Installs what `make bench` needs on top of scripts/setup.sh and is missing: PostgreSQL (server,
# initdb, pgbench) and PgBouncer, for bench/point_select.py's reference rows. Kept out of
# scripts/setup.sh so that `make test` does not pull them in; bench/point_select.py runs this
# itself when a program is missing. The packages' own services are not used: the benchmark starts
# its own postgres and pgbouncer in a temporary folder on 127.0.0.1.
# Safe to run again: it only installs what is not installed yet.
set -euo pipefail

APT_PACKAGES=(postgresql pgbouncer)

missing=""
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+="$pkg "
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "the benchmark needs these Debian packages: $missing" >&2
    echo "run as root:  apt-get update && apt-get install -y $missing" >&2
    exit 1
fi
echo "== installing Debian packages for the benchmark: $missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
