// The gamma-auxiliary loss (losses/gamma_nce.hpp), symmetric, moving-average rate, forward +
// backward, next to the symmetric InfoNCE (CLIP) it replaces: both stream the same tiles, so the
// gamma loss should cost the same GEMM work plus O(N) per-anchor work (draws, state update).
// FLOP/s counts the useful 6 N^2 D of the symmetric loss.
#include <cstdint>
#include <numeric>
#include <vector>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

/// Args: N, D.
template <class T>
void BM_gamma_nce_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  contrastive::normalizer_state state(n, 2);
  contrastive::gamma_nce_options o;
  std::vector<unsigned char> ws(contrastive::gamma_nce_workspace_bytes<T>(n, d, o));
  std::uint32_t step = 0;
  for (auto _ : st) {
    o.step = step++;
    benchmark::DoNotOptimize(contrastive::gamma_nce_forward_backward(
        a, b, ids, state, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  st.counters["FLOP/s"] = benchmark::Counter(6.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

/// The same inputs through the symmetric InfoNCE, for the ratio.
template <class T>
void BM_gamma_nce_baseline_clip(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  contrastive::info_nce_options o;
  std::vector<unsigned char> ws(contrastive::info_nce_workspace_bytes<T>(n, d, o));
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::info_nce_forward_backward(
        a, b, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  st.counters["FLOP/s"] = benchmark::Counter(6.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_gamma_nce_fwd_bwd, float)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096, 8192}, {128, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gamma_nce_baseline_clip, float)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096, 8192}, {128, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gamma_nce_fwd_bwd, double)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096}, {128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke.
BENCHMARK_TEMPLATE(BM_gamma_nce_fwd_bwd, float)->Name("smoke/gamma_nce_fwd_bwd")->Args({256, 32});
