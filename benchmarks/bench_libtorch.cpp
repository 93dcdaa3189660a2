// LibTorch 1.13 (Debian's libtorch-dev) computing the symmetric CLIP loss forward+backward,
// against contrastive in the same process: speedup = LibTorch time / contrastive time.
#include <algorithm>
#include <chrono>
#include <vector>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double contrastive_seconds(const bench::rmat<float>& a, const bench::rmat<float>& b) {
  bench::rmat<float> ga(a.rows(), a.cols()), gb(a.rows(), a.cols());
  contrastive::info_nce_options o;
  std::vector<double> t;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = clock_type::now();
    benchmark::DoNotOptimize(contrastive::info_nce_forward_backward(a, b, ga, gb, o));
    t.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[1];
}

void BM_libtorch_clip_fwd_bwd(benchmark::State& st) {
  const int64_t n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<float>(n, d, 1), b = bench::unit_rows<float>(n, d, 2);
  const double ours = contrastive_seconds(a, b);
  // Same data in torch tensors (copied, so torch owns its memory).
  auto ta = torch::from_blob(const_cast<float*>(a.data()), {n, d}, torch::kFloat32)
                .clone()
                .requires_grad_(true);
  auto tb = torch::from_blob(const_cast<float*>(b.data()), {n, d}, torch::kFloat32)
                .clone()
                .requires_grad_(true);
  const auto labels = torch::arange(n, torch::kLong);
  const double scale = 1.0 / 0.07;
  double loss_value = 0;
  const auto t0 = clock_type::now();
  for (auto _ : st) {
    auto logits = torch::mm(ta, tb.t()) * scale;
    auto loss = 0.5 * (torch::nn::functional::cross_entropy(logits, labels) +
                       torch::nn::functional::cross_entropy(logits.t(), labels));
    loss.backward();
    loss_value = loss.item<double>();
    ta.mutable_grad().zero_();
    tb.mutable_grad().zero_();
  }
  const double torch_s =
      std::chrono::duration<double>(clock_type::now() - t0).count() / double(st.iterations());
  st.counters["contrastive_ms"] = ours * 1e3;
  st.counters["speedup"] = torch_s / ours;
  st.counters["loss"] = loss_value;
  st.counters["FLOP/s"] = benchmark::Counter(6.0 * double(n) * double(n) * double(d),
                                             benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_libtorch_clip_fwd_bwd)
    ->ArgNames({"N", "D"})
    ->ArgsProduct({{1024, 4096, 8192}, {128, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_libtorch_clip_fwd_bwd)
    ->Name("smoke/libtorch_clip")
    ->Args({256, 32})
    ->Unit(benchmark::kMillisecond);
