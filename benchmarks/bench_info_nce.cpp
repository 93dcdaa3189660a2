// Symmetric InfoNCE (CLIP) and NT-Xent: forward, backward and forward+backward, with FLOP/s
// (6 N^2 D model for forward+backward), the ratio to the same-run Eigen GEMM floor (x_floor),
// workspace bytes, the naive materialised baseline, thread scaling and an O(N^2) fit.
#include <chrono>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"
#include "naive_clip.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

template <class T>
contrastive::info_nce_options clip_options(const benchmark::State& st) {
  contrastive::info_nce_options o;
  if (st.range(2) > 0) o.num_threads = static_cast<int>(st.range(2));
  o.cache_logits = st.range(3) != 0;
  return o;
}

/// Args: N, D, threads (0 = all), cached (0/1).
template <class T>
void BM_clip_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  const auto o = clip_options<T>(st);
  std::vector<unsigned char> ws(contrastive::info_nce_workspace_bytes<T>(n, d, o));
  const double floor_s = bench::gemm_floor_seconds<T>(n, d);
  const auto t0 = clock_type::now();
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::info_nce_forward_backward(
        a, b, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(clock_type::now() - t0).count() / double(st.iterations());
  bench::set_counters(st, double(n), double(d), floor_s, 6.0 * double(n) * double(n) * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
  st.SetComplexityN(n);
}

template <class T>
void BM_clip_fwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  const auto o = clip_options<T>(st);
  std::vector<unsigned char> ws(contrastive::info_nce_workspace_bytes<T>(n, d, o));
  for (auto _ : st)
    benchmark::DoNotOptimize(
        contrastive::info_nce_forward(a, b, o, contrastive::workspace{ws.data(), ws.size()}).loss);
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
}

template <class T>
void BM_clip_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  const auto o = clip_options<T>(st);
  std::vector<unsigned char> ws(contrastive::info_nce_workspace_bytes<T>(n, d, o));
  const contrastive::workspace w{ws.data(), ws.size()};
  const auto saved = contrastive::info_nce_forward(a, b, o, w);
  for (auto _ : st) {
    contrastive::info_nce_backward(a, b, saved, ga, gb, o, 1.0, w);
    benchmark::ClobberMemory();
  }
  st.counters["FLOP/s"] = benchmark::Counter(4.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
}

/// The naive materialised loss (three N x N matrices), same counters.
template <class T>
void BM_naive_clip_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d), s(n, n), p(n, n), q(n, n);
  const double floor_s = bench::gemm_floor_seconds<T>(n, d);
  const auto t0 = clock_type::now();
  for (auto _ : st)
    benchmark::DoNotOptimize(
        bench::naive_clip_forward_backward<T>(a, b, T(1 / 0.07), ga, gb, s, p, q));
  const double per_iter =
      std::chrono::duration<double>(clock_type::now() - t0).count() / double(st.iterations());
  bench::set_counters(st, double(n), double(d), floor_s, 6.0 * double(n) * double(n) * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ws_MiB"] = 3.0 * double(n) * double(n) * sizeof(T) / (1 << 20);
}

/// Just the floor itself, so that its time appears in the table.
template <class T>
void BM_gemm_floor(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  for (auto _ : st) {
    const auto t0 = clock_type::now();
    bench::gemm_floor_seconds<T>(n, d, 1);
    benchmark::DoNotOptimize(t0);
  }
  st.counters["floor_ms"] = bench::gemm_floor_seconds<T>(n, d) * 1e3;
  st.counters["FLOP/s"] =
      6.0 * double(n) * double(n) * double(d) / bench::gemm_floor_seconds<T>(n, d);
}

template <class T>
void BM_nt_xent_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  contrastive::nt_xent_options o;
  if (st.range(2) > 0) o.num_threads = static_cast<int>(st.range(2));
  std::vector<unsigned char> ws(contrastive::nt_xent_workspace_bytes<T>(n, d, o));
  for (auto _ : st)
    benchmark::DoNotOptimize(contrastive::nt_xent_forward_backward(
        a, b, ga, gb, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
  // Useful work: the symmetric 2N x 2N logits once (forward) and two products (backward).
  st.counters["FLOP/s"] = benchmark::Counter(12.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

const std::vector<int64_t> kN = {1024, 4096, 8192, 16384, 65536};
const std::vector<int64_t> kD = {128, 512, 1024};

}  // namespace

// Full grid (filter it: --benchmark_filter='BM_clip_fwd_bwd<float>/N:8192/D:512').
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({kN, kD, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, double)
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({kN, kD, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_clip_fwd, float)
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({kN, kD, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_clip_fwd, double)
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({kN, kD, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_clip_bwd, float)
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({kN, kD, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_clip_bwd, double)
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({kN, kD, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_nt_xent_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({kN, kD, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_nt_xent_fwd_bwd, double)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({kN, kD, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Cached mode (N^2 logits kept) where it fits, thread scaling, the floor and the naive baseline.
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, float)
    ->Name("BM_clip_cached<float>")
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({{1024, 4096, 8192}, kD, {0}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, float)
    ->Name("BM_clip_threads<float>")
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({{4096, 8192}, {512}, {1, 2}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm_floor, float)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({kN, kD})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_TEMPLATE(BM_naive_clip_fwd_bwd, float)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096, 8192}, kD})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_naive_clip_fwd_bwd, double)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096}, kD})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// O(N^2) fit.
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, float)
    ->Name("BM_clip_complexity<float>")
    ->ArgNames({"N", "D", "threads", "cached"})
    ->ArgsProduct({{1024, 2048, 4096, 8192}, {128}, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Complexity(benchmark::oNSquared);
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, float)->Name("smoke/clip_fwd_bwd")->Args({256, 32, 0, 0});
BENCHMARK_TEMPLATE(BM_clip_fwd_bwd, double)
    ->Name("smoke/clip_fwd_bwd_cached")
    ->Args({256, 32, 0, 1});
BENCHMARK_TEMPLATE(BM_nt_xent_fwd_bwd, float)->Name("smoke/nt_xent_fwd_bwd")->Args({256, 32, 0});
BENCHMARK_TEMPLATE(BM_naive_clip_fwd_bwd, float)->Name("smoke/naive_clip")->Args({256, 32});
