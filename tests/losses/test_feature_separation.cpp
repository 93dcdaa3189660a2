#include "support/test_config.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>
#include <contrastive/losses/feature_separation.hpp>
#include <Eigen/QR>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::feature_separation_options;
using contrastive::uniformity_form;
using mat = ref::mat;
using rmd = rmat<double>;

mat unit(Eigen::Index n, Eigen::Index d, std::uint32_t seed) {
  return ref::normalized_rows(ref::random_matrix(n, d, seed));
}

// Dense uniformity reference (docs/feature_separation.md#uniformity), loss and gradients.
struct uni_result {
  double loss = 0;
  mat gvi, gui;
};

uni_result uniformity_ref(const mat& vi, const mat& ui, double t, bool wang) {
  const Eigen::Index n = vi.rows();
  auto kernel = [&](const mat& x) {
    mat g(n, n);
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index k = 0; k < n; ++k)
        g(j, k) = (wang && j == k) ? 0.0 : std::exp(-t * (x.row(j) - x.row(k)).squaredNorm());
    return g;
  };
  const mat gv = kernel(vi), gu = kernel(ui);
  const double sv = gv.sum(), su = gu.sum();
  uni_result r;
  auto grad = [&](const mat& x, const mat& g, double s) {
    mat out = mat::Zero(n, x.cols());
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index k = 0; k < n; ++k)
        out.row(j) += -4 * t / s * g(j, k) * (x.row(j) - x.row(k));
    return out;
  };
  if (wang) {
    const double pairs = double(n) * double(n - 1);
    r.loss = std::log(sv / pairs) + std::log(su / pairs);
    r.gvi = grad(vi, gv, sv);
    r.gui = grad(ui, gu, su);
  } else {
    r.loss = std::log((sv + su) / double(n));
    r.gvi = grad(vi, gv, sv + su);
    r.gui = grad(ui, gu, sv + su);
  }
  return r;
}

struct all_inputs {
  mat v, u, vi, ui, via, uia;
};

all_inputs make_inputs(Eigen::Index n, Eigen::Index d, std::uint32_t seed, bool normalise = true) {
  auto m = [&](std::uint32_t s) {
    return normalise ? unit(n, d, seed + s) : ref::random_matrix(n, d, seed + s);
  };
  return {m(0), m(1), m(2), m(3), m(4), m(5)};
}

struct sep_result {
  double loss = 0;
  mat g[6];
  contrastive::temperature_gradient tg;
};

template <class T>
sep_result run_sep(const all_inputs& x, const feature_separation_options& o) {
  const rmat<T> a0 = x.v.cast<T>(), a1 = x.u.cast<T>(), a2 = x.vi.cast<T>(), a3 = x.ui.cast<T>(),
                a4 = x.via.cast<T>(), a5 = x.uia.cast<T>();
  const Eigen::Index n = x.v.rows(), d = x.v.cols();
  rmat<T> g[6];
  for (auto& gi : g) gi.resize(n, d);
  sep_result r;
  r.loss = double(contrastive::feature_separation_forward_backward(
      a0, a1, a2, a3, a4, a5, g[0], g[1], g[2], g[3], g[4], g[5], o, &r.tg));
  for (int k = 0; k < 6; ++k) r.g[k] = g[k].template cast<double>();
  return r;
}

double sep_loss(const all_inputs& x, const feature_separation_options& o) {
  const rmd a0 = x.v, a1 = x.u, a2 = x.vi, a3 = x.ui, a4 = x.via, a5 = x.uia;
  return contrastive::feature_separation_forward(a0, a1, a2, a3, a4, a5, o).loss;
}

mat& member(all_inputs& x, int k) {
  mat* m[6] = {&x.v, &x.u, &x.vi, &x.ui, &x.via, &x.uia};
  return *m[k];
}

}  // namespace

