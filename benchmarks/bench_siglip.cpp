// SigLIP forward+backward (one fused sweep) next to CLIP (bench_info_nce.cpp; run both in one
// process, e.g. --benchmark_filter='BM_clip_fwd_bwd<float>/N:8192/D:512/threads:0/cached:0$|
// BM_siglip_fwd_bwd<float>/N:8192/D:512'). Counters: x_floor (time / the same-run GEMM floor of
// CLIP's three products at the same N, D, which is also SigLIP's floor), ns_per_logit over N^2,
// ws_MiB.
#include <chrono>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

/// Args: N, D.
template <class T>
void BM_siglip_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  contrastive::siglip_options o;
  std::vector<unsigned char> ws(contrastive::siglip_workspace_bytes<T>(n, d, o));
  const double floor_s = bench::gemm_floor_seconds<T>(n, d);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::siglip_forward_backward(
        a, b, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
      double(st.iterations());
  const double nn = double(n);
  bench::set_counters(st, nn, double(d), floor_s, 6.0 * nn * nn * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ns_per_logit"] = per_iter * 1e9 / (nn * nn);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_siglip_fwd_bwd, float)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096, 8192, 16384}, {128, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_siglip_fwd_bwd, double)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096}, {128, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_siglip_fwd_bwd, float)->Name("smoke/siglip_fwd_bwd")->Args({256, 32});
