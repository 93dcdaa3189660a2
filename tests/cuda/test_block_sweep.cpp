// The blocked sweep (cuda/detail/block_sweep.cuh) against the CPU path in double on the same
// rounded inputs, for every element type, through the public entry points with sweep_mode::blocked:
// InfoNCE, CLIP and NT-Xent with smoothing, labels, sum reduction, upstream, accumulate; several
// blocks (N > 4096) with ragged edges and NT-Xent's off-diagonal blocks; bitwise repeatability;
// forced blocked where cuBLASLt cannot serve; the workspace bound. And ([host], no GPU needed)
// the census of bad inputs: the CUDA path's messages equal the CPU's after the function name.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/losses/info_nce.hpp>
#include <contrastive/losses/nt_xent.hpp>

#include "cuda/block_sweep_kernels.hpp"
#include "cuda/parity.hpp"

namespace {

using cuda_test::block_case;
using cuda_test::dtype;
using cuda_test::loss_result;

loss_result cpu(const block_case& c, const std::vector<double>& a, const std::vector<double>& b) {
  loss_result r;
  r.grad_a.assign(a.size(), c.accumulate ? 0.5 : 0.0);
  r.grad_b.assign(a.size(), c.accumulate ? 0.5 : 0.0);
  const auto va = contrastive::make_view(a.data(), c.n, c.d);
  const auto vb = contrastive::make_view(b.data(), c.n, c.d);
  auto ga = contrastive::make_view(r.grad_a.data(), c.n, c.d);
  auto gb = contrastive::make_view(r.grad_b.data(), c.n, c.d);
  const auto red =
      c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
  if (!c.nt_xent) {
    contrastive::info_nce_options o;
    o.temperature = c.temperature;
    o.symmetric = c.symmetric;
    o.label_smoothing = c.label_smoothing;
    o.reduction = red;
    o.accumulate = c.accumulate;
    if (!c.labels_a.empty()) {
      o.labels_a = c.labels_a;
      o.labels_b = c.labels_b;
    }
    const auto saved = contrastive::info_nce_forward(va, vb, o);
    r.grad_temperature =
        contrastive::info_nce_backward(va, vb, saved, ga, gb, o, c.upstream).temperature;
    r.loss = saved.loss;
    r.row_lse = saved.row_lse;
    r.col_lse = saved.col_lse;
  } else {
    contrastive::nt_xent_options o;
    o.temperature = c.temperature;
    o.label_smoothing = c.label_smoothing;
    o.reduction = red;
    o.accumulate = c.accumulate;
    if (!c.labels_a.empty()) o.labels = c.labels_a;
    const auto saved = contrastive::nt_xent_forward(va, vb, o);
    r.grad_temperature =
        contrastive::nt_xent_backward(va, vb, saved, ga, gb, o, c.upstream).temperature;
    r.loss = saved.loss;
    r.row_lse = saved.lse;
  }
  return r;
}

void compare(const loss_result& g, const loss_result& r, const block_case& c, dtype t) {
  INFO(cuda_test::name(t) << (c.nt_xent ? " nt_xent" : " info_nce") << " n=" << c.n << " d=" << c.d
                          << " symmetric=" << c.symmetric << " eps=" << c.label_smoothing
                          << " labels=" << !c.labels_a.empty() << " sum=" << c.sum_reduction
                          << " upstream=" << c.upstream << " accumulate=" << c.accumulate);
  REQUIRE(g.error == "");
  const cuda_test::tolerance tol = cuda_test::tolerance_for(t);
  CHECK(std::abs(g.loss - r.loss) <= tol.loss * std::max(1.0, std::abs(r.loss)));
  CHECK(cuda_test::rel_error(g.row_lse, r.row_lse, 1.0) <= tol.stats);
  if (!r.col_lse.empty()) CHECK(cuda_test::rel_error(g.col_lse, r.col_lse, 1.0) <= tol.stats);
  const double scale = std::max({cuda_test::max_abs(r.grad_a), cuda_test::max_abs(r.grad_b), 1e-6});
  CHECK(cuda_test::rel_error(g.grad_a, r.grad_a, scale) <= tol.grad * (c.accumulate ? 4 : 1));
  CHECK(cuda_test::rel_error(g.grad_b, r.grad_b, scale) <= tol.grad * (c.accumulate ? 4 : 1));
  CHECK(std::abs(g.grad_temperature - r.grad_temperature) <=
        tol.temperature * std::max(1.0, std::abs(r.grad_temperature)));
}

const dtype all_types[] = {dtype::f32, dtype::tf32, dtype::f16, dtype::bf16};

std::vector<block_case> cases() {
  std::vector<block_case> v;
  for (bool nt : {false, true}) {
    for (auto nd : {std::pair<int, int>{1, 8}, {70, 32}, {300, 64}, {129, 512}}) {
      block_case c;
      c.nt_xent = nt;
      c.n = nd.first;
      c.d = nd.second;
      v.push_back(c);
    }
    block_case c;
    c.nt_xent = nt;
    c.n = 150;
    c.d = 40;
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
  }
  block_case one_way;
  one_way.n = 150;
  one_way.d = 40;
  one_way.symmetric = false;
  v.push_back(one_way);
  return v;
}

}  // namespace

