// The GPU deep feature separation (cuda/feature_separation.cuh) against the CPU loss in double
// on the same rounded inputs, for every element type: the uniformity term alone (both forms,
// t = 2 and 0.3, unnormalised rows, the log-sums), the combined loss with every weight and its
// six gradients and temperature gradient, upstream, accumulate, the generic entry points; bad
// inputs with the CPU's messages. [host] tests need no GPU.

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/losses/feature_separation.hpp>

#include "cuda/feature_separation_kernels.hpp"
#include "cuda/parity.hpp"

namespace {

using cuda_test::dtype;
using cuda_test::separation_case;
using cuda_test::separation_result;
namespace c = contrastive;

separation_result cpu(const separation_case& s, const std::vector<std::vector<double>>& x) {
  separation_result r;
  const c::feature_separation_options o = cuda_test::separation_options(s);
  std::vector<std::vector<double>> g(x.size(),
                                     std::vector<double>(x[0].size(), s.accumulate ? 0.5 : 0.0));
  auto in = [&](std::size_t k) { return c::make_view(x[k].data(), s.n, s.d); };
  auto out = [&](std::size_t k) { return c::make_view(g[k].data(), s.n, s.d); };
  if (s.orthogonality_only) {
    const auto saved = c::feature_orthogonality_forward(in(0), in(1), in(2), in(3), o);
    r.loss = saved.loss;
    c::feature_orthogonality_backward(in(0), in(1), in(2), in(3), saved, out(0), out(1), out(2),
                                      out(3), o, s.upstream);
  } else if (s.in_modal_only) {
    const auto saved = c::in_modal_contrastive_forward(in(0), in(1), in(2), in(3), o);
    r.loss = saved.loss;
    r.grad_temperature = c::in_modal_contrastive_backward(in(0), in(1), in(2), in(3), saved, out(0),
                                                          out(1), out(2), out(3), o, s.upstream)
                             .temperature;
  } else if (s.uniformity_only) {
    const auto saved = c::feature_uniformity_forward(in(0), in(1), o);
    r.loss = saved.loss;
    r.log_sum_a = saved.log_sum_v;
    r.log_sum_b = saved.log_sum_u;
    c::feature_uniformity_backward(in(0), in(1), saved, out(0), out(1), o, s.upstream);
  } else {
    const auto saved = c::feature_separation_forward(in(0), in(1), in(2), in(3), in(4), in(5), o);
    r.loss = saved.loss;
    r.grad_temperature =
        c::feature_separation_backward(in(0), in(1), in(2), in(3), in(4), in(5), saved, out(0),
                                       out(1), out(2), out(3), out(4), out(5), o, s.upstream)
            .temperature;
  }
  r.grads = g;
  return r;
}

double grad_tolerance(dtype t) {
  switch (t) {
    case dtype::f32:
      return 2e-4;
    case dtype::tf32:
      return 3e-2;
    case dtype::f16:
      return 6e-3;
    case dtype::bf16:
      return 2.5e-2;
  }
  return 0;
}

std::vector<std::vector<double>> inputs(dtype t, const separation_case& s, bool unit) {
  std::vector<std::vector<double>> x;
  const int count = s.uniformity_only ? 2 : (s.orthogonality_only || s.in_modal_only ? 4 : 6);
  for (int k = 0; k < count; ++k) {
    std::vector<double> v = cuda_test::unit_rows(s.n, s.d, 40 + static_cast<unsigned>(k));
    if (!unit)
      for (std::size_t e = 0; e < v.size(); ++e) v[e] *= 0.5 + 0.1 * double(e % 7);
    x.push_back(cuda_test::round_to(t, v));
  }
  return x;
}

void check_parity(dtype t, const separation_case& s, bool unit = true) {
  const auto x = inputs(t, s, unit);
  const separation_result want = cpu(s, x);
  const separation_result got = cuda_test::run_feature_separation(t, s, x);
  INFO(cuda_test::name(t) << " n " << s.n << " uniformity_only " << s.uniformity_only
                          << " wang_isola " << s.wang_isola << " error " << got.error);
  REQUIRE(got.error.empty());
  const double tol = grad_tolerance(t);
  CHECK(got.loss == Approx(want.loss).epsilon(1e-4).margin(1e-4));
  if (s.uniformity_only) {
    CHECK(got.log_sum_a == Approx(want.log_sum_a).epsilon(1e-4).margin(1e-4));
    CHECK(got.log_sum_b == Approx(want.log_sum_b).epsilon(1e-4).margin(1e-4));
  }
  REQUIRE(got.grads.size() == want.grads.size());
  for (std::size_t k = 0; k < got.grads.size(); ++k) {
    INFO("gradient " << k);
    CHECK(cuda_test::rel_error(got.grads[k], want.grads[k], 1e-3) <= tol);
  }
  CHECK(got.grad_temperature == Approx(want.grad_temperature).epsilon(5e-2).margin(1e-3));
}

}  // namespace

