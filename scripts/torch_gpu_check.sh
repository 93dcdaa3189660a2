#!/usr/bin/env bash
# The GPU check of the PyTorch extension, in one call: build contrastive_torch against this
# machine's own torch with torch.utils.cpp_extension (CUDA kernels required), run the whole pytest
# suite (CUDA parity, torch.library.opcheck and torch.compile where torch >= 2.4), then print one
# table: contrastive_torch.clip_loss against PyTorch's CLIP loss, eager and torch.compile,
# forward + backward at N = 4096 and 32768, D = 512, bf16 and fp32 (ms and extra peak memory).
#
#   CONTRASTIVE_TORCH_ANCHOR=/path/to/torch_clip_anchor.py scripts/torch_gpu_check.sh
#
# The anchor script supplies PyTorch's loss and the timing harness (without it bench_clip.py uses
# its own mm + F.cross_entropy loss). Environment: PYTHON (default python3), BENCH_ARGS (passed to
# python/benchmarks/bench_clip.py), EIGEN3_INCLUDE_DIR when Eigen is not in /usr/include/eigen3,
# TEST_TIMEOUT and TABLE_TIMEOUT in seconds. Logs go to $OUT (or build-torch-gpu/) when set.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG_DIR=${OUT:-build-torch-gpu}
mkdir -p "$LOG_DIR"
start=$(date +%s)
stamp() { echo "[torch_gpu_check +$(( $(date +%s) - start ))s] $*"; }
unset CONTRASTIVE_TORCH_LIBRARY  # test the module built here

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available())" \
  || { echo "torch_gpu_check: $PY cannot import torch"; exit 1; }

stamp "building contrastive_torch (python/setup.py build_ext --inplace, CUDA kernels required)"
rm -f python/contrastive_torch/_C*.so
if ! (cd python && CONTRASTIVE_TORCH_CUDA=1 MAX_JOBS="$(nproc)" "$PY" setup.py build_ext --inplace) \
     >"$LOG_DIR/build.log" 2>&1; then
  tail -60 "$LOG_DIR/build.log"
  echo "torch_gpu_check: build failed (log: $LOG_DIR/build.log)"
  exit 1
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
# More than one OpenMP runtime in the process (torch's and the extension's) would show here.
"$PY" - <<'PYEOF'
import torch, contrastive_torch as ct
maps = {l.split()[-1] for l in open("/proc/self/maps") if "omp" in l.split()[-1]}
print("loaded", ct.library_path)
print("OpenMP runtimes mapped:", sorted(maps) or "none")
print("CUDA kernels registered:",
      torch._C._dispatch_has_kernel_for_dispatch_key("contrastive::info_nce_fwd", "CUDA"))
PYEOF

stamp "pytest python/tests"
status=0
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout "${TEST_TIMEOUT:-300}" "$PY" -m pytest -q -p no:cacheprovider -rs python/tests \
    2>&1 | tee "$LOG_DIR/pytest.log" | tail -40
  status=${PIPESTATUS[0]}
else
  echo "torch_gpu_check: pytest is not installed for $PY; tests skipped"
  status=1
fi

stamp "table"
# shellcheck disable=SC2086
timeout "${TABLE_TIMEOUT:-420}" "$PY" python/benchmarks/bench_clip.py --n 4096,32768 --d 512 \
  --dtypes bf16,fp32 ${BENCH_ARGS:-} 2>&1 | tee "$LOG_DIR/table.md"
table=${PIPESTATUS[0]}
stamp "done (pytest exit $status, table exit $table)"
[ "$status" -eq 0 ] && [ "$table" -eq 0 ]
