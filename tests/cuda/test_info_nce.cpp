// The CUDA InfoNCE family (cuda/info_nce.cuh, cuda/nt_xent.cuh) against the CPU path in double on
// the same (rounded) inputs, for every element type: loss, statistics, both gradients and the
// temperature gradient; poisoned outputs; accumulate; the generic entry points; bad arguments.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/losses/info_nce.hpp>
#include <contrastive/losses/nt_xent.hpp>

#include "cuda/info_nce_kernels.hpp"
#include "cuda/parity.hpp"

namespace {

using cuda_test::dtype;
using cuda_test::loss_case;
using cuda_test::loss_result;

struct reference {
  double loss = 0, grad_temperature = 0;
  std::vector<double> row_lse, col_lse, grad_a, grad_b;
};

reference cpu_info_nce(const loss_case& c, const std::vector<double>& a,
                       const std::vector<double>& b) {
  contrastive::info_nce_options o;
  o.temperature = c.temperature;
  o.symmetric = c.symmetric;
  o.label_smoothing = c.label_smoothing;
  o.reduction =
      c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
  reference r;
  r.grad_a.assign(a.size(), 0);
  r.grad_b.assign(a.size(), 0);
  const auto va = contrastive::make_view(a.data(), c.n, c.d);
  const auto vb = contrastive::make_view(b.data(), c.n, c.d);
  const auto saved = contrastive::info_nce_forward(va, vb, o);
  auto ga = contrastive::make_view(r.grad_a.data(), c.n, c.d);
  auto gb = contrastive::make_view(r.grad_b.data(), c.n, c.d);
  r.grad_temperature =
      contrastive::info_nce_backward(va, vb, saved, ga, gb, o, c.upstream).temperature;
  r.loss = saved.loss;
  r.row_lse = saved.row_lse;
  r.col_lse = saved.col_lse;
  return r;
}

reference cpu_nt_xent(const loss_case& c, const std::vector<double>& a,
                      const std::vector<double>& b) {
  contrastive::nt_xent_options o;
  o.temperature = c.temperature;
  o.label_smoothing = c.label_smoothing;
  o.reduction =
      c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
  reference r;
  r.grad_a.assign(a.size(), 0);
  r.grad_b.assign(a.size(), 0);
  const auto va = contrastive::make_view(a.data(), c.n, c.d);
  const auto vb = contrastive::make_view(b.data(), c.n, c.d);
  const auto saved = contrastive::nt_xent_forward(va, vb, o);
  auto ga = contrastive::make_view(r.grad_a.data(), c.n, c.d);
  auto gb = contrastive::make_view(r.grad_b.data(), c.n, c.d);
  r.grad_temperature =
      contrastive::nt_xent_backward(va, vb, saved, ga, gb, o, c.upstream).temperature;
  r.loss = saved.loss;
  r.row_lse = saved.lse;
  return r;
}

void compare(const loss_result& g, const reference& r, const loss_case& c, dtype t) {
  INFO(cuda_test::name(t) << " n=" << c.n << " d=" << c.d << " tau=" << c.temperature
                          << " symmetric=" << c.symmetric << " eps=" << c.label_smoothing
                          << " sum=" << c.sum_reduction << " upstream=" << c.upstream
                          << " accumulate=" << c.accumulate);
  REQUIRE(g.error == "");
  const cuda_test::tolerance tol = cuda_test::tolerance_for(t);
  CHECK(std::abs(g.loss - r.loss) <= tol.loss * std::max(1.0, std::abs(r.loss)));
  CHECK(cuda_test::rel_error(g.row_lse, r.row_lse, 1.0) <= tol.stats);
  if (!r.col_lse.empty()) CHECK(cuda_test::rel_error(g.col_lse, r.col_lse, 1.0) <= tol.stats);
  std::vector<double> ga = g.grad_a, gb = g.grad_b;
  if (c.accumulate) {  // the outputs started at 0.5 (exact in every type)
    for (auto& v : ga) v -= 0.5;
    for (auto& v : gb) v -= 0.5;
  }
  // Both gradients against one scale: a tiny gradient block is compared with the large one's size.
  const double scale = std::max({cuda_test::max_abs(r.grad_a), cuda_test::max_abs(r.grad_b), 1e-6});
  CHECK(cuda_test::rel_error(ga, r.grad_a, scale) <= tol.grad * (c.accumulate ? 4 : 1));
  CHECK(cuda_test::rel_error(gb, r.grad_b, scale) <= tol.grad * (c.accumulate ? 4 : 1));
  CHECK(std::abs(g.grad_temperature - r.grad_temperature) <=
        tol.temperature * std::max(1.0, std::abs(r.grad_temperature)));
}

std::vector<loss_case> cases() {
  std::vector<loss_case> v;
  // Ragged tiles (n, d not multiples of 64 / 32 / 8), d = 1, one row, the vector-load path
  // (d % 8 == 0), large d (accumulator in global memory), and a batch that needs no split.
  for (auto nd : {std::pair<int, int>{1, 1}, {5, 3}, {70, 33}, {200, 64}, {129, 96}, {100, 1000}}) {
    loss_case c;
    c.n = nd.first;
    c.d = nd.second;
    v.push_back(c);
  }
  loss_case c;
  c.n = 150;
  c.d = 40;
  c.symmetric = false;
  v.push_back(c);
  c.symmetric = true;
  c.label_smoothing = 0.1;
  v.push_back(c);
  c.label_smoothing = 0;
  c.sum_reduction = true;
  c.upstream = 0.7;
  c.temperature = 0.5;
  v.push_back(c);
  c.sum_reduction = false;
  c.upstream = 1;
  c.accumulate = true;
  c.temperature = 0.07;
  v.push_back(c);
  return v;
}

const dtype all_types[] = {dtype::f32, dtype::tf32, dtype::f16, dtype::bf16};

}  // namespace

