// The GPU gamma loss (cuda/gamma_nce.cuh) against the CPU loss in double on the same rounded
// inputs, for every element type: the three reported values, the log-normalisers, the weights
// r_i (the same Philox draws), the gradients and the temperature gradient; every rate source and
// update order, one and two directions, the negatives-only and whole-batch normalisers, sum
// reduction, upstream, accumulate, the generic entry points; the state stepped on the device
// against the CPU's; state files written by one side and read by the other; a non-finite step
// leaving the state unchanged; NaN inputs reported with the CPU's message; bitwise
// repeatability. [host] tests need no GPU.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/losses/gamma_nce.hpp>

#include "cuda/gamma_nce_kernels.hpp"
#include "cuda/parity.hpp"

namespace {

using cuda_test::dtype;
using cuda_test::gamma_case;
using cuda_test::gamma_result;
namespace c = contrastive;

c::gamma_nce_options cpu_options(const gamma_case& g) {
  c::gamma_nce_options o = cuda_test::gamma_options(g);
  o.exact_log_normalizer_a = g.exact_a;  // host memory on the CPU
  o.exact_log_normalizer_b = g.exact_b;
  return o;
}

gamma_result cpu(const gamma_case& g, const std::vector<double>& a, const std::vector<double>& b,
                 c::normalizer_state* state) {
  gamma_result r;
  const auto va = c::make_view(a.data(), g.n, g.d), vb = c::make_view(b.data(), g.n, g.d);
  r.grad_a.assign(a.size(), g.accumulate ? 0.5 : 0.0);
  r.grad_b.assign(a.size(), g.accumulate ? 0.5 : 0.0);
  const c::gamma_nce_options o = cpu_options(g);
  const c::vector_view<const std::int64_t> ids(g.ids);
  const auto saved = g.source == 0 ? c::gamma_nce_forward(va, vb, ids, *state, o)
                                   : c::gamma_nce_forward(va, vb, ids, o);
  r.loss = saved.loss;
  r.info_nce = saved.info_nce;
  r.rate_loss = saved.rate_loss;
  r.row_lse.assign(saved.row.lse.begin(), saved.row.lse.end());
  r.col_lse.assign(saved.col.lse.begin(), saved.col.lse.end());
  r.r_row = saved.row.r;
  r.r_col = saved.col.r;
  r.grad_temperature = c::gamma_nce_backward(va, vb, saved, c::make_view(r.grad_a.data(), g.n, g.d),
                                             c::make_view(r.grad_b.data(), g.n, g.d), o, g.upstream)
                           .temperature;
  return r;
}

/// A state where half of the batch's ids were visited before (the EMA's two branches).
c::normalizer_state seeded_state(const gamma_case& g) {
  c::normalizer_state s(4 * g.n + 8, 2);
  for (std::size_t i = 0; i < g.ids.size(); i += 2)
    for (int dir = 0; dir < 2; ++dir) s.set(g.ids[i], dir, 0.3 * std::sin(double(i + dir)) + 2.0);
  return s;
}

void check_parity(dtype t, gamma_case g) {
  const std::vector<double> a = cuda_test::round_to(t, cuda_test::unit_rows(g.n, g.d, 11));
  const std::vector<double> b = cuda_test::round_to(t, cuda_test::unit_rows(g.n, g.d, 12));
  g.ids.resize(static_cast<std::size_t>(g.n));
  for (int i = 0; i < g.n; ++i) g.ids[static_cast<std::size_t>(i)] = 3 * i + 1;
  g.exact_a.resize(static_cast<std::size_t>(g.n));
  g.exact_b.resize(static_cast<std::size_t>(g.n));
  for (int i = 0; i < g.n; ++i) {
    g.exact_a[static_cast<std::size_t>(i)] = 2.0 + 0.5 * std::sin(1.7 * i);
    g.exact_b[static_cast<std::size_t>(i)] = 2.0 + 0.5 * std::cos(0.9 * i);
  }
  c::normalizer_state host_state = seeded_state(g), device_state = host_state;
  const gamma_result want = cpu(g, a, b, &host_state);
  const gamma_result got = cuda_test::run_gamma_nce(t, g, a, b, &device_state);
  INFO(cuda_test::name(t) << " n " << g.n << " symmetric " << g.symmetric << " source " << g.source
                          << " positive_in_normaliser " << g.positive_in_normaliser << " error "
                          << got.error);
  REQUIRE(got.error.empty());
  const cuda_test::tolerance tol = cuda_test::tolerance_for(t);
  CHECK(got.loss == Approx(want.loss).epsilon(tol.loss).margin(tol.loss));
  CHECK(got.info_nce == Approx(want.info_nce).epsilon(tol.loss).margin(tol.loss));
  CHECK(got.rate_loss == Approx(want.rate_loss).epsilon(tol.loss).margin(tol.loss));
  CHECK(cuda_test::rel_error(got.row_lse, want.row_lse) <= tol.loss);
  CHECK(cuda_test::rel_error(got.r_row, want.r_row) <= 10 * tol.loss);
  if (g.symmetric) {
    CHECK(cuda_test::rel_error(got.col_lse, want.col_lse) <= tol.loss);
    CHECK(cuda_test::rel_error(got.r_col, want.r_col) <= 10 * tol.loss);
  }
  CHECK(cuda_test::rel_error(got.grad_a, want.grad_a) <= tol.grad);
  CHECK(cuda_test::rel_error(got.grad_b, want.grad_b) <= tol.grad);
  CHECK(got.grad_temperature ==
        Approx(want.grad_temperature).epsilon(tol.temperature).margin(tol.temperature));
  if (g.source == 0) {  // the state stepped on the device against the CPU's
    for (std::int64_t id : g.ids)
      for (int dir = 0; dir < (g.symmetric ? 2 : 1); ++dir) {
        CHECK(device_state.visited(id, dir));
        CHECK(device_state.log_normalizer(id, dir) ==
              Approx(host_state.log_normalizer(id, dir)).epsilon(tol.loss));
      }
  }
}

}  // namespace

