#!/usr/bin/env bash
# Runs the color mesh of this directory on one machine:
#   - demo apps for color-blue (127.0.0.2:8080), color-green (127.0.0.3:8080) and front (127.0.0.1:9080);
#   - ferry-agent serving a copy of the resources (gRPC 127.0.0.1:15010, admin 127.0.0.1:15011, and the
#     App Mesh API on 127.0.0.1:15080, open for writes: front's app holds its default port 9080);
#   - the front node's ferry-proxy following it (ingress :15000, egress 127.0.0.1:15001, admin :9901).
# Then it shows the weighted split, the header route, an edit of the router reaching the proxy, and
# the agent's view of its proxies. It keeps everything running until Ctrl-C (or exits at once with
# FERRY_EXAMPLE_EXIT=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p ferry-agent -p ferry-proxy
bin=target/release
work=$(mktemp -d)
mkdir "$work/resources"
cp examples/mesh/resources/* "$work/resources/"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

"$bin/ferry-proxy" demo --config examples/mesh/apps.yaml --requests 0 --admin-addr 127.0.0.1:9902 >"$work/apps.log" 2>&1 &
"$bin/ferry-agent" serve --resources "$work/resources" --grpc-addr 127.0.0.1:15010 --admin-addr 127.0.0.1:15011 \
  --api-addr 127.0.0.1:15080 --allow-unauthenticated 2>"$work/agent.log" &
"$bin/ferry-proxy" --agent http://127.0.0.1:15010 --node color-mesh/virtualNode/front \
  --state-dir "$work/state" --admin-addr 127.0.0.1:9901 >/dev/null 2>"$work/proxy.log" &

for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9901/ready >/dev/null && curl -sf http://127.0.0.1:18080/ >/dev/null && break
  sleep 0.1
done
curl -sf http://127.0.0.1:9901/ready >/dev/null || { cat "$work/agent.log" "$work/proxy.log"; exit 1; }

egress=http://127.0.0.1:15001/
echo "== 20 requests from front to color.mesh.local:8080 (route color-split: blue 90, green 10)"
for _ in $(seq 20); do curl -s -H 'Host: color.mesh.local:8080' "$egress"; done | sort | uniq -c
echo "== with x-color: green (route color-header)"
curl -s -H 'Host: color.mesh.local:8080' -H 'x-color: green' "$egress"
echo "== into front's app through its ingress listener"
curl -s http://127.0.0.1:15000/

echo "== editing the router: blue 10, green 90"
sed -e 's/"color-blue", "weight": 90/"color-blue", "weight": 10/' \
    -e 's/"color-green", "weight": 10/"color-green", "weight": 90/' \
    "$work/resources/router.json" >"$work/router.json.new"
mv "$work/router.json.new" "$work/resources/router.json"
sleep 0.5
for _ in $(seq 20); do curl -s -H 'Host: color.mesh.local:8080' "$egress"; done | sort | uniq -c
echo "== the agent's /proxies"
curl -s http://127.0.0.1:15011/proxies

[ "${FERRY_EXAMPLE_EXIT:-}" = 1 ] && exit 0
cat <<EOT

The mesh keeps running (resources in $work/resources; Ctrl-C stops it). Try:
  curl -H 'Host: color.mesh.local:8080' http://127.0.0.1:15001/
  target/release/ferry-agent explain --resources examples/mesh/resources --node color-mesh/virtualNode/front \\
      --request 'GET http://color.mesh.local:8080/' -H 'x-color: green'
  curl http://127.0.0.1:15011/proxies     # the agent's view
  curl http://127.0.0.1:9901/config_dump  # the proxy's table
EOT
wait
