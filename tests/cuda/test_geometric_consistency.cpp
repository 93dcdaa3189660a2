#include "support/test_config.hpp"

// The CUDA geometric-consistency Gram path (cuda/geometric_consistency.cuh, cuBLAS) against the
// CPU's geometric_consistency_forward / _backward: loss, Grams and both gradients (1e-10 in
// double, 1e-4 relative in float against a double reference on the same float inputs), one and
// several row chunks, strided inputs, accumulate and upstream, every gradient element written,
// bad arguments rejected. Device work runs in gc_kernels.cu.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/core/error.hpp>
#include <contrastive/losses/geometric_consistency.hpp>

#include "cuda/gc_kernels.hpp"

using contrastive::gc_algorithm;
using contrastive::geometric_consistency_options;
using contrastive::index_t;

namespace {

struct problem {
  index_t n = 0, d = 0;
  std::vector<double> v, u;
};

/// L2-normalised random rows, rounded to float when `single` (CPU and GPU see the same inputs).
problem make_problem(index_t n, index_t d, unsigned seed, bool single) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd;
  problem p;
  p.n = n;
  p.d = d;
  for (auto* x : {&p.v, &p.u}) {
    x->resize(static_cast<std::size_t>(n * d));
    for (index_t i = 0; i < n; ++i) {
      double s = 0;
      for (index_t k = 0; k < d; ++k)
        s += std::pow((*x)[static_cast<std::size_t>(i * d + k)] = nd(g), 2);
      for (index_t k = 0; k < d; ++k) {
        double& a = (*x)[static_cast<std::size_t>(i * d + k)];
        a /= std::sqrt(s);
        if (single) a = static_cast<float>(a);
      }
    }
  }
  return p;
}

struct reference {
  double loss = 0;
  std::vector<double> grams, gv, gu;
};

/// The CPU in double, on the Gram form the GPU runs for these options.
reference cpu_reference(const problem& p, geometric_consistency_options o, bool split,
                        double upstream) {
  o.algorithm = split ? gc_algorithm::gram_split : gc_algorithm::gram;
  o.accumulate = false;
  const auto vv = contrastive::make_view(p.v.data(), p.n, p.d);
  const auto vu = contrastive::make_view(p.u.data(), p.n, p.d);
  const auto saved = contrastive::geometric_consistency_forward(vv, vu, o);
  reference r;
  r.loss = saved.loss;
  r.grams = saved.grams;
  r.gv.resize(p.v.size());
  r.gu.resize(p.u.size());
  contrastive::geometric_consistency_backward(
      vv, vu, saved, contrastive::make_view(r.gv.data(), p.n, p.d),
      contrastive::make_view(r.gu.data(), p.n, p.d), o, upstream);
  return r;
}

/// max |gpu - cpu| <= tol * max(scale_floor, max |cpu|) (norm-wise relative), every element finite.
void compare(const char* what, const std::vector<double>& gpu, const std::vector<double>& cpu,
             double tol, double scale_floor) {
  REQUIRE(gpu.size() == cpu.size());
  double scale = scale_floor, worst = 0;
  int nonfinite = 0;
  std::size_t at = 0;
  for (const double c : cpu) scale = std::max(scale, std::abs(c));
  for (std::size_t e = 0; e < cpu.size(); ++e) {
    if (!std::isfinite(gpu[e])) {
      ++nonfinite;
      continue;
    }
    const double diff = std::abs(gpu[e] - cpu[e]);
    if (diff > worst) {
      worst = diff;
      at = e;
    }
  }
  INFO(what << ": " << nonfinite << " non-finite elements; largest difference " << worst << " at "
            << at << " (GPU " << gpu[at] << ", CPU " << cpu[at] << "), scale " << scale
            << ", tolerance " << tol);
  CHECK(nonfinite == 0);
  CHECK(worst <= tol * scale);
}

