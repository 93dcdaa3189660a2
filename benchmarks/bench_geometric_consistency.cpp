// Geometric consistency (L_GC and L^a_GC): forward+backward on the D x D Gram path (P/Q form,
// 6 N D^2 useful flop with symmetric rank updates) and on the naive N x N path, the same-run
// Eigen floor of the Gram path's products, and thread scaling. The target:
// N = 65536, D = 512 forward+backward under 1 s on 2 cores:
//   contrastive_benchmarks --benchmark_filter='BM_gc_fwd_bwd<float>/N:65536/D:512'
// Ratio to the naive path where it fits (N x N matrices):
//   contrastive_benchmarks --benchmark_filter='BM_gc_(fwd_bwd|naive)<float>/N:(4096|8192)/D:512/'
#include <algorithm>
#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

contrastive::geometric_consistency_options gc_options(const benchmark::State& st,
                                                      contrastive::gc_algorithm a) {
  contrastive::geometric_consistency_options o;
  o.algorithm = a;
  if (st.range(2) > 0) o.num_threads = static_cast<int>(st.range(2));
  return o;
}

/// Seconds of the Gram path's products done by Eigen on whole matrices (P^T P and Q^T Q as
/// symmetric rank updates, P B and Q A as GEMMs), P and Q formed beforehand (not timed): the
/// floor of the Gram path. Median of 3, once per shape.
template <class T>
double gram_floor_seconds(Eigen::Index n, Eigen::Index d) {
  static std::map<std::pair<Eigen::Index, Eigen::Index>, double> cache;
  const auto key = std::make_pair(n, d);
  if (cache.count(key)) return cache[key];
  const bench::rmat<T> v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  const bench::rmat<T> p = v + u, q = v - u;
  bench::rmat<T> a(d, d), b(d, d), x(n, d), y(n, d);
  std::vector<double> times;
  for (int r = 0; r < 4; ++r) {  // the first run warms up and is dropped
    const auto t0 = clock_type::now();
    a.setZero();
    b.setZero();
    a.template selfadjointView<Eigen::Lower>().rankUpdate(p.transpose());
    b.template selfadjointView<Eigen::Lower>().rankUpdate(q.transpose());
    a.template triangularView<Eigen::StrictlyUpper>() = a.transpose();
    b.template triangularView<Eigen::StrictlyUpper>() = b.transpose();
    x.noalias() = p * b;
    y.noalias() = q * a;
    benchmark::DoNotOptimize(x.data());
    benchmark::DoNotOptimize(y.data());
    if (r > 0) times.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return cache[key] = times[1];
}

/// Args: N, D, threads (0 = all). Gram path (automatic picks it for D < N).
template <class T>
void BM_gc_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> gv(n, d), gu(n, d);
  const auto o = gc_options(st, contrastive::gc_algorithm::gram);
  std::vector<unsigned char> ws(contrastive::geometric_consistency_workspace_bytes<T>(n, d, o));
  const contrastive::workspace w{ws.data(), ws.size()};
  // One untimed call first: the outputs' pages and Eigen's packing buffers are faulted in once
  // per process, not per call (Google Benchmark 1.7 has no warm-up option).
  contrastive::geometric_consistency_forward_backward(v, u, gv, gu, o, nullptr, w);
  const auto t0 = clock_type::now();
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        contrastive::geometric_consistency_forward_backward(v, u, gv, gu, o, nullptr, w));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(clock_type::now() - t0).count() / double(st.iterations());
  st.counters["FLOP/s"] = benchmark::Counter(6.0 * double(n) * double(d) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
  if (st.range(3)) {
    const double floor_s = gram_floor_seconds<T>(n, d);
    st.counters["floor_ms"] = floor_s * 1e3;
    st.counters["x_floor"] = per_iter / floor_s;
  }
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

/// The naive path (N x N similarity matrices), same shape arguments.
template <class T>
void BM_gc_naive(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> gv(n, d), gu(n, d);
  const auto o = gc_options(st, contrastive::gc_algorithm::naive);
  contrastive::geometric_consistency_forward_backward(v, u, gv, gu, o);  // warm-up
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::geometric_consistency_forward_backward(v, u, gv, gu, o));
    benchmark::ClobberMemory();
  }
  // Forward V V^T, U U^T, V U^T; backward K U, E V, K V, E U (all N x N x D).
  st.counters["FLOP/s"] = benchmark::Counter(14.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["NxN_MiB"] = 3.0 * double(n) * double(n) * sizeof(T) / (1 << 20);
}

/// Augmented variant L^a_GC (four inputs, two P/Q pairs). Args: N, D, threads, naive (0/1).
template <class T>
void BM_gc_augmented_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  const auto va = bench::unit_rows<T>(n, d, 3), ua = bench::unit_rows<T>(n, d, 4);
  bench::rmat<T> gv(n, d), gu(n, d), gva(n, d), gua(n, d);
  const auto o = gc_options(
      st, st.range(3) ? contrastive::gc_algorithm::naive : contrastive::gc_algorithm::gram);
  contrastive::geometric_consistency_augmented_forward_backward(v, u, va, ua, gv, gu, gva, gua,
                                                                o);  // warm-up
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::geometric_consistency_augmented_forward_backward(
        v, u, va, ua, gv, gu, gva, gua, o));
    benchmark::ClobberMemory();
  }
  // Useful work: naive 16 N^2 D (four N x N Grams, four products); Gram path 24 N D^2 (per pair
  // two symmetric rank updates, one D x D product, four N x D x D products).
  st.counters["FLOP/s"] = benchmark::Counter(st.range(3) ? 16.0 * double(n) * double(n) * double(d)
                                                         : 24.0 * double(n) * double(d) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// The target and a grid (threads 0 = all OpenMP threads); x_floor against the same-run
// Eigen products of the Gram path at the target shape.
BENCHMARK_TEMPLATE(BM_gc_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads", "floor"})
    ->Args({65536, 512, 0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gc_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads", "floor"})
    ->ArgsProduct({{4096, 8192, 16384, 65536}, {128, 512, 1024}, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gc_fwd_bwd, double)
    ->ArgNames({"N", "D", "threads", "floor"})
    ->ArgsProduct({{8192, 65536}, {512}, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gc_fwd_bwd, float)
    ->Name("BM_gc_threads<float>")
    ->ArgNames({"N", "D", "threads", "floor"})
    ->ArgsProduct({{65536}, {512}, {1, 2}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The naive path where N x N fits.
BENCHMARK_TEMPLATE(BM_gc_naive, float)
    ->ArgNames({"N", "D", "threads", "floor"})
    ->ArgsProduct({{2048, 4096, 8192}, {128, 512}, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gc_augmented_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads", "naive"})
    ->ArgsProduct({{8192, 65536}, {512}, {0}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_gc_augmented_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads", "naive"})
    ->Args({8192, 512, 0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_gc_fwd_bwd, float)->Name("smoke/gc_fwd_bwd")->Args({512, 32, 0, 1});
BENCHMARK_TEMPLATE(BM_gc_naive, float)->Name("smoke/gc_naive")->Args({256, 32, 0, 0});
BENCHMARK_TEMPLATE(BM_gc_augmented_fwd_bwd, double)
    ->Name("smoke/gc_augmented")
    ->Args({256, 32, 0, 0});
