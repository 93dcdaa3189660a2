#!/usr/bin/env bash
# Builds the two GPU programs here (no GPU needed) and copies them, with the OpenMP runtime they
# link, into one folder that scripts/gpu_check.sh can use on a GPU machine without the Debian
# packages: scripts/gpu_prebuild.sh [DIR=.gpu]; then CONTRASTIVE_GPU_BIN=DIR scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu}
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCONTRASTIVE_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80;90" -DCONTRASTIVE_NATIVE_ARCH=OFF >/dev/null
cmake --build build-gpu -j2 --target contrastive_cuda_tests contrastive_cuda_table
mkdir -p "$DIR"
cp build-gpu/tests/cuda/contrastive_cuda_tests build-gpu/benchmarks/contrastive_cuda_table "$DIR/"
cp "$(g++ -print-file-name=libgomp.so.1)" "$DIR/"
ls -la "$DIR"
