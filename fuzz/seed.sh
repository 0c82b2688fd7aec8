#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/TARGET/) from the examples and the tables the tests use.
# Existing corpus entries are kept; seeds are named by content, so running this twice adds nothing.
set -euo pipefail
cd "$(dirname "$0")"
root=..

add() { # add TARGET FILE
  local dir="corpus/$1" sum
  mkdir -p "$dir"
  sum=$(sha1sum "$2" | cut -c1-16)
  cp "$2" "$dir/seed-$sum"
}

# Routing tables: the examples, every YAML under seeds/, and the YAML tables written in tests.
for f in "$root"/examples/*.yaml seeds/table_yaml/*; do
  [ -f "$f" ] && add table_yaml "$f"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Inline tables in the Rust tests: lines between r#" and "# that look like a table.
n=0
for f in "$root"/proxy/src/*.rs "$root"/proxy/src/*/*.rs "$root"/proxy/tests/*.rs "$root"/tests/tests/*.rs; do
  awk -v out="$tmp/inline" -v base="$n" '
    /r#"/ { grab = 1; buf = ""; sub(/.*r#"/, ""); }
    grab && /"#/ { sub(/"#.*/, ""); buf = buf $0 "\n"; grab = 0;
                   if (buf ~ /listeners:|clusters:/) { i++; f = out "-" base "-" i; printf "%s", buf > f; close(f) } next }
    grab { buf = buf $0 "\n" }
  ' "$f"
  n=$((n + 1))
done
for f in "$tmp"/inline-*; do
  [ -f "$f" ] && add table_yaml "$f"
done
for f in seeds/table_json/*; do [ -f "$f" ] && add table_json "$f"; done
for f in seeds/table_proto/*; do [ -f "$f" ] && add table_proto "$f"; done
# The agent reads App Mesh resources: its examples and test files, when it has them.
for f in "$root"/examples/mesh/* seeds/agent_resources/* \
  $(find "$root"/config-agent/tests -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) 2>/dev/null); do
  [ -f "$f" ] || continue
  case "$f" in
    *.json) { printf '\001'; cat "$f"; } > "$tmp/agent"; add agent_resources "$tmp/agent" ;;
    *) { printf '\000'; cat "$f"; } > "$tmp/agent"; add agent_resources "$tmp/agent" ;;
  esac
done
# The App Mesh API: a signed request (mode 0), and resource files to delete from (1 JSON, 2 YAML).
printf '\000PUT /v20190125/meshes/m/virtualRouter/r/routes?meshOwner=1\nhost: 127.0.0.1:9080\nx-amz-date: 20150830T123600Z\nauthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/appmesh/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\n\n{"routeName": "x", "spec": {}}' > "$tmp/api"
add api_request "$tmp/api"
for f in "$root"/examples/mesh/resources/* seeds/agent_resources/*; do
  [ -f "$f" ] || continue
  case "$f" in
    *.json) { printf '\001'; cat "$f"; } > "$tmp/api" ;;
    *) { printf '\002'; cat "$f"; } > "$tmp/api" ;;
  esac
  add api_request "$tmp/api"
done
# Client byte streams for the smuggling watch (a leading byte sizes the reads): kept-alive requests
# with sized and chunked bodies, and a Content-Length + Transfer-Encoding request.
printf '\003GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n' > "$tmp/h1"
add http1_framing "$tmp/h1"
printf '\007POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n' > "$tmp/h1"
add http1_framing "$tmp/h1"
printf '\001GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' > "$tmp/h1"
add http1_framing "$tmp/h1"
# Request heads for Ferry's own HTTP/1.1 server: one it takes (with the next request's start
# after it), an HTTP/1.0 HEAD, and one with a body it leaves for hyper.
printf 'GET /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\nGET /' > "$tmp/rq"
add http1_request_head "$tmp/rq"
printf 'HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' > "$tmp/rq"
add http1_request_head "$tmp/rq"
printf 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' > "$tmp/rq"
add http1_request_head "$tmp/rq"
# Upstream response heads (a leading byte sizes the reads; its top bit makes the request HEAD):
# a 100 before the final head, Transfer-Encoding beside Content-Length, and a 204 with a length.
printf '\005HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello' > "$tmp/rs"
add http1_response_head "$tmp/rs"
printf '\203HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n' > "$tmp/rs"
add http1_response_head "$tmp/rs"
printf '\020HTTP/1.0 204 No Content\r\nContent-Length: 7, 7\r\n\r\n' > "$tmp/rs"
add http1_response_head "$tmp/rs"
# Chunked bodies (a leading byte sizes the reads): extensions, trailers, the next response after.
printf '\0055;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nGrpc-Status: 0\r\n\r\nHTTP/1.1' > "$tmp/ch"
add http1_chunked "$tmp/ch"
printf '\001A\r\n0123456789\r\n0\r\n\r\n' > "$tmp/ch"
add http1_chunked "$tmp/ch"
for t in corpus/*; do echo "$(ls "$t" | wc -l) seeds in $t"; done
