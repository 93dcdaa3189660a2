#include "support/test_config.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

#include "support/reference.hpp"

// The debiased (tau+) and hard-negative (beta) options of NT-Xent and InfoNCE/CLIP
// (losses/debiased_negatives.hpp).

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::info_nce_options;
using contrastive::nt_xent_options;

struct run_result {
  double loss;
  ref::mat ga, gb;
  double dtheta;
};

// The authors' formulas over the rows of a dense S, written with plain exponentials: anchor i has
// the positive column pos(i) and the negatives neg(i, j). Returns the mean or summed loss, adds
// w * dl/dS into g and the explicit temperature term of a clamped anchor into *dtheta_extra.
double naive_rows(const ref::mat& s, const std::function<Eigen::Index(Eigen::Index)>& pos,
                  const std::function<bool(Eigen::Index, Eigen::Index)>& neg, double lambda,
                  double tau_plus, double beta, double w, ref::mat& g, double* dtheta_extra) {
  double loss = 0;
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    const double e_p = std::exp(s(i, pos(i)));
    double m = 0, sum_imp = 0, sum_imp_neg = 0;
    for (Eigen::Index j = 0; j < s.cols(); ++j) {
      if (!neg(i, j)) continue;
      m += 1;
      const double e = std::exp(s(i, j)), imp = std::pow(e, beta);
      sum_imp += imp;
      sum_imp_neg += imp * e;
    }
    const double r = m * sum_imp_neg / sum_imp;  // beta = 0: sum of e^{s}
    double ng = (r - tau_plus * m * e_p) / (1 - tau_plus);
    const double floor = m * std::exp(-lambda);
    const bool clamped = ng < floor;
    if (clamped) ng = floor;
    const double dd = e_p + ng;
    loss += w * -std::log(e_p / dd);
    g(i, pos(i)) +=
        w * (e_p / dd - 1 - (clamped ? 0.0 : tau_plus * m * e_p / ((1 - tau_plus) * dd)));
    if (clamped) {
      *dtheta_extra += w * -lambda * floor / dd;
      continue;
    }
    for (Eigen::Index j = 0; j < s.cols(); ++j) {
      if (!neg(i, j)) continue;
      const double e = std::exp(s(i, j)), imp = std::pow(e, beta);
      const double dr =
          m * ((1 + beta) * imp * e / sum_imp - beta * imp * sum_imp_neg / (sum_imp * sum_imp));
      g(i, j) += w * dr / ((1 - tau_plus) * dd);
    }
  }
  return loss;
}

ref::result naive_nt_xent(const ref::mat& a, const ref::mat& b, const nt_xent_options& o) {
  const Eigen::Index n = a.rows(), n2 = 2 * n;
  ref::mat z(n2, a.cols());
  z << a, b;
  const double lambda = 1 / o.temperature;
  const ref::mat s = lambda * z * z.transpose();
  ref::mat g = ref::mat::Zero(n2, n2);
  const double w = o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  double extra = 0;
  ref::result r;
  r.loss = naive_rows(
      s, [&](Eigen::Index i) { return (i + n) % n2; },
      [&](Eigen::Index i, Eigen::Index j) { return j != i && j != (i + n) % n2; }, lambda,
      o.debias_tau_plus, o.hard_negative_beta, w, g, &extra);
  const ref::mat dz = lambda * (g + g.transpose()) * z;
  r.grad_a = dz.topRows(n);
  r.grad_b = dz.bottomRows(n);
  r.dtheta = (g.array() * s.array()).sum() + extra;
  return r;
}

ref::result naive_info_nce(const ref::mat& a, const ref::mat& b, const info_nce_options& o) {
  const Eigen::Index n = a.rows();
  const double lambda = 1 / o.temperature;
  const ref::mat s = lambda * a * b.transpose();
  const double w = (o.symmetric ? 0.5 : 1.0) *
                   (o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(n) : 1.0);
  auto diag = [](Eigen::Index i) { return i; };
  auto off = [](Eigen::Index i, Eigen::Index j) { return i != j; };
  ref::mat g = ref::mat::Zero(n, n);
  double extra = 0;
  ref::result r;
  r.loss = naive_rows(s, diag, off, lambda, o.debias_tau_plus, o.hard_negative_beta, w, g, &extra);
  if (o.symmetric) {
    ref::mat gt = ref::mat::Zero(n, n);
    const ref::mat st = s.transpose();
    r.loss +=
        naive_rows(st, diag, off, lambda, o.debias_tau_plus, o.hard_negative_beta, w, gt, &extra);
    g += gt.transpose();
  }
  r.grad_a = lambda * g * b;
  r.grad_b = lambda * g.transpose() * a;
  r.dtheta = (g.array() * s.array()).sum() + extra;
  return r;
}

