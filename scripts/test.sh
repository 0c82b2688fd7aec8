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

# boto3 and the AWS CLI, the real clients of the App Mesh API tests (tests/tests/appmesh_api.rs),
# come from PyPI into a virtualenv; making one needs Python's venv module.
venv=${FERRY_PYVENV:-$PWD/target/pyvenv}
need_venv=
if [ ! -x "$venv/bin/aws" ] || ! "$venv/bin/python" -c 'import boto3' >/dev/null 2>&1; then
  need_venv=1
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)
fi

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

if [ -n "$need_venv" ]; then
  echo "installing boto3 and awscli from PyPI into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check boto3 awscli
fi
export FERRY_PYVENV="$venv"

exec cargo test --workspace --locked "$@"