TEST_CASE("feature_orthogonality: value, finite differences, zero for orthogonal heads",
          "[feature_separation]") {
  const Eigen::Index n = 6, d = 4;
  const all_inputs x = make_inputs(n, d, 10, false);
  feature_separation_options o;
  const rmd v = x.v, u = x.u, vi = x.vi, ui = x.ui;
  rmd gv(n, d), gu(n, d), gvi(n, d), gui(n, d);
  const double loss =
      contrastive::feature_orthogonality_forward_backward(v, u, vi, ui, gv, gu, gvi, gui, o);
  double want = 0;
  for (Eigen::Index j = 0; j < n; ++j)
    want += (std::pow(x.v.row(j).dot(x.vi.row(j)), 2) + std::pow(x.u.row(j).dot(x.ui.row(j)), 2)) /
            double(n);
  CHECK(loss == Approx(want).epsilon(1e-14));
  auto f = [&](const mat& a, const mat& b, const mat& c, const mat& e) {
    const rmd ar = a, br = b, cr = c, er = e;
    return contrastive::feature_orthogonality_forward(ar, br, cr, er, o).loss;
  };
  CHECK(ct::gradcheck(ref::mat(x.v), gv, [&](const mat& m) { return f(m, x.u, x.vi, x.ui); }));
  CHECK(ct::gradcheck(ref::mat(x.u), gu, [&](const mat& m) { return f(x.v, m, x.vi, x.ui); }));
  CHECK(ct::gradcheck(ref::mat(x.vi), gvi, [&](const mat& m) { return f(x.v, x.u, m, x.ui); }));
  CHECK(ct::gradcheck(ref::mat(x.ui), gui, [&](const mat& m) { return f(x.v, x.u, x.vi, m); }));
  // Orthogonal heads: zero loss and zero gradients.
  mat vo = x.vi, uo = x.ui;
  for (Eigen::Index j = 0; j < n; ++j) {
    vo.row(j) -= vo.row(j).dot(x.v.row(j)) / x.v.row(j).squaredNorm() * x.v.row(j);
    uo.row(j) -= uo.row(j).dot(x.u.row(j)) / x.u.row(j).squaredNorm() * x.u.row(j);
  }
  const rmd vor = vo, uor = uo;
  CHECK(contrastive::feature_orthogonality_forward_backward(v, u, vor, uor, gv, gu, gvi, gui, o) <
        1e-30);
  CHECK(gv.cwiseAbs().maxCoeff() < 1e-15);
  CHECK(gvi.cwiseAbs().maxCoeff() < 1e-15);
}

TEST_CASE("in_modal_contrastive: the sum of two one-direction InfoNCE losses",
          "[feature_separation]") {
  const Eigen::Index n = 13, d = 5;
  const all_inputs x = make_inputs(n, d, 20);
  for (const double tau : {std::exp(-0.3), std::exp(-2.0)}) {
    feature_separation_options o;
    o.temperature = tau;
    o.tile_rows = 4;
    o.tile_cols = 6;
    ref::options ro;
    ro.temperature = tau;
    ro.symmetric = false;
    const ref::result rv = ref::info_nce(x.vi, x.via, ro), ru = ref::info_nce(x.ui, x.uia, ro);
    const rmd vi = x.vi, ui = x.ui, via = x.via, uia = x.uia;
    rmd g0(n, d), g1(n, d), g2(n, d), g3(n, d);
    contrastive::temperature_gradient tg;
    const double loss = contrastive::in_modal_contrastive_forward_backward(vi, ui, via, uia, g0, g1,
                                                                           g2, g3, o, &tg);
    CAPTURE(tau);
    CHECK(loss == Approx(rv.loss + ru.loss).epsilon(1e-12));
    CHECK(ref::max_rel_diff(g0, rv.grad_a) < 1e-11);
    CHECK(ref::max_rel_diff(g2, rv.grad_b) < 1e-11);
    CHECK(ref::max_rel_diff(g1, ru.grad_a) < 1e-11);
    CHECK(ref::max_rel_diff(g3, ru.grad_b) < 1e-11);
    CHECK(tg.log_scale == Approx(rv.dtheta + ru.dtheta).epsilon(1e-11));
    CHECK(tg.temperature == Approx(-(rv.dtheta + ru.dtheta) / tau).epsilon(1e-11));
    // dL/dtheta by finite differences in theta = -log(tau).
    auto at = [&](double theta) {
      feature_separation_options ot = o;
      ot.temperature = std::exp(-theta);
      return double(contrastive::in_modal_contrastive_forward(vi, ui, via, uia, ot).loss);
    };
    const double theta = -std::log(tau), h = 1e-6 * std::max(1.0, theta);
    CHECK(tg.log_scale == Approx((at(theta + h) - at(theta - h)) / (2 * h)).epsilon(1e-6));
  }
}