/// Loss and gradients are compared relative to the size of the terms they are made of (not only
/// to their own size, which cancellation can make ~0, e.g. the cross-modal term at N = 1):
/// loss scale (w_x + w_i) sum_G ||G||_F^2 / N, gradient scale 4 |upstream| (w_x + w_i) max|G| / N.
void compare_run(const gpu_gc::result& g, const reference& c, bool single,
                 const geometric_consistency_options& o, index_t n, double upstream) {
  const double tol = single ? 1e-4 : 1e-10;
  double sumsq = 0, maxg = 0;
  for (const double x : c.grams) {
    sumsq += x * x;
    maxg = std::max(maxg, std::abs(x));
  }
  const double w = o.cross_modal_weight + o.in_modal_weight;
  const double loss_scale = std::max(std::abs(c.loss), w * sumsq / double(n));
  const double grad_floor = 4 * std::abs(upstream) * w * maxg / double(n);
  INFO("loss: GPU " << g.loss << ", CPU " << c.loss << ", scale " << loss_scale);
  CHECK(std::isfinite(g.loss));
  CHECK(std::abs(g.loss - c.loss) <= tol * loss_scale);
  compare("grams", g.grams, c.grams, single ? 1e-5 : 1e-12, 1e-300);
  compare("grad_v", g.gv, c.gv, tol, grad_floor);
  compare("grad_u", g.gu, c.gu, tol, grad_floor);
}

template <class F>
void require_invalid(F&& f, const std::string& needle) {
  bool thrown = false;
  try {
    f();
  } catch (const contrastive::invalid_argument& e) {
    thrown = true;
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
  INFO("expected contrastive::invalid_argument containing \"" << needle << "\"");
  CHECK(thrown);
}

}  // namespace

TEST_CASE("cuda geometric consistency: loss, Grams and gradients equal the CPU's", "[cuda][gc]") {
  struct weights {
    double wx, wi;
    bool force_split;
  };
  const weights ws[] = {{1, 1, false}, {1, 1, true},  {1, 0.3, false},
                        {0, 1, false}, {1, 0, false}, {0.5, 0.5, false}};
  struct shape {
    index_t n, d;
  };
  for (const bool single : {false, true}) {
    for (const shape sh : {shape{300, 24}, shape{10, 40}, shape{1, 5}}) {
      const problem p = make_problem(sh.n, sh.d, 11u + static_cast<unsigned>(sh.n), single);
      for (const weights w : ws) {
        geometric_consistency_options o;
        o.cross_modal_weight = w.wx;
        o.in_modal_weight = w.wi;
        if (w.force_split) o.algorithm = gc_algorithm::gram_split;
        const bool split = w.force_split || w.wx != w.wi;
        const reference c = cpu_reference(p, o, split, 1.0);
        for (int mode = 0; mode < 5; ++mode) {
          gpu_gc::run_options r;
          r.single = single;
          r.async = mode >= 1 && mode <= 3;
          r.generic = mode == 4;  // contrastive::geometric_consistency_* on device views
          r.chunk = mode == 2 ? 64 : (mode == 3 ? 7 : 0);  // several chunks, with a remainder
          r.col_major_in = mode == 1 || mode == 3;
          r.own_handle = mode != 0 || sh.n != 300;  // the wrapper creates its own handle once
          INFO((single ? "float" : "double")
               << ", N = " << sh.n << ", D = " << sh.d << ", weights (" << w.wx << ", " << w.wi
               << ")" << (w.force_split ? ", gram_split" : "") << ", mode " << mode << " (async "
               << r.async << ", chunk " << r.chunk << ", column-major inputs " << r.col_major_in
               << ")");
          const gpu_gc::result g = gpu_gc::run(p.v, p.u, p.n, p.d, o, r);
          REQUIRE(g.status_forward == 0);
          REQUIRE(g.status_backward == 0);
          CHECK(g.split == split);
          compare_run(g, c, single, o, p.n, 1.0);
        }
      }
    }
  }
}

TEST_CASE("cuda geometric consistency: accumulate and upstream", "[cuda][gc]") {
  for (const bool single : {false, true}) {
    const problem p = make_problem(130, 16, 5u, single);
    const problem init = make_problem(130, 16, 6u, single);
    for (const double wx : {1.0, 0.25}) {
      geometric_consistency_options o;
      o.cross_modal_weight = wx;
      o.accumulate = true;
      const double upstream = -0.75;
      const reference c = cpu_reference(p, o, wx != 1.0, upstream);
      reference expect = c;
      for (std::size_t e = 0; e < c.gv.size(); ++e) {
        // What the GPU adds in T onto the T-valued initial gradients.
        expect.gv[e] = init.v[e] + c.gv[e];
        expect.gu[e] = init.u[e] + c.gu[e];
      }
      for (const bool async : {false, true}) {
        gpu_gc::run_options r;
        r.single = single;
        r.async = async;
        r.chunk = async ? 50 : 0;
        r.upstream = upstream;
        r.init_v = init.v;
        r.init_u = init.u;
        INFO((single ? "float" : "double") << ", w_x " << wx << ", async " << async);
        const gpu_gc::result g = gpu_gc::run(p.v, p.u, p.n, p.d, o, r);
        REQUIRE(g.status_forward == 0);
        REQUIRE(g.status_backward == 0);
        compare_run(g, expect, single, o, p.n, upstream);
      }
    }
  }
}

