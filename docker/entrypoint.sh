#!/bin/sh
# ferry-proxy's container entrypoint.
#   (no arguments, or flags)  run the proxy; App Mesh's environment configures it
#                             (APPMESH_RESOURCE_ARN, FERRY_AGENT_URL, ENVOY_LOG_LEVEL, ...)
#   init-iptables [FLAGS]     write the interception rules (a Kubernetes init container, as root)
#   wait-ready [SECONDS]      wait until the proxy has its table (default 180 s), for a
#                             Kubernetes postStart hook that holds the app until then, as App
#                             Mesh's `agent -envoyReadiness` does
#   any other command         run it (a shell for debugging, say)
set -eu
bin=${FERRY_PROXY_BIN:-/usr/bin/ferry-proxy}

case "${1:-}" in
  wait-ready)
    limit=${2:-180}
    # The admin address the proxy itself uses: FERRY_ADMIN_ADDR, else App Mesh's port.
    admin=${FERRY_ADMIN_ADDR:-127.0.0.1:${ENVOY_ADMIN_ACCESS_PORT:-9901}}
    admin=$(printf '%s' "$admin" | sed -e 's/^0\.0\.0\.0:/127.0.0.1:/' -e 's/^\[::\]:/[::1]:/')
    waited=0
    while [ "$waited" -lt "$limit" ]; do
      if curl -s --max-time 2 "http://$admin/server_info" | grep state | grep -q LIVE; then
        exit 0
      fi
      sleep 1
      waited=$((waited + 1))
    done
    echo "ferry-entrypoint: the proxy at $admin is not LIVE after ${limit}s" >&2
    exit 1
    ;;
  init-iptables)
    shift
    exec "$bin" init-iptables "$@"
    ;;
  "" | -*)
    exec "$bin" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
