#ifndef CONTRASTIVE_BENCHMARKS_BENCH_COMMON_HPP
#define CONTRASTIVE_BENCHMARKS_BENCH_COMMON_HPP

// Shared by every benchmark: random unit-norm embeddings, the Eigen GEMM floor of the symmetric
// loss (its three products, timed in the same process and cached per shape) and the counters.

#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <tuple>

#include <benchmark/benchmark.h>
#include <Eigen/Core>

namespace bench {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
rmat<T> unit_rows(Eigen::Index n, Eigen::Index d, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<T> nd;
  rmat<T> m(n, d);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = nd(gen);
  m.rowwise().normalize();
  return m;
}

/// Seconds for the three GEMMs the symmetric loss needs (S = A B^T, dA = G B, dB = G^T A),
/// done in row panels of at most 2048 rows so that no N x N matrix is held: the floor any
/// implementation of the loss must pay. Median of `reps` runs, measured once per shape.
template <class T>
double gemm_floor_seconds(Eigen::Index n, Eigen::Index d, int reps = 3) {
  static std::map<std::tuple<Eigen::Index, Eigen::Index>, double> cache;
  const auto key = std::make_tuple(n, d);
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const rmat<T> a = unit_rows<T>(n, d, 1), b = unit_rows<T>(n, d, 2);
  const Eigen::Index panel = n < 2048 ? n : 2048;
  rmat<T> s(panel, n), da(n, d), db = rmat<T>::Zero(n, d);
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (Eigen::Index i = 0; i < n; i += panel) {
      const Eigen::Index p = std::min(panel, n - i);
      s.topRows(p).noalias() = a.middleRows(i, p) * b.transpose();
      da.middleRows(i, p).noalias() = s.topRows(p) * b;
      db.noalias() += s.topRows(p).transpose() * a.middleRows(i, p);
    }
    benchmark::DoNotOptimize(db.data());
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return cache[key] = times[times.size() / 2];
}

/// Standard counters: useful FLOP/s under the 6 N^2 D model and the ratio to the GEMM floor.
inline void set_counters(benchmark::State& state, double n, double d, double floor_s,
                         double flops_per_iter) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["floor_ms"] = floor_s * 1e3;
  (void)n;
  (void)d;
}

/// Adds the x_floor counter (time per iteration / GEMM floor) after the timed loop.
inline void set_floor_ratio(benchmark::State& state, double seconds_per_iter, double floor_s) {
  state.counters["x_floor"] = seconds_per_iter / floor_s;
}

}  // namespace bench

#endif  // CONTRASTIVE_BENCHMARKS_BENCH_COMMON_HPP
