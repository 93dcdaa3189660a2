#include "support/test_config.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>
#include <contrastive/losses/brownian_bridge.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::brownian_bridge_loss_options;
using mat = ref::mat;
using rmd = rmat<double>;

mat unit(Eigen::Index n, Eigen::Index d, std::uint32_t seed) {
  return ref::normalized_rows(ref::random_matrix(n, d, seed));
}

struct run_result {
  double loss = 0;
  mat gv, gu, ga;
  contrastive::brownian_bridge_loss_parameter_gradients g;
};

template <class T>
run_result run(const mat& v, const mat& u, const mat& a, const brownian_bridge_loss_options& o,
               double upstream = 1.0) {
  const rmat<T> vt = v.cast<T>(), ut = u.cast<T>(), at = a.cast<T>();
  rmat<T> gv(v.rows(), v.cols()), gu(v.rows(), v.cols()), ga(v.rows(), v.cols());
  const auto saved = contrastive::brownian_bridge_loss_forward(vt, ut, at, o);
  run_result r;
  r.g = contrastive::brownian_bridge_loss_backward(vt, ut, at, saved, gv, gu, ga, o, upstream);
  r.loss = double(saved.loss);
  r.gv = gv.template cast<double>();
  r.gu = gu.template cast<double>();
  r.ga = ga.template cast<double>();
  return r;
}

double loss_of(const mat& v, const mat& u, const mat& a, const brownian_bridge_loss_options& o) {
  const rmd vr = v, ur = u, ar = a;
  return contrastive::brownian_bridge_loss_forward(vr, ur, ar, o).loss;
}

double fd_scalar(const std::function<double(double)>& f, double x0) {
  const double h = 1e-6 * std::max(1.0, std::abs(x0));
  return (f(x0 + h) - f(x0 - h)) / (2 * h);
}

bool scalar_agrees(double g, double fd) {
  return std::abs(g - fd) <= 1e-6 * std::max(1.0, std::abs(fd));
}

}  // namespace

TEST_CASE("brownian_bridge_loss: the printed closed form, corrected, equals the squared distance",
          "[brownian_bridge_loss]") {
  const Eigen::Index n = 11, d = 6;
  const mat v = unit(n, d, 1), u = unit(n, d, 2), a = unit(n, d, 3);
  for (const double t : {0.1, 0.25, 0.5, 0.9}) {
    brownian_bridge_loss_options o;
    o.bridge.t = t;
    double want = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      const double den =
          std::sqrt(t * t + (1 - t) * (1 - t) + 2 * t * (1 - t) * v.row(j).dot(u.row(j)));
      want += 2 - 2 * (t * v.row(j).dot(a.row(j)) + (1 - t) * u.row(j).dot(a.row(j))) / den;
    }
    want /= double(n);
    CAPTURE(t);
    CHECK(loss_of(v, u, a, o) == Approx(want).epsilon(1e-13));
    o.nll_weight = true;
    CHECK(loss_of(v, u, a, o) == Approx(want / (2 * t * (1 - t))).epsilon(1e-13));
  }
}

TEST_CASE("brownian_bridge_loss: zero at the bridge mean; mu(0) = u and mu(1) = v",
          "[brownian_bridge_loss]") {
  const Eigen::Index n = 8, d = 5;
  const mat v = unit(n, d, 11), u = unit(n, d, 12);
  // a = mu from the sampler without noise.
  contrastive::brownian_bridge_options so;
  so.noise = false;
  so.t = 0.3;
  const rmd vr = v, ur = u;
  rmd mu(n, d);
  contrastive::brownian_bridge_sample(vr, ur, mu, so);
  brownian_bridge_loss_options o;
  o.bridge.t = 0.3;
  const run_result r = run<double>(v, u, mat(mu), o);
  CHECK(r.loss < 1e-30);
  CHECK(r.gv.cwiseAbs().maxCoeff() < 1e-15);
  CHECK(r.ga.cwiseAbs().maxCoeff() < 1e-15);
  CHECK(std::abs(r.g.t) < 1e-15);
  o.bridge.t = 0;
  CHECK(loss_of(v, u, u, o) < 1e-30);
  CHECK(loss_of(v, u, v, o) > 0.1);
  o.bridge.t = 1;
  CHECK(loss_of(v, u, v, o) < 1e-30);
}