template <class T, class O>
run_result run(const ref::mat& a, const ref::mat& b, const O& o) {
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::temperature_gradient tg;
  T loss;
  if constexpr (std::is_same<O, nt_xent_options>::value)
    loss = contrastive::nt_xent_forward_backward(at, bt, ga, gb, o, &tg);
  else
    loss = contrastive::info_nce_forward_backward(at, bt, ga, gb, o, &tg);
  return {double(loss), ga.template cast<double>(), gb.template cast<double>(), tg.log_scale};
}

template <class O>
double loss_only(const ref::mat& a, const ref::mat& b, const O& o) {
  const rmat<double> ar = a, br = b;
  if constexpr (std::is_same<O, nt_xent_options>::value)
    return contrastive::nt_xent_forward(ar, br, o).loss;
  else
    return contrastive::info_nce_forward(ar, br, o).loss;
}

struct setting {
  double tau_plus, beta;
};
const setting kSettings[] = {{0.1, 0}, {0, 0.5}, {0.1, 1.0}, {0.05, 2.0}};

template <class O>
void check_against(const run_result& got, const ref::result& want, double tol) {
  CHECK(std::abs(got.loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
  CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= tol * 10);
  CHECK(ref::max_rel_diff(got.gb, want.grad_b) <= tol * 10);
  CHECK(std::abs(got.dtheta - want.dtheta) <= tol * 10 * std::max(1.0, std::abs(want.dtheta)));
}

}  // namespace

TEMPLATE_TEST_CASE("debiased negatives: NT-Xent tiled equals the naive reference",
                   "[debiased][nt_xent]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  for (const Eigen::Index n : {2, 5, 37, 130}) {
    const Eigen::Index d = 8;
    const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 13 + n));
    const ref::mat b = ref::normalized_rows(a + 0.5 * ref::random_matrix(n, d, 17 + n));
    for (const setting st : kSettings) {
      for (const auto red : {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
        nt_xent_options o;
        o.temperature = 0.5;
        o.debias_tau_plus = st.tau_plus;
        o.hard_negative_beta = st.beta;
        o.reduction = red;
        const ref::result want = naive_nt_xent(a, b, o);
        for (const Eigen::Index tile : {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), n}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(n, st.tau_plus, st.beta, tile);
          check_against<nt_xent_options>(run<TestType>(a, b, o), want, tol);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("debiased negatives: InfoNCE and CLIP tiled equal the naive reference",
                   "[debiased][info_nce]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  for (const Eigen::Index n : {2, 5, 37, 130}) {
    const Eigen::Index d = 8;
    const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 23 + n));
    const ref::mat b = ref::normalized_rows(a + 0.5 * ref::random_matrix(n, d, 27 + n));
    for (const setting st : kSettings) {
      for (const bool sym : {false, true}) {
        info_nce_options o;
        o.temperature = 0.5;
        o.symmetric = sym;
        o.debias_tau_plus = st.tau_plus;
        o.hard_negative_beta = st.beta;
        const ref::result want = naive_info_nce(a, b, o);
        for (const Eigen::Index tile : {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), n}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(n, sym, st.tau_plus, st.beta, tile);
          check_against<info_nce_options>(run<TestType>(a, b, o), want, tol);
        }
      }
    }
  }
}

TEST_CASE("debiased negatives: finite-difference gradients in double", "[debiased][gradcheck]") {
  for (const Eigen::Index n : {2, 5}) {
    for (const setting st : kSettings) {
      for (const double theta : {0.3, 1.0}) {
        const ref::mat a = ref::random_matrix(n, 3, 41 + n, 0.6);
        const ref::mat b = ref::random_matrix(n, 3, 43 + n, 0.6);
        CAPTURE(n, st.tau_plus, st.beta, theta);
        const double h = 1e-6;
        {
          nt_xent_options o;
          o.temperature = std::exp(-theta);
          o.debias_tau_plus = st.tau_plus;
          o.hard_negative_beta = st.beta;
          o.tile_rows = o.tile_cols = 3;
          const run_result r = run<double>(a, b, o);
          CHECK(ct::gradcheck(ref::mat(a), r.ga,
                              [&](const ref::mat& x) { return loss_only(x, b, o); }));
          CHECK(ct::gradcheck(ref::mat(b), r.gb,
                              [&](const ref::mat& x) { return loss_only(a, x, o); }));
          nt_xent_options op = o, om = o;
          op.temperature = std::exp(-(theta + h));
          om.temperature = std::exp(-(theta - h));
          const double fd = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
          CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
        }
        for (const bool sym : {false, true}) {
          info_nce_options o;
          o.temperature = std::exp(-theta);
          o.symmetric = sym;
          o.debias_tau_plus = st.tau_plus;
          o.hard_negative_beta = st.beta;
          o.tile_rows = o.tile_cols = 2;
          const run_result r = run<double>(a, b, o);
          CHECK(ct::gradcheck(ref::mat(a), r.ga,
                              [&](const ref::mat& x) { return loss_only(x, b, o); }));
          CHECK(ct::gradcheck(ref::mat(b), r.gb,
                              [&](const ref::mat& x) { return loss_only(a, x, o); }));
          info_nce_options op = o, om = o;
          op.temperature = std::exp(-(theta + h));
          om.temperature = std::exp(-(theta - h));
          const double fd = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
          CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
        }
      }
    }
  }
}

