#!/usr/bin/env bash
# Installs what `make test`, `make demo` and `make bench` need and is missing:
# Debian packages (MariaDB server and client, sysbench, headers to build mysqlclient, gcc to
# build it and the Connector/C test client in tests/integration/c_client)
# a .venv holding the project with its pinned dependencies, the Cython-compiled hot path
# (scripts/build_compiled.py), and node mysql2 for one test.
# Safe to run again: it only does what is not done yet.
set -euo pipefail
cd "$(dirname "$0")/.."

# libpam0g-dev (and gcc) build the PAM module of the no-proxy cluster's token login (stack/pam_module.py).
APT_PACKAGES=(mariadb-server mariadb-client sysbench libmariadb-dev pkg-config gcc chromium libpam0g-dev)

missing_apt_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

install_apt_packages() {
    local missing
    missing=$(missing_apt_packages | tr '\n' ' ')
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "tenantproxy needs these Debian packages: $missing" >&2
        echo "run as root:  apt-get update && apt-get install -y $missing" >&2
        exit 1
    fi
    echo "== installing Debian packages: $missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}

install_venv() {
    local stamp=.venv/.installed-from
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "== building .venv with the pinned dependencies"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    echo "$want" > "$stamp"
}

install_node_client() {
    # node mysql2 for tests/integration/test_node_mysql2.py, from its package-lock.json.
    local dir=tests/integration/node_client
    local stamp=$dir/node_modules/.installed-from
    local want
    if ! command -v npm >/dev/null; then
        [ "$(id -u)" = 0 ] || { echo "tenantproxy's tests need node and npm" >&2; exit 1; }
        echo "== installing Debian packages: nodejs npm"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "== installing node mysql2 for the tests"
    npm ci --prefix "$dir" --no-audit --no-fund --silent
    echo "$want" > "$stamp"
}

build_compiled() {
    # The Cython twins of the response tracker and the packet splitter (wire/mysql/_compiled.py);
    # cythonize rebuilds only what changed. The .py modules stay the reference and the fallback.
    .venv/bin/python scripts/build_compiled.py >/dev/null
}

install_apt_packages
install_venv
build_compiled
install_node_client
