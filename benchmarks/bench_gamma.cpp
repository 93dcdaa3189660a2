// Gamma sampler throughput (sampling/gamma.hpp): draws per second of Marsaglia-Tsang on Philox
// streams, per shape, for the scalar draw and the tensor fill, next to the raw Philox block rate
// that bounds it. Counter items_per_second = draws (or blocks) per second on one thread.
#include <cstdint>
#include <vector>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

namespace {

constexpr int kDrawsPerIter = 4096;

/// Arg: alpha x 100. One draw per sample id, ids advancing across iterations.
void BM_gamma_sample(benchmark::State& st) {
  const double alpha = double(st.range(0)) / 100.0;
  std::uint64_t id = 0;
  double sum = 0;
  for (auto _ : st) {
    for (int k = 0; k < kDrawsPerIter; ++k)
      sum += contrastive::gamma_standard(alpha, contrastive::philox_stream{42, id++, 7, 0});
    benchmark::DoNotOptimize(sum);
  }
  st.SetItemsProcessed(st.iterations() * kDrawsPerIter);
}

/// Arg: alpha x 100. fill_gamma into a row-major tensor of 64 x 1024 (checked entry point).
template <class T>
void BM_fill_gamma(benchmark::State& st) {
  const contrastive::gamma_params p{double(st.range(0)) / 100.0, 1.0, 42, 7, 0};
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> out(64, 1024);
  std::uint64_t first = 0;
  for (auto _ : st) {
    contrastive::fill_gamma(out, p, first);
    first += std::uint64_t(out.size());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * out.size());
}

/// Raw Philox4x32-10 blocks (the sampler uses 1.00 - 1.05 of them per draw).
void BM_philox_block(benchmark::State& st) {
  std::uint64_t id = 0;
  std::uint32_t acc = 0;
  for (auto _ : st) {
    for (int k = 0; k < kDrawsPerIter; ++k)
      acc ^= contrastive::philox_stream{42, id++, 7, 0}.block(0).w[0];
    benchmark::DoNotOptimize(acc);
  }
  st.SetItemsProcessed(st.iterations() * kDrawsPerIter);
}

}  // namespace

BENCHMARK(BM_gamma_sample)->ArgName("alpha_x100")->Arg(10)->Arg(50)->Arg(100)->Arg(400)->Arg(1600);
BENCHMARK_TEMPLATE(BM_fill_gamma, double)->ArgName("alpha_x100")->Arg(100)->Arg(400);
BENCHMARK_TEMPLATE(BM_fill_gamma, float)->ArgName("alpha_x100")->Arg(100);
BENCHMARK(BM_philox_block);
// CI smoke.
BENCHMARK(BM_gamma_sample)->Name("smoke/gamma_sample")->Arg(100);
