#!/usr/bin/env bash
# Measures the proxy's resident memory with many idle (slow) client connections:
#
#   scripts/idle_rss.sh [CONNECTIONS]     (default 10000)
#
# Starts the release proxy on a one-listener table, opens CONNECTIONS connections that each send
# half a request head (a slowloris client) and then wait, and prints VmRSS before, with the
# connections held, and after they close. The header read timeout is raised for the measurement
# so that the connections stay; with the default (10 s) the proxy would cut them. Needs python3.
# FERRY_PROXY_BIN=PATH measures that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
ulimit -n $((n + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < n + 100)); then
  echo "the fd limit ($(ulimit -n)) is below $n connections; run as root or raise the hard limit" >&2
  exit 1
fi
bin=${FERRY_PROXY_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p ferry-proxy
  bin=target/release/ferry-proxy
fi
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/table.yaml" <<YAML
listeners:
  - name: web
    address: 127.0.0.1:0
    timeouts: { idle: 600s }
    limits: { headerReadTimeout: 600s }
    virtualHosts:
      - name: all
        domains: ["*"]
        routes:
          - name: r
            match: { prefix: / }
            action: { weightedTargets: [{ cluster: c, weight: 1 }] }
clusters:
  - name: c
    staticEndpoints: { endpoints: [{ address: 127.0.0.1:1 }] }
YAML
"$bin" --config "$dir/table.yaml" --admin-addr 127.0.0.1:0 \
  --admin-address-path "$dir/admin" --log-level warn --concurrency "${FERRY_CONCURRENCY:-2}" &
pid=$!
for _ in $(seq 100); do [ -s "$dir/admin" ] && break; sleep 0.1; done
admin=$(cat "$dir/admin")
python3 - "$admin" "$pid" "$n" <<'PY'
import json, socket, sys, time, urllib.request
admin, pid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def get(path):
    return urllib.request.urlopen(f"http://{admin}{path}").read().decode()
for _ in range(100):
    try:
        listeners = json.loads(get("/listeners")); break
    except Exception:
        time.sleep(0.1)
host, port = listeners[0]["address"].rsplit(":", 1)
before = rss()
socks = []
t0 = time.time()
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # half a head: the proxy waits for the rest
    socks.append(s)
opened = time.time() - t0
time.sleep(2)
held = rss()
active = [l for l in get("/stats/prometheus").splitlines()
          if l.startswith('ferry_downstream_connections_active{listener="web"}')]
for s in socks:
    s.close()
time.sleep(2)
after = rss()
print(f"connections: {n} (opened in {opened:.1f}s); {active[0] if active else ''}")
print(f"RSS before: {before:.1f} MiB; with {n} idle connections: {held:.1f} MiB "
      f"({(held - before) * 1024 / n:.2f} KiB per connection); after they closed: {after:.1f} MiB")
PY
