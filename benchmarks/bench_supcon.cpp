// SupCon over one labelled set of M rows, forward+backward, next to CLIP (bench_info_nce.cpp; run
// both in one process, e.g. --benchmark_filter='BM_clip_fwd_bwd<float>/N:8192/D:512/threads:0/
// cached:0$|BM_supcon_fwd_bwd<float>/M:8192'). Counters: x_floor (time / the same-run GEMM floor
// of CLIP at N = M, same D), ns_per_logit over the M x M logits (the symmetric sweep computes
// about half of them), ws_MiB.
#include <chrono>
#include <vector>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

/// Args: M, D, classes, pairs (1: the ntxent_pairs convention).
template <class T>
void BM_supcon_fwd_bwd(benchmark::State& st) {
  const Eigen::Index m = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(m, d, 1);
  bench::rmat<T> ga(m, d);
  std::vector<std::int64_t> y(static_cast<std::size_t>(m));
  for (Eigen::Index i = 0; i < m; ++i) y[i] = (i * 7919) % st.range(2);
  contrastive::supcon_options o;
  o.labels = y;
  if (st.range(3) != 0) o.convention = contrastive::supcon_convention::ntxent_pairs;
  std::vector<unsigned char> ws(contrastive::supcon_workspace_bytes<T>(m, d, o));
  const double floor_s = bench::gemm_floor_seconds<T>(m, d);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    benchmark::DoNotOptimize(contrastive::supcon_forward_backward(
        a, ga, o, nullptr, contrastive::workspace{ws.data(), ws.size()}));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
      double(st.iterations());
  const double mm = double(m);
  bench::set_counters(st, mm, double(d), floor_s, 3.0 * mm * mm * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ns_per_logit"] = per_iter * 1e9 / (mm * mm);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_supcon_fwd_bwd, float)
    ->ArgNames({"M", "D", "classes", "pairs"})
    ->ArgsProduct({{1024, 4096, 8192, 16384}, {128, 512}, {100}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_supcon_fwd_bwd, double)
    ->ArgNames({"M", "D", "classes", "pairs"})
    ->ArgsProduct({{1024, 4096}, {128, 512}, {100}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_supcon_fwd_bwd, float)->Name("smoke/supcon_fwd_bwd")->Args({256, 32, 10, 0});
BENCHMARK_TEMPLATE(BM_supcon_fwd_bwd, float)
    ->Name("smoke/supcon_pairs_fwd_bwd")
    ->Args({256, 32, 10, 1});
