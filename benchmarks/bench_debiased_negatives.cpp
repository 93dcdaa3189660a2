// Debiased (tau+) and hard-negative (beta) InfoNCE/CLIP and NT-Xent, forward+backward, next to
// plain CLIP (bench_info_nce.cpp; run both in one process, e.g. --benchmark_filter=
// 'BM_clip_fwd_bwd<float>/N:8192/D:512/threads:0/cached:0$|debiased.*N:8192'). Counters: x_floor
// (time / the same-run GEMM floor of CLIP at the same N, D), ns_per_logit (CLIP: N^2 logits;
// NT-Xent: the (2N)^2 of its logit matrix, of which the symmetric sweep computes 2N^2 + N).
#include <chrono>

#include <benchmark/benchmark.h>
#include <contrastive/contrastive.hpp>

#include "bench_common.hpp"

namespace {

/// Args: N, D, 1000 tau+, 10 beta.
template <class T, bool NtXent>
void BM_debiased_fwd_bwd(benchmark::State& st) {
  const Eigen::Index n = st.range(0), d = st.range(1);
  const auto a = bench::unit_rows<T>(n, d, 1), b = bench::unit_rows<T>(n, d, 2);
  bench::rmat<T> ga(n, d), gb(n, d);
  const double tau_plus = double(st.range(2)) / 1000, beta = double(st.range(3)) / 10;
  contrastive::nt_xent_options on;
  contrastive::info_nce_options oi;
  on.debias_tau_plus = oi.debias_tau_plus = tau_plus;
  on.hard_negative_beta = oi.hard_negative_beta = beta;
  std::vector<unsigned char> ws(NtXent ? contrastive::nt_xent_workspace_bytes<T>(n, d, on)
                                       : contrastive::info_nce_workspace_bytes<T>(n, d, oi));
  const contrastive::workspace w{ws.data(), ws.size()};
  const double floor_s = bench::gemm_floor_seconds<T>(n, d);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    if (NtXent)
      benchmark::DoNotOptimize(contrastive::nt_xent_forward_backward(a, b, ga, gb, on, nullptr, w));
    else
      benchmark::DoNotOptimize(
          contrastive::info_nce_forward_backward(a, b, ga, gb, oi, nullptr, w));
    benchmark::ClobberMemory();
  }
  const double per_iter =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
      double(st.iterations());
  const double nn = double(n);
  bench::set_counters(st, nn, double(d), floor_s, (NtXent ? 12.0 : 6.0) * nn * nn * double(d));
  bench::set_floor_ratio(st, per_iter, floor_s);
  st.counters["ns_per_logit"] = per_iter * 1e9 / (NtXent ? 4 * nn * nn : nn * nn);
  st.counters["ws_MiB"] = double(ws.size()) / (1 << 20);
}

}  // namespace

// tau+ = 0.1 alone (Chuang et al.) and with beta = 1 (Robinson et al.).
BENCHMARK_TEMPLATE(BM_debiased_fwd_bwd, float, false)
    ->Name("BM_clip_debiased<float>")
    ->ArgNames({"N", "D", "tau_plus_1e3", "beta_1e1"})
    ->ArgsProduct({{1024, 4096, 8192}, {128, 512}, {100}, {0, 10}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_debiased_fwd_bwd, float, true)
    ->Name("BM_nt_xent_debiased<float>")
    ->ArgNames({"N", "D", "tau_plus_1e3", "beta_1e1"})
    ->ArgsProduct({{1024, 4096, 8192}, {128, 512}, {100}, {0, 10}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// CI smoke: tiny sizes.
BENCHMARK_TEMPLATE(BM_debiased_fwd_bwd, float, false)
    ->Name("smoke/clip_debiased_hard")
    ->Args({256, 32, 100, 10});
BENCHMARK_TEMPLATE(BM_debiased_fwd_bwd, double, true)
    ->Name("smoke/nt_xent_debiased")
    ->Args({256, 32, 100, 0});
