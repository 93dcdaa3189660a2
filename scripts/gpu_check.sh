#!/usr/bin/env bash
# The GPU check of the CUDA path, in one call: build (or use prebuilt binaries), run the CUDA
# tests (parity with the CPU path for every dtype, poisoned outputs, sampler draws equal to the
# CPU's), then print the timing table last.
#
#   scripts/gpu_check.sh                 # configure and build in build-gpu/ (needs the Debian
#                                        # packages of scripts/install-deps.sh and nvcc)
#   CONTRASTIVE_GPU_BIN=dir scripts/gpu_check.sh   # use prebuilt contrastive_cuda_tests and
#                                        # contrastive_cuda_table from dir (scripts/gpu_prebuild.sh)
# Options through the environment: TABLE_ARGS (passed to contrastive_cuda_table), TEST_TIMEOUT
# and TABLE_TIMEOUT in seconds. The default CLIP table took about 4 minutes on an H200; the table
# of the other losses at N = 32768 (--losses, --loss-n) comes on top, so a short device lease wants
# TABLE_ARGS="--n 4096,32768 --reps 3". Logs go to $OUT (or build-gpu/) when set.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${OUT:-build-gpu}
mkdir -p "$LOG_DIR"
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

BIN=${CONTRASTIVE_GPU_BIN:-}
if [ -z "$BIN" ]; then
  stamp "building build-gpu/"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCONTRASTIVE_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 >"$LOG_DIR/configure.log" 2>&1 || { cat "$LOG_DIR/configure.log"; exit 1; }
  cmake --build build-gpu -j"$(nproc)" --target contrastive_cuda_tests contrastive_cuda_table \
    >"$LOG_DIR/build.log" 2>&1 || { tail -50 "$LOG_DIR/build.log"; exit 1; }
  BIN=build-gpu
  TESTS=build-gpu/tests/cuda/contrastive_cuda_tests
  TABLE=build-gpu/benchmarks/contrastive_cuda_table
else
  TESTS=$BIN/contrastive_cuda_tests
  TABLE=$BIN/contrastive_cuda_table
  # Prebuilt binaries carry libgomp beside them; cuBLAS comes from the machine's toolkit.
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           $(dirname "$(find / -name 'libcublas.so.13*' -not -path '/proc/*' 2>/dev/null | head -1)" 2>/dev/null); do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$BIN:$d:${LD_LIBRARY_PATH:-}"
  done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true

stamp "CUDA tests"
timeout "${TEST_TIMEOUT:-180}" "$TESTS" --durations yes 2>&1 | tee "$LOG_DIR/cuda_tests.log" | \
  grep -v "^[0-9.]* s: " | tail -60
test_rc=${PIPESTATUS[0]}
grep "^[0-9.]* s: " "$LOG_DIR/cuda_tests.log" | sort -rn | head -8
stamp "CUDA tests exit code $test_rc"

stamp "timing table (progress on stderr)"
# shellcheck disable=SC2086
timeout "${TABLE_TIMEOUT:-300}" "$TABLE" ${TABLE_ARGS:-} >"$LOG_DIR/table.md" 2>"$LOG_DIR/table_progress.log"
table_rc=$?
tail -30 "$LOG_DIR/table_progress.log"
stamp "table exit code $table_rc"
echo
echo "CUDA tests exit code: $test_rc"
cat "$LOG_DIR/table.md"
[ "$test_rc" -eq 0 ] && [ "$table_rc" -eq 0 ]
