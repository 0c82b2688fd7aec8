#!/usr/bin/env bash
# Runs Ferry's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) one after another.
#
#   scripts/fuzz.sh                 every target for 5 minutes (FUZZ_SECONDS to change)
#   scripts/fuzz.sh --quick         every target for 30 s (CI)
#   scripts/fuzz.sh [--quick] T...  only targets T...
#
# Needs cargo-fuzz (installed here when missing: `cargo install cargo-fuzz`). Nightly is not
# needed: RUSTC_BOOTSTRAP=1 lets stable rustc take the sanitizer flags. Corpora grow in
# fuzz/corpus/TARGET (seeded from the examples and test tables by fuzz/seed.sh); crashes are
# written to fuzz/artifacts/TARGET and make this script fail. Reproduce one with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-300}
if [ "${1:-}" = --quick ]; then
  seconds=${FUZZ_SECONDS:-30}
  shift
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked --quiet
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

fuzz/seed.sh >/dev/null
echo "== building the fuzz targets"
(cd fuzz && cargo fuzz build -O)

failed=()
for t in "${targets[@]}"; do
  echo "== $t: ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  extra=()
  # The chunked decoder's bounds (16 KiB of extensions, of trailers) lie past libFuzzer's default
  # input length of 4 KiB.
  if [ "$t" = http1_chunked ]; then extra+=(-max_len=40000); fi
  # -rss_limit_mb: the proxy must not grow without bound on any input; -timeout: nor hang.
  if (cd fuzz && cargo fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${extra[@]}" 2>"../target/fuzz-$t.log"); then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "target/fuzz-$t.log" | sed "s/^/   /"
  else
    failed+=("$t")
    tail -n 40 "target/fuzz-$t.log"
  fi
done
if ((${#failed[@]})); then
  echo "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