TEST_CASE("debiased negatives: the clamp", "[debiased][clamp]") {
  // Aligned views and a large tau+: R - tau+ M e^{s_p} < 0 for every anchor, so Ng sits at its
  // floor M e^{-lambda}: the loss is log(1 + M e^{-lambda - s_p}), the negatives get no gradient.
  const Eigen::Index n = 6;
  const ref::mat a = ref::mat::Identity(n, n + 1);
  nt_xent_options o;
  o.temperature = 0.5;
  o.debias_tau_plus = 0.9;
  o.tile_rows = o.tile_cols = 4;
  const double lambda = 2, m = 2.0 * double(n) - 2;
  const auto saved = contrastive::nt_xent_forward(rmat<double>(a), rmat<double>(a), o);
  CHECK(saved.weighting.clamped == 2 * n);
  CHECK(double(saved.loss) == Approx(std::log1p(m * std::exp(-2 * lambda))).epsilon(1e-13));
  const run_result r = run<double>(a, a, o);
  const ref::result want = naive_nt_xent(a, a, o);
  CHECK(ref::max_rel_diff(r.ga, want.grad_a) < 1e-12);
  CHECK(r.dtheta == Approx(want.dtheta).epsilon(1e-12));
  // Away from the clamp, a finite difference across theta agrees with the temperature gradient.
  const ref::mat b = ref::random_matrix(n, n + 1, 5, 0.5);
  const double h = 1e-6, theta = std::log(2.0);
  nt_xent_options op = o, om = o;
  op.temperature = std::exp(-(theta + h));
  om.temperature = std::exp(-(theta - h));
  const run_result rc = run<double>(a, a + b, o);
  CHECK(rc.dtheta ==
        Approx((loss_only(a, a + b, op) - loss_only(a, a + b, om)) / (2 * h)).epsilon(1e-6));
}

TEST_CASE("debiased negatives: identities", "[debiased][identity]") {
  const Eigen::Index n = 9, d = 5;
  const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 61));
  const ref::mat b = ref::normalized_rows(ref::random_matrix(n, d, 62));
  SECTION("a tiny tau+ approaches the plain loss (the floor never binds on unit rows)") {
    nt_xent_options o;
    o.tile_rows = o.tile_cols = 4;
    const run_result plain = run<double>(a, b, o);
    o.debias_tau_plus = 1e-9;
    const run_result deb = run<double>(a, b, o);
    CHECK(deb.loss == Approx(plain.loss).epsilon(1e-7));
    CHECK(ref::max_rel_diff(deb.ga, plain.ga) < 1e-6);
    info_nce_options oi;
    oi.tile_rows = oi.tile_cols = 4;
    const run_result iplain = run<double>(a, b, oi);
    oi.debias_tau_plus = 1e-9;
    CHECK(run<double>(a, b, oi).loss == Approx(iplain.loss).epsilon(1e-7));
  }
  SECTION("all rows equal: every negative is the same, R = M e^{s}") {
    ref::mat e(n, d);
    e.rowwise() = a.row(0);
    nt_xent_options o;
    o.debias_tau_plus = 0.1;
    o.hard_negative_beta = 1.5;
    o.temperature = 0.5;
    // Ng = (M e^l - 0.1 M e^l) / 0.9 = M e^l, so l_i = log(1 + M) = log(2N - 1).
    CHECK(run<double>(e, e, o).loss == Approx(std::log(2.0 * double(n) - 1)).epsilon(1e-12));
  }
  SECTION("beta sharpens the weights towards the hardest negative") {
    info_nce_options o;
    o.symmetric = false;
    o.tile_rows = o.tile_cols = 4;
    double prev = -1;
    for (const double beta : {0.0, 1.0, 4.0}) {
      o.hard_negative_beta = beta;
      o.debias_tau_plus = beta == 0 ? 1e-12 : 0;
      const double l = run<double>(a, b, o).loss;
      CHECK(l > prev);  // the reweighted negative mass grows with beta
      prev = l;
    }
  }
}