TEST_CASE("cuda feature separation: the uniformity term against the CPU, every element type",
          "[cuda][feature_separation]") {
  for (dtype t : {dtype::f32, dtype::tf32, dtype::f16, dtype::bf16})
    for (bool wang : {false, true})
      for (double tt : {2.0, 0.3}) {
        separation_case s;
        s.n = 70;
        s.d = 32;
        s.uniformity_only = true;
        s.wang_isola = wang;
        s.t = tt;
        s.upstream = -1.3;
        check_parity(t, s);
        check_parity(t, s, false);  // rows of different norms: the offsets differ per row
      }
}

TEST_CASE("cuda feature separation: several blocks (N > 4096)", "[cuda][feature_separation]") {
  separation_case s;
  s.n = 4100;
  s.d = 64;
  s.uniformity_only = true;
  check_parity(dtype::f32, s);
  check_parity(dtype::bf16, s);
}

TEST_CASE("cuda feature separation: the combined loss, its six gradients and the temperature",
          "[cuda][feature_separation]") {
  for (dtype t : {dtype::f32, dtype::bf16}) {
    separation_case s;
    s.n = 50;
    s.d = 16;
    check_parity(t, s);
    s.orthogonality_weight = 0.5;
    s.contrastive_weight = 0;
    s.uniformity_weight = 2;
    s.accumulate = true;
    s.upstream = 0.7;
    check_parity(t, s);
    s.contrastive_weight = 1.5;
    s.uniformity_weight = 0;
    s.wang_isola = true;
    s.generic = true;
    check_parity(t, s);
  }
}

TEST_CASE("cuda feature separation: orthogonality and in-modal terms alone, direct and generic",
          "[cuda][feature_separation]") {
  for (dtype t : {dtype::f32, dtype::bf16})
    for (bool generic : {false, true})
      for (int term = 0; term < 2; ++term) {
        separation_case s;
        s.n = 45;
        s.d = 16;
        s.orthogonality_only = term == 0;
        s.in_modal_only = term == 1;
        s.generic = generic;
        s.upstream = 0.8;
        s.accumulate = generic;
        check_parity(t, s);
      }
}

TEST_CASE("cuda feature separation: bad inputs give the CPU's messages",
          "[cuda][feature_separation][errors]") {
  separation_case s;
  s.n = 8;
  s.d = 16;
  auto strip = [](const std::string& m) {
    const std::string prefix = "cuda::";
    return m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m;
  };
  auto cpu_message = [&](const separation_case& x, const std::vector<std::vector<double>>& in) {
    try {
      cpu(x, in);
    } catch (const c::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto x = inputs(dtype::f32, s, true);
  x[3][2 * s.d + 7] = NAN;  // b_ind, row 2
  CHECK(strip(cuda_test::run_feature_separation(dtype::f32, s, x).error) == cpu_message(s, x));
  x[3][2 * s.d + 7] = 0.25;
  for (int k = 0; k < s.d; ++k) x[4][5 * s.d + k] = 0;  // a_ind_aug, row 5 of zero norm
  CHECK(strip(cuda_test::run_feature_separation(dtype::f32, s, x).error) == cpu_message(s, x));
  separation_case u = s;
  u.uniformity_only = true;
  u.n = 1;
  u.wang_isola = true;
  const auto y = inputs(dtype::f32, u, true);
  CHECK(strip(cuda_test::run_feature_separation(dtype::f32, u, y).error) == cpu_message(u, y));
  u.n = 8;
  u.t = -1;
  const auto z = inputs(dtype::f32, u, true);
  CHECK(strip(cuda_test::run_feature_separation(dtype::f32, u, z).error) == cpu_message(u, z));
}

TEST_CASE("cuda feature separation: uniformity workspace <= 0.25 GiB at N = 32768, D = 512",
          "[cuda][host]") {
  for (dtype t : {dtype::f32, dtype::bf16})
    CHECK(cuda_test::uniformity_workspace_bytes(t, 32768, 512) <= (std::size_t(1) << 28));
}