TEST_CASE("cuda block sweep: parity with the CPU for every element type", "[cuda][block_sweep]") {
  unsigned seed = 500;
  for (const block_case& c : cases()) {
    for (dtype t : all_types) {
      const auto a = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, seed));
      const auto b = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, seed + 1000));
      compare(cuda_test::run_block(t, c, a, b), cpu(c, a, b), c, t);
    }
    ++seed;
  }
}

TEST_CASE("cuda block sweep: several blocks, ragged edges, NT-Xent off-diagonal blocks",
          "[cuda][block_sweep]") {
  for (bool nt : {false, true}) {
    block_case c;
    c.nt_xent = nt;
    c.n = 4100;  // InfoNCE: blocks of 4096 and 4; NT-Xent: two views of 4100, four bands
    c.d = 24;
    c.label_smoothing = 0.05;
    for (dtype t : {dtype::f32, dtype::bf16}) {
      const auto a = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 7));
      const auto b = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 8));
      compare(cuda_test::run_block(t, c, a, b), cpu(c, a, b), c, t);
    }
  }
}

TEST_CASE("cuda block sweep: labels (multiple positives, anchors without one)",
          "[cuda][block_sweep]") {
  block_case c;
  c.n = 200;
  c.d = 32;
  c.labels_a.resize(c.n);
  c.labels_b.resize(c.n);
  for (int i = 0; i < c.n; ++i) {
    c.labels_a[i] = i % 7;
    c.labels_b[i] = (i * 3) % 9;
  }
  for (double eps : {0.0, 0.2}) {
    c.label_smoothing = eps;
    for (dtype t : all_types) {
      const auto a = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 31));
      const auto b = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 32));
      compare(cuda_test::run_block(t, c, a, b), cpu(c, a, b), c, t);
      block_case x = c;
      x.nt_xent = true;
      x.labels_b.clear();
      compare(cuda_test::run_block(t, x, a, b), cpu(x, a, b), x, t);
    }
  }
}

TEST_CASE("cuda block sweep: tau = 1e-3 and unnormalised inputs stay finite",
          "[cuda][block_sweep]") {
  block_case c;
  c.n = 96;
  c.d = 48;
  c.temperature = 1e-3;
  const auto a = cuda_test::round_to(dtype::f32, cuda_test::unit_rows(c.n, c.d, 11));
  const auto b = cuda_test::round_to(dtype::f32, cuda_test::unit_rows(c.n, c.d, 12));
  compare(cuda_test::run_block(dtype::f32, c, a, b), cpu(c, a, b), c, dtype::f32);
}

TEST_CASE("cuda block sweep: bitwise repeatable", "[cuda][block_sweep]") {
  block_case c;
  c.n = 4500;
  c.d = 64;
  for (dtype t : {dtype::f32, dtype::bf16}) {
    const auto a = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 41));
    const auto b = cuda_test::round_to(t, cuda_test::unit_rows(c.n, c.d, 42));
    const loss_result r1 = cuda_test::run_block(t, c, a, b);
    const loss_result r2 = cuda_test::run_block(t, c, a, b);
    REQUIRE(r1.error == "");
    CHECK(r1.loss == r2.loss);
    CHECK(r1.row_lse == r2.row_lse);
    CHECK(r1.grad_a == r2.grad_a);
    CHECK(r1.grad_b == r2.grad_b);
    CHECK(r1.grad_temperature == r2.grad_temperature);
  }
}

TEST_CASE("cuda block sweep: where cuBLASLt cannot serve, blocked is refused, automatic is fused",
          "[cuda][block_sweep]") {
  block_case c;
  c.n = 50;
  c.d = 3;  // 6 bytes a row in fp16: not a multiple of 16
  const auto a = cuda_test::round_to(dtype::f16, cuda_test::unit_rows(c.n, c.d, 51));
  const auto b = cuda_test::round_to(dtype::f16, cuda_test::unit_rows(c.n, c.d, 52));
  const loss_result forced = cuda_test::run_block(dtype::f16, c, a, b);
  CHECK_THAT(forced.error, Catch::Contains("not supported") || Catch::Contains("NotSupported"));
  c.mode = cuda_test::sweep::automatic;
  compare(cuda_test::run_block(dtype::f16, c, a, b), cpu(c, a, b), c, dtype::f16);
}