TEST_CASE("brownian_bridge_loss: finite differences (v, u, a, t)",
          "[brownian_bridge_loss][gradient]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{4, 9}}) {
    const mat v = ref::random_matrix(sh.n, sh.d, 21), u = ref::random_matrix(sh.n, sh.d, 22);
    const mat a = ref::random_matrix(sh.n, sh.d, 23);
    for (const bool nll : {false, true}) {
      for (const double t : {0.25, 0.7}) {
        brownian_bridge_loss_options o;
        o.bridge.t = t;
        o.nll_weight = nll;
        CAPTURE(sh.n, sh.d, nll, t);
        const run_result r = run<double>(v, u, a, o);
        CHECK(ct::gradcheck(ref::mat(v), r.gv, [&](const mat& x) { return loss_of(x, u, a, o); }));
        CHECK(ct::gradcheck(ref::mat(u), r.gu, [&](const mat& x) { return loss_of(v, x, a, o); }));
        CHECK(ct::gradcheck(ref::mat(a), r.ga, [&](const mat& x) { return loss_of(v, u, x, o); }));
        CHECK(scalar_agrees(r.g.t, fd_scalar(
                                       [&](double tt) {
                                         brownian_bridge_loss_options ot = o;
                                         ot.bridge.t = tt;
                                         return loss_of(v, u, a, ot);
                                       },
                                       t)));
      }
    }
  }
}

TEST_CASE("brownian_bridge_loss: random t per row, shared with the sampler",
          "[brownian_bridge_loss][gradient]") {
  const Eigen::Index n = 7, d = 4;
  const mat v = ref::random_matrix(n, d, 31), u = ref::random_matrix(n, d, 32),
            a = ref::random_matrix(n, d, 33);
  brownian_bridge_loss_options o;
  o.bridge.random_t = true;
  o.nll_weight = true;
  o.bridge.seed = 17;
  o.bridge.step = 3;
  o.bridge.first_id = 1000;
  const rmd vr = v, ur = u, ar = a;
  const auto saved = contrastive::brownian_bridge_loss_forward(vr, ur, ar, o);
  contrastive::brownian_bridge_options so;
  so.random_t = true;
  so.seed = 17;
  so.step = 3;
  so.first_id = 1000;
  const run_result r = run<double>(v, u, a, o);
  double total = 0;
  for (Eigen::Index j = 0; j < n; ++j) {
    const double tj = saved.t[static_cast<std::size_t>(j)];
    CHECK(tj == contrastive::brownian_bridge_time(so, j));
    // Row j alone at its t, weighted by 1/N as in the batch.
    brownian_bridge_loss_options oj = o;
    oj.bridge.random_t = false;
    oj.bridge.t = tj;
    const mat vj = v.row(j), uj = u.row(j), aj = a.row(j);
    const double fd = fd_scalar(
                          [&](double t) {
                            brownian_bridge_loss_options ot = oj;
                            ot.bridge.t = t;
                            return loss_of(vj, uj, aj, ot);
                          },
                          tj) /
                      double(n);
    CHECK(scalar_agrees(r.g.t_rows[static_cast<std::size_t>(j)], fd));
    total += r.g.t_rows[static_cast<std::size_t>(j)];
  }
  CHECK(r.g.t == Approx(total).epsilon(1e-14));
  CHECK(ct::gradcheck(ref::mat(v), r.gv, [&](const mat& x) { return loss_of(x, u, a, o); }));
}

TEST_CASE("brownian_bridge_loss: gradients to v and u equal the sampler's backward through mu",
          "[brownian_bridge_loss]") {
  const Eigen::Index n = 6, d = 5;
  const mat v = unit(n, d, 41), u = unit(n, d, 42), a = unit(n, d, 43);
  brownian_bridge_loss_options o;
  o.bridge.t = 0.4;
  const run_result r = run<double>(v, u, a, o);
  contrastive::brownian_bridge_options so;
  so.t = 0.4;
  so.noise = false;
  const rmd vr = v, ur = u;
  rmd mu(n, d), gv(n, d), gu(n, d);
  const auto saved = contrastive::brownian_bridge_sample(vr, ur, mu, so);
  const rmd gmu = -2.0 / double(n) * (a - mat(mu));
  const auto g = contrastive::brownian_bridge_sample_backward(vr, ur, saved, gmu, gv, gu, so);
  CHECK(ref::max_rel_diff(mat(gv), r.gv) < 1e-14);
  CHECK(ref::max_rel_diff(mat(gu), r.gu) < 1e-14);
  CHECK(g.t == Approx(r.g.t).epsilon(1e-13));
}

TEST_CASE("brownian_bridge_loss: detach_a_aug, accumulate, upstream, float",
          "[brownian_bridge_loss]") {
  const Eigen::Index n = 9, d = 4;
  const mat v = unit(n, d, 51), u = unit(n, d, 52), a = unit(n, d, 53);
  brownian_bridge_loss_options o;
  const run_result base = run<double>(v, u, a, o);
  o.detach_a_aug = true;
  const rmd vr = v, ur = u, ar = a;
  rmd gv = rmd::Constant(n, d, 2), gu = gv, ga = gv;
  const auto saved = contrastive::brownian_bridge_loss_forward(vr, ur, ar, o);
  contrastive::brownian_bridge_loss_backward(vr, ur, ar, saved, gv, gu, ga, o);
  CHECK(ga.cwiseAbs().maxCoeff() == 0);
  CHECK(ref::max_rel_diff(mat(gv), base.gv) < 1e-15);
  o.accumulate = true;
  gv.setConstant(2);
  ga.setConstant(2);
  const auto g = contrastive::brownian_bridge_loss_backward(vr, ur, ar, saved, gv, gu, ga, o, 3.0);
  CHECK(ref::max_rel_diff(mat(gv.array() - 2), 3 * base.gv) < 1e-14);
  CHECK((ga.array() == 2).all());
  CHECK(g.t == Approx(3 * base.g.t).epsilon(1e-14));
  brownian_bridge_loss_options of;
  const run_result f = run<float>(v, u, a, of);
  CHECK(f.loss == Approx(base.loss).epsilon(1e-6));
  CHECK(ref::max_rel_diff(f.gv, base.gv) < 1e-5);
  CHECK(ref::max_rel_diff(f.ga, base.ga) < 1e-5);
}

