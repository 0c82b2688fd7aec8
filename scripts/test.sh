#!/usr/bin/env bash
# Runs Ferry's whole test suite: unit, CLI and end-to-end tests (real sockets on loopback, the real
# binaries). Installs the Debian packages the tests use when they are missing and this is a root
# Debian machine (CI is); otherwise says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus) # promtool checks the metrics exposition
command -v iptables >/dev/null 2>&1 || missing+=(iptables)   # transparent-mode tests (network namespaces)
command -v curl >/dev/null 2>&1 || missing+=(curl)           # an unmodified client inside those namespaces

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test tools: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "the tests need these Debian packages: ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
fi

exec cargo test --workspace --locked "$@"