TEST_CASE("debiased negatives: threads, cached mode and workspace", "[debiased][threads]") {
  const Eigen::Index n = 157, d = 48;
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 5)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 6)).cast<float>();
  nt_xent_options o;
  o.debias_tau_plus = 0.1;
  o.hard_negative_beta = 1;
  o.tile_rows = o.tile_cols = 16;
  o.num_threads = 1;
  rmat<float> ga1(n, d), gb1(n, d);
  const float l1 = contrastive::nt_xent_forward_backward(a, b, ga1, gb1, o);
  info_nce_options oi;
  oi.debias_tau_plus = 0.1;
  oi.hard_negative_beta = 1;
  oi.tile_rows = oi.tile_cols = 16;
  oi.num_threads = 1;
  rmat<float> ha1(n, d), hb1(n, d);
  const float li1 = contrastive::info_nce_forward_backward(a, b, ha1, hb1, oi);
  for (const int threads : {2, 3}) {
    for (const bool cached : {false, true}) {
      CAPTURE(threads, cached);
      nt_xent_options ot = o;
      ot.num_threads = threads;
      ot.cache_logits = cached;
      rmat<float> ga(n, d), gb(n, d);
      CHECK(contrastive::nt_xent_forward_backward(a, b, ga, gb, ot) == l1);
      CHECK((ga.array() == ga1.array()).all());
      CHECK((gb.array() == gb1.array()).all());
      info_nce_options oti = oi;
      oti.num_threads = threads;
      oti.cache_logits = cached;
      CHECK(contrastive::info_nce_forward_backward(a, b, ga, gb, oti) == li1);
      CHECK((ga.array() == ha1.array()).all());
      CHECK((gb.array() == hb1.array()).all());
    }
  }
  std::vector<unsigned char> ws(contrastive::nt_xent_workspace_bytes<float>(n, d, o));
  rmat<float> ga(n, d), gb(n, d);
  CHECK(contrastive::nt_xent_forward_backward(a, b, ga, gb, o, nullptr, {ws.data(), ws.size()}) ==
        l1);
  std::vector<unsigned char> wsi(contrastive::info_nce_workspace_bytes<float>(n, d, oi));
  CHECK(contrastive::info_nce_forward_backward(a, b, ga, gb, oi, nullptr,
                                               {wsi.data(), wsi.size()}) == li1);
}

TEST_CASE("debiased negatives: bad input throws and leaves the outputs untouched",
          "[debiased][errors]") {
  const Eigen::Index n = 4, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  rmat<double> pa = rmat<double>::Constant(n, d, 3.5), pb = pa;
  auto untouched = [&] { return (pa.array() == 3.5).all() && (pb.array() == 3.5).all(); };
  nt_xent_options o;
  o.debias_tau_plus = 1;
  CHECK_THROWS_WITH(contrastive::nt_xent_forward_backward(a, b, pa, pb, o),
                    "nt_xent_forward: 'debias_tau_plus' must lie in [0, 1), got 1");
  o.debias_tau_plus = 0.1;
  o.hard_negative_beta = -1;
  CHECK_THROWS_WITH(contrastive::nt_xent_forward_backward(a, b, pa, pb, o),
                    "nt_xent_forward: 'hard_negative_beta' must be finite and >= 0, got -1");
  o.hard_negative_beta = 0;
  o.label_smoothing = 0.1;
  CHECK_THROWS_WITH(contrastive::nt_xent_forward_backward(a, b, pa, pb, o),
                    "nt_xent_forward: 'debias_tau_plus' / 'hard_negative_beta' cannot be combined "
                    "with 'label_smoothing'");
  std::vector<std::int64_t> y(n, 0);
  info_nce_options oi;
  oi.hard_negative_beta = 1;
  oi.labels_a = y;
  oi.labels_b = y;
  CHECK_THROWS_WITH(contrastive::info_nce_forward_backward(a, b, pa, pb, oi),
                    "info_nce_forward: 'debias_tau_plus' / 'hard_negative_beta' take one positive "
                    "per anchor; they cannot be combined with labels");
  const rmat<double> one = ref::random_matrix(1, d, 3);
  rmat<double> p1 = rmat<double>::Constant(1, d, 3.5), q1 = p1;
  info_nce_options o1;
  o1.debias_tau_plus = 0.1;
  CHECK_THROWS_WITH(contrastive::info_nce_forward_backward(one, one, p1, q1, o1),
                    "info_nce_forward: 'debias_tau_plus' / 'hard_negative_beta' need at least one "
                    "negative per anchor (2 samples or more)");
  CHECK((p1.array() == 3.5).all());
  // A saved state of the plain loss does not serve the debiased backward.
  const auto saved = contrastive::nt_xent_forward(a, b, nt_xent_options{});
  nt_xent_options od;
  od.debias_tau_plus = 0.1;
  CHECK_THROWS_AS(contrastive::nt_xent_backward(a, b, saved, pa, pb, od),
                  contrastive::invalid_argument);
  CHECK(untouched());
}
