#!/usr/bin/env bash
# Regenerates proxy/hot-symbols.txt: the functions the release ferry-proxy runs from start through
# serving 200 requests and one metrics scrape, in the order an unordered build places them, which
# proxy/build.rs has the linker lay out first when built with FERRY_SYMBOL_ORDERING=1.
# Run it after dependency or large code changes (a stale list only costs idle resident memory).
# Needs valgrind, h2load, nginx (the upstream) and a release build; ports 18150-18159.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY_SYMBOL_ORDERING=0 cargo build --release -q -p ferry-proxy -p ferry-benches --bin ferry-proxy --bin bench-tables
bin=target/release/ferry-proxy
dir=$(mktemp -d)
trap 'kill "$ng" "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $dir/nginx.pid; error_log stderr warn;
events { worker_connections 64; }
http { access_log off; server { listen 127.0.0.1:18150; location / { return 200 "ok\n"; } } }
CONF
nginx -p "$dir" -c "$dir/nginx.conf" -e stderr & ng=$!
target/release/bench-tables --http 127.0.0.1:18151 --upstream 127.0.0.1:18150 --routes 0 \
  --tcp 127.0.0.1:18152 --tcp-upstream 127.0.0.1:18153 >"$dir/table.yaml"
valgrind -q --tool=callgrind --callgrind-out-file="$dir/cg.out" --demangle=no \
  "$bin" --config "$dir/table.yaml" --concurrency 1 --admin-addr 127.0.0.1:18159 --log-level warn &
pid=$!
for _ in $(seq 600); do curl -fs -o /dev/null http://127.0.0.1:18159/ready && break; sleep 0.1; done
h2load --h1 -n200 -c2 http://127.0.0.1:18151/ >/dev/null
curl -fs -o /dev/null http://127.0.0.1:18159/stats/prometheus
kill -TERM "$pid"; wait "$pid" || true
# Every function callgrind saw, kept if the binary defines it (callgrind also names libc's).
grep -oE '^c?fn=\([0-9]+\) .*' "$dir/cg.out" | sed -E 's/^c?fn=\([0-9]+\) //' | sort -u >"$dir/seen"
nm --defined-only "$bin" | awk '$2 ~ /[tTwW]/ {print $3}' | sort -u >"$dir/defined"
comm -12 "$dir/seen" "$dir/defined" >"$dir/hot"
# Keep the compiler's relative order (address order in the unordered build).
nm --defined-only -n "$bin" | awk '{print $3}' | grep -Fxf "$dir/hot" | awk '!seen[$0]++' >proxy/hot-symbols.txt
echo "proxy/hot-symbols.txt: $(wc -l <proxy/hot-symbols.txt) functions" >&2
