#!/usr/bin/env bash
# Installs missing Debian packages, configures and builds in Release (-j2), runs every ctest test.
# Usage: scripts/test.sh            (build directory: build/, or $CONTRASTIVE_BUILD_DIR)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir="${CONTRASTIVE_BUILD_DIR:-build}"

scripts/install-deps.sh

# Reconfigure an existing build directory with its own generator; a new one uses Ninja.
generator=(-G Ninja)
if [ -f "$build_dir/CMakeCache.txt" ]; then
  generator=()
fi
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j2
ctest --test-dir "$build_dir" --output-on-failure -j2
