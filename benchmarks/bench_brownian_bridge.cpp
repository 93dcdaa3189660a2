// Brownian-bridge sampling throughput: points (one per pair, D Philox normals each), K-step
// trajectories (K - 1 interior points per pair), their reparameterised backward, and the
// bridge loss forward+backward. Counters: pairs/s, normals/s and output bytes/s.
//   contrastive_benchmarks --benchmark_filter='BM_bridge'
#include <vector>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

contrastive::brownian_bridge_options bridge_options(const benchmark::State& st) {
  contrastive::brownian_bridge_options o;
  o.random_t = true;
  o.seed = 42;
  if (st.range(2) > 0) o.num_threads = static_cast<int>(st.range(2));
  return o;
}

/// Args: N, D, threads (0 = all).
template <class T>
void BM_bridge_sample(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> y(n, d);
  auto o = bridge_options(st);
  contrastive::brownian_bridge_sample(v, u, y, o);  // warm-up: fault the output in
  for (auto _ : st) {
    ++o.step;  // fresh noise every iteration, as in training
    benchmark::DoNotOptimize(contrastive::brownian_bridge_sample(v, u, y, o).sigma);
    benchmark::ClobberMemory();
  }
  st.counters["pairs/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["normals/s"] =
      benchmark::Counter(double(n) * double(d), benchmark::Counter::kIsIterationInvariantRate);
  st.SetBytesProcessed(st.iterations() * n * d * static_cast<int64_t>(sizeof(T)));
}

/// The mean only (no noise): the cost of everything but the random numbers.
template <class T>
void BM_bridge_mean(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> y(n, d);
  auto o = bridge_options(st);
  o.noise = false;
  contrastive::brownian_bridge_sample(v, u, y, o);  // warm-up
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::brownian_bridge_sample(v, u, y, o).sigma);
    benchmark::ClobberMemory();
  }
  st.counters["pairs/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  st.SetBytesProcessed(st.iterations() * n * d * static_cast<int64_t>(sizeof(T)));
}

template <class T>
void BM_bridge_sample_backward(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  const auto g = bench::unit_rows<T>(n, d, 3);
  bench::rmat<T> y(n, d), gv(n, d), gu(n, d);
  const auto o = bridge_options(st);
  const auto saved = contrastive::brownian_bridge_sample(v, u, y, o);
  contrastive::brownian_bridge_sample_backward(v, u, saved, g, gv, gu, o);  // warm-up
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        contrastive::brownian_bridge_sample_backward(v, u, saved, g, gv, gu, o).t);
    benchmark::ClobberMemory();
  }
  st.counters["pairs/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

/// Args: N, D, threads, K.
template <class T>
void BM_bridge_trajectory(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1), k = st.range(3);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> x(n * (k + 1), d);
  auto o = bridge_options(st);
  o.steps = k;
  contrastive::brownian_bridge_trajectory(v, u, x, o);  // warm-up
  for (auto _ : st) {
    ++o.step;
    benchmark::DoNotOptimize(contrastive::brownian_bridge_trajectory(v, u, x, o).sigma);
    benchmark::ClobberMemory();
  }
  st.counters["paths/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["normals/s"] = benchmark::Counter(double(n) * double(k - 1) * double(d),
                                                benchmark::Counter::kIsIterationInvariantRate);
  st.SetBytesProcessed(st.iterations() * n * (k + 1) * d * static_cast<int64_t>(sizeof(T)));
}

template <class T>
void BM_bridge_trajectory_backward(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1), k = st.range(3);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  const auto g = bench::unit_rows<T>(n * (k + 1), d, 3);
  bench::rmat<T> x(n * (k + 1), d), gv(n, d), gu(n, d);
  auto o = bridge_options(st);
  o.steps = k;
  const auto saved = contrastive::brownian_bridge_trajectory(v, u, x, o);
  contrastive::brownian_bridge_trajectory_backward(v, u, saved, g, gv, gu, o);  // warm-up
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        contrastive::brownian_bridge_trajectory_backward(v, u, saved, g, gv, gu, o).sigma);
    benchmark::ClobberMemory();
  }
  st.counters["paths/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

/// L_Br forward+backward (random t, nll weight).
template <class T>
void BM_bridge_loss_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto v = bench::unit_rows<T>(n, d, 1), u = bench::unit_rows<T>(n, d, 2);
  const auto a = bench::unit_rows<T>(n, d, 3);
  bench::rmat<T> gv(n, d), gu(n, d), ga(n, d);
  contrastive::brownian_bridge_loss_options o;
  o.bridge.random_t = true;
  o.nll_weight = true;
  if (st.range(2) > 0) o.num_threads = static_cast<int>(st.range(2));
  contrastive::brownian_bridge_loss_forward_backward(v, u, a, gv, gu, ga, o);  // warm-up
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        contrastive::brownian_bridge_loss_forward_backward(v, u, a, gv, gu, ga, o));
    benchmark::ClobberMemory();
  }
  st.counters["pairs/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_bridge_sample, float)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({{8192, 65536}, {128, 512}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_sample, double)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({{65536}, {512}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_sample, float)
    ->Name("BM_bridge_sample_threads<float>")
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({{65536}, {512}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_mean, float)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({{65536}, {512}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_sample_backward, float)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({{65536}, {512}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_trajectory, float)
    ->ArgNames({"N", "D", "threads", "K"})
    ->ArgsProduct({{8192}, {512}, {0}, {8}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_trajectory_backward, float)
    ->ArgNames({"N", "D", "threads", "K"})
    ->ArgsProduct({{8192}, {512}, {0}, {8}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_bridge_loss_fwd_bwd, float)
    ->ArgNames({"N", "D", "threads"})
    ->ArgsProduct({{65536}, {512}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_bridge_sample, float)->Name("smoke/bridge_sample")->Args({256, 32, 0});
BENCHMARK_TEMPLATE(BM_bridge_trajectory, double)
    ->Name("smoke/bridge_trajectory")
    ->Args({64, 32, 0, 8});
BENCHMARK_TEMPLATE(BM_bridge_loss_fwd_bwd, float)->Name("smoke/bridge_loss")->Args({256, 32, 0});
