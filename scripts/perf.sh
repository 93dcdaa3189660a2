#!/usr/bin/env bash
# Reproduces the README's performance table on this machine (Release build in build/).
#   scripts/perf.sh            # the ratios (takes a few minutes on 2 cores)
#   scripts/perf.sh --memory   # also peak memory of the streaming path at N = 65536, D = 512
# Every ratio comes from one process run: contrastive and the Eigen GEMM floor (or the naive
# loss, or LibTorch) are timed in the same binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir="${CONTRASTIVE_BUILD_DIR:-build}"
scripts/install-deps.sh time   # /usr/bin/time for --memory
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j2 --target contrastive_benchmarks streaming_scale
bench="$build_dir/benchmarks/contrastive_benchmarks"

echo "== CLIP forward+backward vs the Eigen GEMM floor (x_floor), the naive loss, cached mode, threads"
"$bench" --benchmark_min_time=1 --benchmark_counters_tabular=true \
  --benchmark_filter='^(BM_clip_fwd_bwd<float>/N:(4096|8192)/D:512/threads:0/cached:0|BM_clip_cached<float>/N:(4096|8192)/D:512/threads:0/cached:1|BM_clip_threads<float>/N:8192/D:512/threads:[12]/cached:0|BM_naive_clip_fwd_bwd<float>/N:(4096|8192)/D:512|BM_nt_xent_fwd_bwd<float>/N:8192/D:512/threads:0)/real_time$'

if [ -x "$build_dir/benchmarks/contrastive_bench_libtorch" ]; then
  echo "== LibTorch's CLIP loss in the same process (speedup = LibTorch time / contrastive time)"
  "$build_dir/benchmarks/contrastive_bench_libtorch" --benchmark_min_time=1 --benchmark_counters_tabular=true \
    --benchmark_filter='^BM_libtorch_clip_fwd_bwd/N:(4096|8192)/D:512/real_time$'
else
  echo "== LibTorch comparison skipped (apt-get install libtorch-dev, then rerun)"
fi

if [ "${1:-}" = "--memory" ]; then
  echo "== Peak resident memory, N = 65536, D = 512, float (inputs + gradients = 512 MiB)"
  /usr/bin/time -v "$build_dir/examples/streaming_scale" 65536 512 float 2>&1 |
    grep -E "^N |inputs|Maximum resident|Elapsed"
fi
