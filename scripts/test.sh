#!/usr/bin/env bash
# Installs missing Debian packages, configures and builds in Release (-j2), runs every ctest test,
# then the hardening runs: the unit, encoder, distributed and example tests under AddressSanitizer
# and UndefinedBehaviorSanitizer (scripts/sanitize.sh) and each libFuzzer harness for 30 s
# (scripts/fuzz.sh). This is what CI runs (.ci/run).
# Usage: scripts/test.sh [--fast]   (--fast: the Release ctest run only)
#        build directory: build/, or $CONTRASTIVE_BUILD_DIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir="${CONTRASTIVE_BUILD_DIR:-build}"
fast=0
case "${1:-}" in
  --fast) fast=1 ;;
  "") ;;
  *) echo "test.sh: unknown argument '$1' (usage: scripts/test.sh [--fast])" >&2; exit 2 ;;
esac

scripts/install-deps.sh

# Reconfigure an existing build directory with its own generator; a new one uses Ninja.
generator=(-G Ninja)
if [ -f "$build_dir/CMakeCache.txt" ]; then
  generator=()
fi
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j2
ctest --test-dir "$build_dir" --output-on-failure -j2
[ "$fast" -eq 1 ] && exit 0

scripts/sanitize.sh
scripts/fuzz.sh --seconds 30