TEST_CASE("cuda gamma_nce: parity with the CPU for every element type and option",
          "[cuda][gamma_nce]") {
  for (dtype t : {dtype::f32, dtype::tf32, dtype::f16, dtype::bf16})
    for (int source : {0, 1, 2})
      for (bool sym : {true, false}) {
        gamma_case g;
        g.n = 70;  // a ragged 64-wide chunk
        g.d = 32;
        g.source = source;
        g.symmetric = sym;
        check_parity(t, g);
      }
  gamma_case g;
  g.n = 40;
  g.d = 16;
  g.positive_in_normaliser = true;
  g.sample_then_update = true;
  g.sum_reduction = true;
  g.upstream = -0.7;
  g.accumulate = true;
  g.alpha = c::gamma_nce_options::deterministic;
  for (dtype t : {dtype::f32, dtype::bf16}) check_parity(t, g);
  g.generic = true;
  check_parity(dtype::f32, g);
}

TEST_CASE("cuda gamma_nce: several blocks (N > 4096)", "[cuda][gamma_nce]") {
  gamma_case g;
  g.n = 4100;
  g.d = 64;
  check_parity(dtype::f32, g);
  check_parity(dtype::bf16, g);
}

TEST_CASE("cuda gamma_nce: state files written on either side load on the other",
          "[cuda][gamma_nce]") {
  gamma_case g;
  g.n = 10;
  g.ids = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19};
  const c::normalizer_state s = seeded_state(g);
  const std::string from_gpu = "gamma_nce_state_from_gpu.bin",
                    from_cpu = "gamma_nce_state_from_cpu.bin";
  CHECK(cuda_test::device_state_round_trip(s, from_gpu) == s);  // upload, download: bitwise
  CHECK(c::normalizer_state::from_file(from_gpu) == s);         // GPU file -> CPU
  s.save(from_cpu);
  CHECK(cuda_test::device_state_load(s, from_cpu) == s);  // CPU file -> GPU
  std::remove(from_gpu.c_str());
  std::remove(from_cpu.c_str());
}