TEST_CASE("brownian_bridge_loss: column-major tensors give the row-major results",
          "[brownian_bridge_loss]") {
  const Eigen::Index n = 7, d = 3;
  const mat v = unit(n, d, 55), u = unit(n, d, 56), a = unit(n, d, 57);
  brownian_bridge_loss_options o;
  o.bridge.random_t = true;
  const run_result want = run<double>(v, u, a, o);
  const Eigen::MatrixXd vc = v, uc = u, ac = a;
  Eigen::MatrixXd gv(n, d), gu(n, d), ga(n, d);
  contrastive::brownian_bridge_loss_parameter_gradients g;
  const double loss =
      contrastive::brownian_bridge_loss_forward_backward(vc, uc, ac, gv, gu, ga, o, &g);
  CHECK(loss == want.loss);
  CHECK(gv == want.gv);
  CHECK(gu == want.gu);
  CHECK(ga == want.ga);
  CHECK(g.t == want.g.t);
}

TEST_CASE("brownian_bridge_loss: bad input throws contrastive::invalid_argument",
          "[brownian_bridge_loss][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 5, d = 3;
  const rmd v = unit(n, d, 61), u = unit(n, d, 62), a = unit(n, d, 63);
  rmd gv(n, d), gu(n, d), ga(n, d);
  brownian_bridge_loss_options o;
  for (const double t : {-0.5, 1.5, std::numeric_limits<double>::infinity()}) {
    brownian_bridge_loss_options bad = o;
    bad.bridge.t = t;
    CHECK_THROWS_AS(contrastive::brownian_bridge_loss_forward(v, u, a, bad), invalid_argument);
  }
  for (const double t : {0.0, 1.0}) {
    brownian_bridge_loss_options bad = o;
    bad.bridge.t = t;
    CHECK_NOTHROW(contrastive::brownian_bridge_loss_forward(v, u, a, bad));
    bad.nll_weight = true;
    CHECK_THROWS_AS(contrastive::brownian_bridge_loss_forward(v, u, a, bad), invalid_argument);
  }
  {
    brownian_bridge_loss_options bad = o;
    bad.bridge.random_t = true;
    bad.bridge.t_min = 0.0;
    bad.nll_weight = true;
    CHECK_THROWS_AS(contrastive::brownian_bridge_loss_forward(v, u, a, bad), invalid_argument);
  }
  const rmd short_a = unit(n - 1, d, 64), wide_u = unit(n, d + 1, 65);
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_forward(v, u, short_a, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_forward(v, wide_u, a, o), invalid_argument);
  for (int which = 0; which < 3; ++which) {
    for (const double bad : {0.0, std::numeric_limits<double>::quiet_NaN()}) {
      rmd x = which == 0 ? v : which == 1 ? u : a;
      if (bad == 0.0) {
        x.row(1).setZero();
      } else {
        x(1, 2) = bad;
      }
      CAPTURE(which, bad);
      CHECK_THROWS_AS(contrastive::brownian_bridge_loss_forward(
                          which == 0 ? x : v, which == 1 ? x : u, which == 2 ? x : a, o),
                      invalid_argument);
    }
  }
  const auto saved = contrastive::brownian_bridge_loss_forward(v, u, a, o);
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_backward(
                      v, u, a, saved, gv, gu, ga, o, std::numeric_limits<double>::quiet_NaN()),
                  invalid_argument);
  brownian_bridge_loss_options other = o;
  other.nll_weight = true;
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_backward(v, u, a, saved, gv, gu, ga, other),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_backward(v, u, a, saved, gv, gv, ga, o),
                  invalid_argument);
  rmd aa = a;
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_backward(v, u, aa, saved, gv, gu, aa, o),
                  invalid_argument);
  const rmd v2 = unit(n + 1, d, 66), u2 = unit(n + 1, d, 67), a2 = unit(n + 1, d, 68);
  rmd gv2(n + 1, d), gu2(n + 1, d), ga2(n + 1, d);
  CHECK_THROWS_AS(contrastive::brownian_bridge_loss_backward(v2, u2, a2, saved, gv2, gu2, ga2, o),
                  invalid_argument);
}