TEMPLATE_TEST_CASE("feature_uniformity: tiled sweep equals the dense reference",
                   "[feature_separation]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 2e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{70, 3}}) {
    const mat vi = unit(sh.n, sh.d, 30 + std::uint32_t(sh.n)),
              ui = unit(sh.n, sh.d, 31 + std::uint32_t(sh.n));
    for (const bool wang : {false, true}) {
      if (wang && sh.n < 2) continue;
      for (const double t : {2.0, 0.5}) {
        const uni_result want = uniformity_ref(vi, ui, t, wang);
        for (const Eigen::Index tile :
             {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
          feature_separation_options o;
          o.uniformity_t = t;
          o.uniformity = wang ? uniformity_form::wang_isola : uniformity_form::literal;
          o.tile_rows = tile;
          o.tile_cols = tile == 3 ? 7 : tile;
          const rmat<TestType> a = vi.cast<TestType>(), b = ui.cast<TestType>();
          rmat<TestType> ga(sh.n, sh.d), gb(sh.n, sh.d);
          const double loss =
              double(contrastive::feature_uniformity_forward_backward(a, b, ga, gb, o));
          CAPTURE(sh.n, sh.d, wang, t, tile);
          CHECK(std::abs(loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
          CHECK(ref::max_rel_diff(ga.template cast<double>(), want.gvi) <= tol * 10);
          CHECK(ref::max_rel_diff(gb.template cast<double>(), want.gui) <= tol * 10);
        }
      }
    }
  }
}

TEST_CASE("feature_uniformity: identities and finite differences",
          "[feature_separation][gradient]") {
  // Identical points: log(2N) (literal) and 0 (wang_isola).
  const Eigen::Index n = 9, d = 4;
  const mat one = unit(1, d, 40);
  const rmd same = one.replicate(n, 1);
  feature_separation_options o;
  o.tile_rows = o.tile_cols = 4;
  CHECK(contrastive::feature_uniformity_forward(same, same, o).loss ==
        Approx(std::log(2.0 * n)).epsilon(1e-14));
  o.uniformity = uniformity_form::wang_isola;
  CHECK(std::abs(contrastive::feature_uniformity_forward(same, same, o).loss) < 1e-14);
  // Far-apart, non-normalised points (every off-diagonal G underflows in a naive sum).
  rmd far = rmd::Zero(3, 1);
  far << 1.0, 40.0, -40.0;
  const double lw = contrastive::feature_uniformity_forward(far, far, o).loss;
  CHECK(std::isfinite(lw));
  // log S = -2 * 39^2 + log 2 + log(1 + e^-320 + ...): every G underflows in double, not the LSE.
  CHECK(lw == Approx(2 * (-2.0 * 39 * 39 + std::log(2.0) - std::log(6.0))).epsilon(1e-12));
  // Finite differences on raw inputs, both forms.
  for (const bool wang : {false, true}) {
    const mat vi = ref::random_matrix(5, 3, 41, 0.5), ui = ref::random_matrix(5, 3, 42, 0.5);
    feature_separation_options of;
    of.uniformity = wang ? uniformity_form::wang_isola : uniformity_form::literal;
    of.tile_rows = 2;
    of.tile_cols = 3;
    const rmd a = vi, b = ui;
    rmd ga(5, 3), gb(5, 3);
    contrastive::feature_uniformity_forward_backward(a, b, ga, gb, of);
    auto f = [&](const mat& x, const mat& y) {
      const rmd xr = x, yr = y;
      return contrastive::feature_uniformity_forward(xr, yr, of).loss;
    };
    CAPTURE(wang);
    CHECK(ct::gradcheck(ref::mat(vi), ga, [&](const mat& m) { return f(m, ui); }));
    CHECK(ct::gradcheck(ref::mat(ui), gb, [&](const mat& m) { return f(vi, m); }));
  }
}

TEST_CASE(
    "feature_separation: the weighted sum of its terms, finite differences for all six inputs",
    "[feature_separation][gradient]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{7, 3}}) {
    for (const bool wang : {false, true}) {
      if (wang && sh.n < 2) continue;
      all_inputs x = make_inputs(sh.n, sh.d, 50, false);
      feature_separation_options o;
      o.orthogonality_weight = 0.7;
      o.contrastive_weight = 1.3;
      o.uniformity_weight = 0.4;
      o.temperature = std::exp(-0.3);
      o.uniformity = wang ? uniformity_form::wang_isola : uniformity_form::literal;
      o.tile_rows = o.tile_cols = 3;
      CAPTURE(sh.n, sh.d, wang);
      const sep_result r = run_sep<double>(x, o);
      const rmd v = x.v, u = x.u, vi = x.vi, ui = x.ui, via = x.via, uia = x.uia;
      const double want =
          0.7 * contrastive::feature_orthogonality_forward(v, u, vi, ui, o).loss +
          1.3 * contrastive::in_modal_contrastive_forward(vi, ui, via, uia, o).loss +
          0.4 * contrastive::feature_uniformity_forward(vi, ui, o).loss;
      CHECK(r.loss == Approx(want).epsilon(1e-13));
      for (int k = 0; k < 6; ++k) {
        CAPTURE(k);
        CHECK(ct::gradcheck(mat(member(x, k)), r.g[k], [&](const mat& m) {
          all_inputs y = x;
          member(y, k) = m;
          return sep_loss(y, o);
        }));
      }
    }
  }
}

TEST_CASE("feature_separation: invariance under a joint rotation; weights, accumulate, float",
          "[feature_separation]") {
  const Eigen::Index n = 11, d = 5;
  const all_inputs x = make_inputs(n, d, 60);
  const mat rot = Eigen::HouseholderQR<mat>(ref::random_matrix(d, d, 61)).householderQ();
  for (const bool wang : {false, true}) {
    feature_separation_options o;
    o.uniformity = wang ? uniformity_form::wang_isola : uniformity_form::literal;
    o.tile_rows = o.tile_cols = 4;
    const all_inputs xr = {x.v * rot, x.u * rot, x.vi * rot, x.ui * rot, x.via * rot, x.uia * rot};
    const rmd v = x.v, u = x.u, vi = x.vi, ui = x.ui;
    const rmd rv = xr.v, ru = xr.u, rvi = xr.vi, rui = xr.ui, rvia = xr.via, ruia = xr.uia;
    CHECK(contrastive::feature_orthogonality_forward(rv, ru, rvi, rui, o).loss ==
          Approx(contrastive::feature_orthogonality_forward(v, u, vi, ui, o).loss).epsilon(1e-12));
    CHECK(contrastive::in_modal_contrastive_forward(rvi, rui, rvia, ruia, o).loss ==
          Approx(contrastive::in_modal_contrastive_forward(vi, ui, rmd(x.via), rmd(x.uia), o).loss)
              .epsilon(1e-12));
    CHECK(contrastive::feature_uniformity_forward(rvi, rui, o).loss ==
          Approx(contrastive::feature_uniformity_forward(vi, ui, o).loss).epsilon(1e-12));
    CHECK(sep_loss(xr, o) == Approx(sep_loss(x, o)).epsilon(1e-12));
  }
  // Zero weights skip a term; accumulate adds; upstream scales.
  feature_separation_options o;
  o.tile_rows = o.tile_cols = 4;
  const sep_result full = run_sep<double>(x, o);
  feature_separation_options only_ortho = o;
  only_ortho.contrastive_weight = 0;
  only_ortho.uniformity_weight = 0;
  const sep_result ortho = run_sep<double>(x, only_ortho);
  CHECK(ortho.g[4].cwiseAbs().maxCoeff() == 0);  // via: only the contrastive term
  CHECK(ortho.tg.log_scale == 0);
  const rmd v = x.v, u = x.u, vi = x.vi, ui = x.ui;
  CHECK(ortho.loss ==
        Approx(contrastive::feature_orthogonality_forward(v, u, vi, ui, o).loss).epsilon(1e-14));
  {
    const rmd a0 = x.v, a1 = x.u, a2 = x.vi, a3 = x.ui, a4 = x.via, a5 = x.uia;
    rmd g[6];
    for (auto& gi : g) gi = rmd::Ones(n, d);
    feature_separation_options acc = o;
    acc.accumulate = true;
    const auto saved = contrastive::feature_separation_forward(a0, a1, a2, a3, a4, a5, acc);
    const auto tg = contrastive::feature_separation_backward(
        a0, a1, a2, a3, a4, a5, saved, g[0], g[1], g[2], g[3], g[4], g[5], acc, 0.5);
    for (int k = 0; k < 6; ++k)
      CHECK(ref::max_rel_diff(mat(g[k].array() - 1), 0.5 * full.g[k]) < 1e-12);
    CHECK(tg.log_scale == Approx(0.5 * full.tg.log_scale).epsilon(1e-12));
  }
  const sep_result f = run_sep<float>(x, o);
  CHECK(f.loss == Approx(full.loss).epsilon(1e-5));
  for (int k = 0; k < 6; ++k) CHECK(ref::max_rel_diff(f.g[k], full.g[k]) < 2e-4);
}

TEST_CASE("feature_separation: column-major and strided tensors give the row-major results",
          "[feature_separation]") {
  const Eigen::Index n = 9, d = 4;
  const all_inputs x = make_inputs(n, d, 75);
  feature_separation_options o;
  o.tile_rows = o.tile_cols = 4;
  const sep_result want = run_sep<double>(x, o);
  const Eigen::MatrixXd a0 = x.v, a1 = x.u, a2 = x.vi, a3 = x.ui, a4 = x.via,
                        a5 = x.uia;  // column-major
  Eigen::MatrixXd big(n, 3 * d);
  big.setConstant(5);
  Eigen::MatrixXd g0(n, d), g1(n, d), g3(n, d), g4(n, d), g5(n, d);
  const double loss = contrastive::feature_separation_forward_backward(
      a0, a1, a2, a3, a4, a5, g0, g1, big.middleCols(d, d), g3, g4, g5, o);
  CHECK(loss == Approx(want.loss).epsilon(1e-13));
  CHECK(ref::max_rel_diff(g0, want.g[0]) < 1e-13);
  CHECK(ref::max_rel_diff(big.middleCols(d, d), want.g[2]) < 1e-13);
  CHECK(ref::max_rel_diff(g3, want.g[3]) < 1e-13);
  CHECK(ref::max_rel_diff(g5, want.g[5]) < 1e-13);
  CHECK((big.leftCols(d).array() == 5).all());
  CHECK((big.rightCols(d).array() == 5).all());
}

TEST_CASE("feature_separation: results do not depend on the thread count", "[feature_separation]") {
  const Eigen::Index n = 300, d = 16;  // above the size where threads are used at all
  const all_inputs x = make_inputs(n, d, 70);
  feature_separation_options o;
  o.tile_rows = o.tile_cols = 16;
  o.num_threads = 1;
  const sep_result r1 = run_sep<float>(x, o);
  for (const int threads : {2, 3}) {
    o.num_threads = threads;
    const sep_result r2 = run_sep<float>(x, o);
    CHECK(r2.loss == r1.loss);
    for (int k = 0; k < 6; ++k) CHECK(r2.g[k] == r1.g[k]);
  }
}

TEST_CASE("feature_separation: bad input throws contrastive::invalid_argument",
          "[feature_separation][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 6, d = 3;
  const all_inputs x = make_inputs(n, d, 80);
  const rmd v = x.v, u = x.u, vi = x.vi, ui = x.ui, via = x.via, uia = x.uia;
  rmd g0(n, d), g1(n, d), g2(n, d), g3(n, d), g4(n, d), g5(n, d);
  feature_separation_options o;
  // Shapes.
  const rmd short_u = unit(n - 1, d, 81), wide_ui = unit(n, d + 1, 82);
  CHECK_THROWS_AS(contrastive::feature_separation_forward(v, short_u, vi, ui, via, uia, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::feature_separation_forward(v, u, vi, wide_ui, via, uia, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::feature_orthogonality_forward(v, short_u, vi, ui, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::in_modal_contrastive_forward(vi, ui, via, short_u, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::feature_uniformity_forward(vi, wide_ui, o), invalid_argument);
  // Zero-norm rows and non-finite values in each input.
  for (int k = 0; k < 6; ++k) {
    for (const double bad :
         {0.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
      all_inputs y = x;
      if (bad == 0.0) {
        member(y, k).row(4).setZero();
      } else {
        member(y, k)(4, 1) = bad;
      }
      CAPTURE(k, bad);
      CHECK_THROWS_AS(sep_loss(y, o), invalid_argument);
    }
  }
  rmd zero_vi = vi;
  zero_vi.row(0).setZero();
  CHECK_THROWS_AS(contrastive::feature_uniformity_forward(zero_vi, ui, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::feature_orthogonality_forward(v, u, zero_vi, ui, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::in_modal_contrastive_forward(zero_vi, ui, via, uia, o),
                  invalid_argument);
  try {
    contrastive::feature_uniformity_forward(zero_vi, ui, o);
    FAIL("no exception");
  } catch (const invalid_argument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("feature_uniformity_forward") != std::string::npos);
    CHECK(msg.find("'a_ind'") != std::string::npos);
    CHECK(msg.find("row 0") != std::string::npos);
  }
  // Options.
  for (int which = 0; which < 5; ++which) {
    feature_separation_options bad = o;
    if (which == 0) bad.orthogonality_weight = -1;
    if (which == 1) bad.uniformity_t = 0;
    if (which == 2) bad.temperature = 0;
    if (which == 3) bad.tile_rows = 0;
    if (which == 4) bad.contrastive_weight = std::numeric_limits<double>::quiet_NaN();
    CAPTURE(which);
    CHECK_THROWS_AS(contrastive::feature_separation_forward(v, u, vi, ui, via, uia, bad),
                    invalid_argument);
  }
  feature_separation_options wang = o;
  wang.uniformity = uniformity_form::wang_isola;
  const rmd one_vi = unit(1, d, 83), one_ui = unit(1, d, 84);
  CHECK_THROWS_AS(contrastive::feature_uniformity_forward(one_vi, one_ui, wang), invalid_argument);
  // Backward: saved state, upstream, outputs.
  const auto saved = contrastive::feature_separation_forward(v, u, vi, ui, via, uia, o);
  CHECK_NOTHROW(contrastive::feature_separation_backward(v, u, vi, ui, via, uia, saved, g0, g1, g2,
                                                         g3, g4, g5, o));
  feature_separation_options other = o;
  other.uniformity_weight = 2;
  CHECK_THROWS_AS(contrastive::feature_separation_backward(v, u, vi, ui, via, uia, saved, g0, g1,
                                                           g2, g3, g4, g5, other),
                  invalid_argument);
  other = o;
  other.uniformity = uniformity_form::wang_isola;
  CHECK_THROWS_AS(contrastive::feature_separation_backward(v, u, vi, ui, via, uia, saved, g0, g1,
                                                           g2, g3, g4, g5, other),
                  invalid_argument);
  CHECK_THROWS_AS(
      contrastive::feature_separation_backward(v, u, vi, ui, via, uia, saved, g0, g1, g2, g3, g4,
                                               g5, o, std::numeric_limits<double>::infinity()),
      invalid_argument);
  CHECK_THROWS_AS(contrastive::feature_separation_backward(v, u, vi, ui, via, uia, saved, g0, g0,
                                                           g2, g3, g4, g5, o),
                  invalid_argument);
  rmd vv = v;
  CHECK_THROWS_AS(contrastive::feature_separation_backward(vv, u, vi, ui, via, uia, saved, vv, g1,
                                                           g2, g3, g4, g5, o),
                  invalid_argument);
  rmd small(n, d - 1);
  CHECK_THROWS_AS(contrastive::feature_separation_backward(v, u, vi, ui, via, uia, saved, g0, g1,
                                                           g2, g3, g4, small, o),
                  invalid_argument);
}
