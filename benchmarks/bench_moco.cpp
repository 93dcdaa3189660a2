// InfoNCE against a queue of K negatives, forward+backward, next to CLIP (bench_info_nce.cpp;
// run both in one process, e.g. --benchmark_filter='BM_clip_fwd_bwd<float>/N:8192/D:512/
// threads:0/cached:0$|BM_moco_fwd_bwd<float>/N:8192/K:8192/D:512'). Counters: x_floor (time /
// the same-run GEMM floor of CLIP at the same N, D), ns_per_logit over the N x (N + K) logits
// (N x (1 + K) in MoCo's own form), ws_MiB (independent of K).
#include <chrono>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

/// Args: N, K, D, batch negatives (0/1).
template <class T>
void BM_moco_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), k = st.range(1), d = st.range(2);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  const auto q = bench::unit_rows<T>(k, d, 3);
  bench::rmat<T> ga(n, d), gb(n, d);
  contrastive::moco_options o;
  o.batch_negatives = st.range(3) != 0;
  std::vector<unsigned char> ws(contrastive::moco_workspace_bytes<T>(n, k, d, o));
  const double floor_s = bench::gemm_floor_seconds<T>(n, d);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::moco_forward_backward(
        a, b, q, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
      double(st.iterations());
  const double nn = double(n), cand = o.batch_negatives ? double(n + k) : double(1 + k);
  bench::set_counters(st, nn, double(d), floor_s, 6.0 * nn * cand * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ns_per_logit"] = per_iter * 1e9 / (nn * cand);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_moco_fwd_bwd, float)
    ->ArgNames({"N", "K", "D", "batch"})
    ->ArgsProduct({{1024, 4096, 8192}, {8192, 65536}, {128, 512}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_moco_fwd_bwd, float)->Name("smoke/moco_fwd_bwd")->Args({256, 1024, 32, 1});
BENCHMARK_TEMPLATE(BM_moco_fwd_bwd, double)
    ->Name("smoke/moco_own_key_fwd_bwd")
    ->Args({256, 512, 32, 0});