TEST_CASE("cuda info_nce: parity with the CPU for every element type", "[cuda][info_nce]") {
  unsigned seed = 1;
  for (const loss_case& c : cases()) {
    for (dtype t : all_types) {
      const auto a = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, seed));
      const auto b = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, seed + 1000));
      compare(cuda_test::run_info_nce(t, c, a, b), cpu_info_nce(c, a, b), c, t);
    }
    ++seed;
  }
}

TEST_CASE("cuda nt_xent: parity with the CPU for every element type", "[cuda][nt_xent]") {
  unsigned seed = 100;
  for (const loss_case& base : cases()) {
    if (!base.symmetric) continue;  // NT-Xent has no direction option
    for (dtype t : all_types) {
      const auto a = cuda_test::round_to(t, cuda_test::unit_rows(base.n, base.d, seed));
      const auto b = cuda_test::round_to(t, cuda_test::unit_rows(base.n, base.d, seed + 1000));
      compare(cuda_test::run_nt_xent(t, base, a, b), cpu_nt_xent(base, a, b), base, t);
    }
    ++seed;
  }
}

TEST_CASE("cuda info_nce: a batch large enough for one CTA per row block (no split)",
          "[cuda][info_nce]") {
  loss_case c;
  c.n = 9000;  // 141 row blocks: more than the 132 multiprocessors of an H100 / H200
  c.d = 24;
  for (dtype t : {dtype::f32, dtype::bf16}) {
    const auto a = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 7));
    const auto b = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 8));
    compare(cuda_test::run_info_nce(t, c, a, b), cpu_info_nce(c, a, b), c, t);
    compare(cuda_test::run_nt_xent(t, c, a, b), cpu_nt_xent(c, a, b), c, t);
  }
}

TEST_CASE("cuda info_nce: unnormalised inputs and a small temperature stay finite",
          "[cuda][info_nce]") {
  loss_case c;
  c.n = 96;
  c.d = 48;
  c.temperature = 0.01;
  const auto a = cuda_test::unit_rows(c.n, c.d, 11, false);
  const auto b = cuda_test::unit_rows(c.n, c.d, 12, false);
  const auto ar = cuda_test::round_to(dtype::f32, a), br = cuda_test::round_to(dtype::f32, b);
  compare(cuda_test::run_info_nce(dtype::f32, c, ar, br), cpu_info_nce(c, ar, br), c, dtype::f32);
}

TEST_CASE("cuda info_nce: the generic entry points dispatch device views", "[cuda][info_nce]") {
  loss_case c;
  c.n = 77;
  c.d = 40;
  const auto a = cuda_test::round_to(dtype::f32, cuda_test::unit_rows(c.n, c.d, 21));
  const auto b = cuda_test::round_to(dtype::f32, cuda_test::unit_rows(c.n, c.d, 22));
  compare(cuda_test::run_info_nce_generic(c, a, b), cpu_info_nce(c, a, b), c, dtype::f32);
}

TEST_CASE("cuda info_nce: bad arguments", "[cuda][info_nce][errors]") {
  for (int status : cuda_test::async_bad_argument_statuses())
    CHECK(status == cuda_test::invalid_value_status());
  const auto messages = cuda_test::wrapper_bad_argument_messages();
  REQUIRE(messages.size() == 3);
  CHECK_THAT(messages[0], Catch::Contains("cuda::info_nce_forward") &&
                              Catch::Contains("'b' has 8 columns, expected 16 (columns of 'a')"));
  CHECK_THAT(messages[1], Catch::Contains("label_smoothing"));
  CHECK_THAT(messages[2],
             Catch::Contains("cuda::nt_xent_forward") && Catch::Contains("temperature"));
}
