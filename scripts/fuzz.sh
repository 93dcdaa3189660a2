#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer (build directory build-fuzz/, or $CONTRASTIVE_FUZZ_BUILD_DIR) and runs
# each for a fixed time (as many at once as there are cores), starting from its seed corpus in
# tests/fuzz/corpus/<harness>/ (read only: new inputs go to a scratch copy). Prints one table row
# per harness; a crash or contract violation stops that harness, fails the script and leaves the
# reproducer in the scratch directory.
# Usage: scripts/fuzz.sh [--seconds S] [--only NAME] [--keep-corpus DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=30
only=""
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --keep-corpus) keep="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
build_dir="${CONTRASTIVE_FUZZ_BUILD_DIR:-build-fuzz}"
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCONTRASTIVE_BUILD_FUZZERS=ON -DCONTRASTIVE_BUILD_TESTS=OFF -DCONTRASTIVE_BUILD_EXAMPLES=OFF \
    -DCONTRASTIVE_BUILD_BENCHMARKS=OFF -DCONTRASTIVE_INSTALL=OFF -DCONTRASTIVE_WITH_OPENMP=OFF
fi
cmake --build "$build_dir" -j2

scratch="$(mktemp -d "${TMPDIR:-/tmp}/contrastive-fuzz.XXXXXX")"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
# One harness: runs it from a scratch copy of its seed corpus and writes its table row to
# $scratch/<harness>/row (and its exit status to .../rc).
run_one() {
  local name="$1" dir="$scratch/$1"
  local corpus="$dir/corpus" log="$dir/log.txt" rc
  local seed="tests/fuzz/corpus/${name#fuzz_}"
  mkdir -p "$corpus"
  [ -d "$seed" ] && cp "$seed"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz.sh: $name for ${seconds} s ..."
  set +e
  (cd "$dir" && "$bin/tests/fuzz/$name" -max_total_time="$seconds" \
     -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 corpus) >"$log" 2>&1
  rc=$?
  set -e
  local execs cov ft units result="ok"
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)"
  units="$(ls "$corpus" | wc -l)"
  [ "$rc" -ne 0 ] && result="FAILED (exit $rc; reproducer and log in $dir)"
  if [ -n "$keep" ]; then mkdir -p "$keep/${name#fuzz_}" && cp "$corpus"/* "$keep/${name#fuzz_}/" 2>/dev/null || true; fi
  echo "| ${name#fuzz_} | $seconds | $execs | $cov | $ft | $units | $result |" >"$dir/row"
  echo "$rc" >"$dir/rc"
}

# As many harnesses at a time as there are cores (each libFuzzer run is single-threaded).
case "$build_dir" in /*) bin="$build_dir" ;; *) bin="$PWD/$build_dir" ;; esac
jobs="$(nproc 2>/dev/null || echo 1)"
names=()
for src in tests/fuzz/fuzz_*.cpp; do
  name="$(basename "$src" .cpp)"
  [ -n "$only" ] && [ "$name" != "$only" ] && [ "$name" != "fuzz_$only" ] && continue
  names+=("$name")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$name" &
done
wait

status=0
echo
echo "| harness | seconds | executions | coverage (edges) | features | corpus | result |"
echo "|---|---:|---:|---:|---:|---:|---|"
failed=()
for name in "${names[@]}"; do
  cat "$scratch/$name/row"
  if [ "$(cat "$scratch/$name/rc")" -ne 0 ]; then failed+=("$name"); fi
done
for name in "${failed[@]}"; do  # after the table, so that it stays one block
  status=1
  echo "fuzz.sh: $name:" >&2
  grep -E "contract violated|runtime error|ERROR: AddressSanitizer|unexpected exception|SUMMARY" \
    "$scratch/$name/log.txt" | head -5 >&2 || true
done
[ "$status" -eq 0 ] && rm -rf "$scratch"
exit "$status"
