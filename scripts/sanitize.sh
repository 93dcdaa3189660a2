#!/usr/bin/env bash
# Builds the unit, encoder and distributed tests and the example programs with AddressSanitizer
# and UndefinedBehaviorSanitizer (clang, -O1, any report is fatal) in build-asan/ (or
# $CONTRASTIVE_ASAN_BUILD_DIR) and runs their ctest tests. The CUDA, PyTorch and benchmark targets
# are left out (not instrumentable here, or measuring nothing under a sanitizer), and so is
# example/gamma_synthetic_smoke (a 5000-step timing run; the unit tests cover its losses).
# Usage: scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
build_dir="${CONTRASTIVE_ASAN_BUILD_DIR:-build-asan}"
# clang compiles these template-heavy tests in about 60% of gcc's time (the Release build is gcc's);
# -g1 (line tables) keeps file:line in the reports at a fraction of -g's cost.
flags="-O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
generator=(-G Ninja -DCMAKE_CXX_COMPILER=clang++)
[ -f "$build_dir/CMakeCache.txt" ] && generator=()
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCONTRASTIVE_BUILD_BENCHMARKS=OFF -DCONTRASTIVE_WITH_CUDA=OFF -DCONTRASTIVE_WITH_TORCH=OFF \
  -DCONTRASTIVE_NATIVE_ARCH=OFF -DCONTRASTIVE_INSTALL=OFF
targets=(contrastive_tests encoder_tests custom_tensor gradcheck_layer quickstart streaming_scale)
for t in quickstart_xtensor train_simclr train_two_tower gamma_study contrastive_distributed_tests \
  distributed_clip; do
  if cmake --build "$build_dir" --target help | grep -q "^$t:"; then targets+=("$t"); fi
done
cmake --build "$build_dir" -j2 --target "${targets[@]}"

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Open MPI keeps some allocations until exit, which LeakSanitizer would report as leaks.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  ctest --test-dir "$build_dir" --output-on-failure -j2 \
        -R '^(unit|encoder|example)/' -E '^example/(gamma_synthetic_smoke|distributed_clip)$'
if [ -x "$build_dir/tests/distributed/contrastive_distributed_tests" ]; then
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    ctest --test-dir "$build_dir" --output-on-failure -j1 -R '^(distributed/|example/distributed_clip$)'
fi
echo "sanitize.sh: every test passed under AddressSanitizer and UndefinedBehaviorSanitizer"