TEST_CASE("cuda gamma_nce: a non-finite step throws and leaves the state unchanged",
          "[cuda][gamma_nce][errors]") {
  gamma_case g;
  g.n = 8;
  g.d = 16;
  g.sample_then_update = true;  // r_i = g exp(log Zhat - zeta) with the stored zeta
  g.ids = {0, 1, 2, 3, 4, 5, 6, 7};
  c::normalizer_state s(8, 2);
  for (std::int64_t id = 0; id < 8; ++id)
    for (int dir = 0; dir < 2; ++dir) s.set(id, dir, -1e5);  // exp(1e5) overflows
  c::normalizer_state before = s;
  const auto a = cuda_test::unit_rows(g.n, g.d, 1), b = cuda_test::unit_rows(g.n, g.d, 2);
  const gamma_result r = cuda_test::run_gamma_nce(dtype::f32, g, a, b, &s);
  CHECK(r.error.find("cuda::gamma_nce_forward: the loss is not finite") != std::string::npos);
  CHECK(s == before);
}

TEST_CASE("cuda gamma_nce: NaN inputs, bad ids and duplicates give the CPU's messages",
          "[cuda][gamma_nce][errors]") {
  gamma_case g;
  g.n = 8;
  g.d = 16;
  g.source = 1;
  g.ids = {0, 1, 2, 3, 4, 5, 6, 7};
  auto a = cuda_test::unit_rows(g.n, g.d, 1), b = cuda_test::unit_rows(g.n, g.d, 2);
  auto cpu_message = [&](const gamma_case& x, const std::vector<double>& xa) {
    try {
      c::normalizer_state s(100, 2);
      cpu(x, xa, b, &s);
    } catch (const c::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto gpu_message = [&](const gamma_case& x, const std::vector<double>& xa) {
    c::normalizer_state s(100, 2);
    const std::string m = cuda_test::run_gamma_nce(dtype::f32, x, xa, b, &s).error;
    const std::string prefix = "cuda::";
    return m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m;
  };
  a[3 * g.d + 5] = NAN;
  CHECK(gpu_message(g, a) == cpu_message(g, a));
  a[3 * g.d + 5] = 0.1;
  gamma_case dup = g;
  dup.ids[6] = 2;
  CHECK(gpu_message(dup, a) == cpu_message(dup, a));
  gamma_case range = g;
  range.source = 0;
  range.ids[4] = 100;
  CHECK(gpu_message(range, a) == cpu_message(range, a));
  gamma_case neg = g;
  neg.ids[1] = -3;
  CHECK(gpu_message(neg, a) == cpu_message(neg, a));
}

TEST_CASE("cuda gamma_nce: bitwise repeatable", "[cuda][gamma_nce]") {
  gamma_case g;
  g.n = 300;
  g.d = 64;
  g.source = 1;
  g.ids.resize(300);
  for (int i = 0; i < 300; ++i) g.ids[static_cast<std::size_t>(i)] = i;
  const auto a = cuda_test::unit_rows(g.n, g.d, 5), b = cuda_test::unit_rows(g.n, g.d, 6);
  for (dtype t : {dtype::f32, dtype::f16}) {
    const gamma_result x = cuda_test::run_gamma_nce(t, g, a, b, nullptr);
    const gamma_result y = cuda_test::run_gamma_nce(t, g, a, b, nullptr);
    REQUIRE(x.error.empty());
    CHECK(x.loss == y.loss);
    CHECK(x.r_row == y.r_row);
    CHECK(x.grad_a == y.grad_a);
    CHECK(x.grad_b == y.grad_b);
    CHECK(x.grad_temperature == y.grad_temperature);
  }
}

TEST_CASE("cuda gamma_nce: workspace <= 0.25 GiB at N = 32768, D = 512", "[cuda][host]") {
  for (dtype t : {dtype::f32, dtype::bf16})
    CHECK(cuda_test::gamma_workspace_bytes(t, 32768, 512) <= (std::size_t(1) << 28));
}
