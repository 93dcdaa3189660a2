// DCL / DCLW forward+backward over the 2N views, next to CLIP (bench_info_nce.cpp; run both in
// one process, e.g. --benchmark_filter='BM_clip_fwd_bwd<float>/N:8192/D:512/threads:0/cached:0$|
// BM_dcl_fwd_bwd<float>/N:8192'). Counters: x_floor (time / the same-run GEMM floor of CLIP at the
// same N, D), ns_per_logit over the loss's (2N)^2 logit matrix and ns_per_visited over the
// 2N^2 + N logits the symmetric sweep computes, ws_MiB.
#include <chrono>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

/// Args: N, D, weighted (0/1).
template <class T>
void BM_dcl_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  contrastive::dcl_options o;
  o.weighted = st.range(2) != 0;
  std::vector<unsigned char> ws(contrastive::dcl_workspace_bytes<T>(n, d, o));
  const double floor_s = bench::gemm_floor_seconds<T>(n, d);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::dcl_forward_backward(
        a, b, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
      double(st.iterations());
  const double nn = double(n);
  bench::set_counters(st, nn, double(d), floor_s, 12.0 * nn * nn * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ns_per_logit"] = per_iter * 1e9 / (4 * nn * nn);
  st.counters["ns_per_visited"] = per_iter * 1e9 / (2 * nn * nn + nn);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_dcl_fwd_bwd, float)
    ->ArgNames({"N", "D", "weighted"})
    ->ArgsProduct({{1024, 4096, 8192}, {128, 512}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_dcl_fwd_bwd, double)
    ->ArgNames({"N", "D", "weighted"})
    ->ArgsProduct({{1024, 4096}, {128, 512}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_dcl_fwd_bwd, float)->Name("smoke/dcl_fwd_bwd")->Args({256, 32, 0});
BENCHMARK_TEMPLATE(BM_dcl_fwd_bwd, double)->Name("smoke/dclw_fwd_bwd")->Args({256, 32, 1});