TEST_CASE("cuda geometric consistency: a larger problem (D = 256, several chunks)", "[cuda][gc]") {
  const problem p = make_problem(5000, 256, 17u, false);
  geometric_consistency_options o;
  const reference c = cpu_reference(p, o, false, 1.0);
  gpu_gc::run_options r;
  r.async = true;
  r.chunk = 1536;
  compare_run(gpu_gc::run(p.v, p.u, p.n, p.d, o, r), c, false, o, p.n, 1.0);
  r.chunk = 0;
  compare_run(gpu_gc::run(p.v, p.u, p.n, p.d, o, r), c, false, o, p.n, 1.0);
}

TEST_CASE("cuda geometric consistency: bad arguments", "[cuda][gc]") {
  const problem p = make_problem(8, 4, 3u, false);
  const int invalid = gpu_gc::invalid_value_code();
  geometric_consistency_options neg;
  neg.cross_modal_weight = -1;
  geometric_consistency_options chunk0;
  chunk0.tile_rows = 0;
  geometric_consistency_options other;
  other.in_modal_weight = 0.5;
  const gpu_gc::run_options plain;
  SECTION("throwing wrappers: the CPU's messages") {
    require_invalid([&] { gpu_gc::run(p.v, p.u, p.n, p.d, neg, plain); },
                    "'cross_modal_weight' must be finite and >= 0");
    require_invalid([&] { gpu_gc::run(p.v, p.u, p.n, p.d, chunk0, plain); },
                    "'tile_rows' must be > 0");
    std::vector<double> zero = p.u;
    for (index_t k = 0; k < p.d; ++k) zero[static_cast<std::size_t>(5 * p.d + k)] = 0;
    require_invalid([&] { gpu_gc::run(p.v, zero, p.n, p.d, {}, plain); },
                    "'b' has a row of zero norm (row 5)");
    std::vector<double> inf = p.v;
    inf[static_cast<std::size_t>(2 * p.d + 3)] = std::numeric_limits<double>::infinity();
    require_invalid([&] { gpu_gc::run(inf, p.u, p.n, p.d, {}, plain); },
                    "'a' has a non-finite value (inf) at row 2, column 3");
    gpu_gc::run_options bad_up;
    bad_up.upstream = std::nan("");
    require_invalid([&] { gpu_gc::run(p.v, p.u, p.n, p.d, {}, bad_up); },
                    "'upstream' must be finite");
    gpu_gc::run_options mismatch;
    mismatch.backward_options = &other;
    require_invalid([&] { gpu_gc::run(p.v, p.u, p.n, p.d, {}, mismatch); },
                    "'saved' was computed with other weights");
    gpu_gc::run_options rows;
    rows.grad_rows = p.n - 1;
    require_invalid([&] { gpu_gc::run(p.v, p.u, p.n, p.d, {}, rows); },
                    "'grad_a' is 7 x 4, expected 8 x 4");
  }
  SECTION("async: cudaErrorInvalidValue, no exception") {
    gpu_gc::run_options a;
    a.async = true;
    CHECK(gpu_gc::run(p.v, p.u, p.n, p.d, neg, a).status_forward == invalid);
    CHECK(gpu_gc::run(p.v, p.u, p.n, p.d, chunk0, a).status_forward == invalid);
    gpu_gc::run_options small = a;
    small.ws_delta = -256;
    CHECK(gpu_gc::run(p.v, p.u, p.n, p.d, {}, small).status_forward == invalid);
    gpu_gc::run_options no_handle = a;
    no_handle.own_handle = false;
    CHECK(gpu_gc::run(p.v, p.u, p.n, p.d, {}, no_handle).status_forward == invalid);
    gpu_gc::run_options bad_up = a;
    bad_up.upstream = std::numeric_limits<double>::infinity();
    const gpu_gc::result g = gpu_gc::run(p.v, p.u, p.n, p.d, {}, bad_up);
    CHECK(g.status_forward == 0);
    CHECK(g.status_backward == invalid);
    gpu_gc::run_options rows = a;
    rows.grad_rows = p.n + 1;
    CHECK(gpu_gc::run(p.v, p.u, p.n, p.d, {}, rows).status_backward == invalid);
  }
}