TEST_CASE("cuda block sweep: workspace <= 0.25 GiB at N = 32768, D = 512", "[cuda][host]") {
  for (dtype t : all_types) {
    CHECK(cuda_test::blocked_workspace_bytes(t, false, 32768, 512) <= (std::size_t(1) << 28));
    CHECK(cuda_test::blocked_workspace_bytes(t, true, 16384, 512) <= (std::size_t(1) << 28));
  }
}

namespace {

/// The CPU's message for the same bad input (host memory of the same shapes, zeros).
std::string cpu_message(const cuda_test::bad_input& c) {
  std::vector<double> a(static_cast<std::size_t>(std::max(0, c.n_a * c.d_a)), 0.5);
  std::vector<double> b(static_cast<std::size_t>(std::max(0, c.n_b * c.d_b)), 0.5);
  std::vector<std::int64_t> la(c.labels_a > 0 ? c.labels_a : 0, 0),
      lb(c.labels_b > 0 ? c.labels_b : 0, 0);
  const int gcols = c.grad_cols >= 0 ? c.grad_cols : c.d_a;
  std::vector<double> ga(static_cast<std::size_t>(c.n_a * gcols)), gb(a.size());
  const auto va = contrastive::make_view(a.empty() ? nullptr : a.data(), c.n_a, c.d_a);
  const auto vb = contrastive::make_view(b.empty() ? nullptr : b.data(), c.n_b, c.d_b);
  auto vga = contrastive::make_view(c.grad_a_is_a ? a.data() : ga.data(), c.n_a, gcols);
  auto vgb = contrastive::make_view(gb.data(), c.n_a, c.d_a);
  const auto red = c.reduction == 0   ? contrastive::loss_reduction::mean
                   : c.reduction == 1 ? contrastive::loss_reduction::sum
                                      : static_cast<contrastive::loss_reduction>(c.reduction);
  auto view = [](const std::vector<std::int64_t>& l, int count) {
    return count >= 0 ? contrastive::vector_view<const std::int64_t>(l.data(), count)
                      : contrastive::vector_view<const std::int64_t>();
  };
  try {
    if (!c.nt_xent) {
      contrastive::info_nce_options o;
      o.temperature = c.temperature;
      o.label_smoothing = c.label_smoothing;
      o.reduction = red;
      o.tile_rows = c.tile_rows;
      o.labels_a = view(la, c.labels_a);
      o.labels_b = view(lb, c.labels_b);
      if (!c.backward) {
        contrastive::info_nce_forward(va, vb, o);
      } else {
        const auto saved = contrastive::info_nce_forward(va, vb, o);
        contrastive::info_nce_backward(va, vb, saved, vga, vgb, o, c.upstream);
      }
    } else {
      contrastive::nt_xent_options o;
      o.temperature = c.temperature;
      o.label_smoothing = c.label_smoothing;
      o.reduction = red;
      o.tile_rows = c.tile_rows;
      o.labels = view(la, c.labels_a);
      if (!c.backward) {
        contrastive::nt_xent_forward(va, vb, o);
      } else {
        const auto saved = contrastive::nt_xent_forward(va, vb, o);
        contrastive::nt_xent_backward(va, vb, saved, vga, vgb, o, c.upstream);
      }
    }
  } catch (const contrastive::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

/// The message without its function name ("cuda::info_nce_forward: ..." -> "...").
std::string body(const std::string& m) {
  const auto p = m.find(": ");
  return p == std::string::npos ? m : m.substr(p + 2);
}

}  // namespace

TEST_CASE("cuda InfoNCE / NT-Xent checks: the CPU's messages for the same bad inputs",
          "[cuda][host][errors]") {
  const auto cases = cuda_test::bad_inputs();
  const auto gpu = cuda_test::cuda_messages(cases);
  REQUIRE(gpu.size() == cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string want = cpu_message(cases[i]);
    INFO(cases[i].what << (cases[i].nt_xent ? " (NT-Xent)" : " (InfoNCE)") << "\n  CPU:  " << want
                       << "\n  CUDA: " << gpu[i]);
    CHECK(want != "no exception");
    CHECK(gpu[i].rfind("cuda::", 0) == 0);
    CHECK(body(gpu[i]) == body(want));
  }
}
