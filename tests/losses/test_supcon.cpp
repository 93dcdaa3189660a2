#include "support/test_config.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::supcon_options;
using labels_t = std::vector<std::int64_t>;

struct run_result {
  double loss;
  ref::mat ga;
  double dtheta;
  Eigen::Index skipped;
};

template <class T>
run_result run(const ref::mat& a, const supcon_options& o) {
  const rmat<T> at = a.cast<T>();
  rmat<T> ga(a.rows(), a.cols());
  const auto saved = contrastive::supcon_forward(at, o);
  const auto tg = contrastive::supcon_backward(at, saved, ga, o);
  return {double(saved.loss), ga.template cast<double>(), tg.log_scale, saved.skipped};
}

double loss_only(const ref::mat& a, const supcon_options& o) {
  const rmat<double> ar = a;
  return contrastive::supcon_forward(ar, o).loss;
}

// Naive L_out as pytorch-metric-learning's SupConLoss writes it: the M x M logits, log_prob =
// s_ij - LSE_{k != i} s_ik, the mean of log_prob over the positives, anchors without positives
// left out of the mean; G = dL/dS dense, dA = lambda (G + G^T) A.
ref::result reference(const ref::mat& a, const labels_t& y, const supcon_options& o) {
  const Eigen::Index m = a.rows();
  const double lambda = 1 / o.temperature;
  const ref::mat s = lambda * a * a.transpose();
  ref::mat g = ref::mat::Zero(m, m);
  std::vector<double> li;
  std::vector<Eigen::Index> who;
  for (Eigen::Index i = 0; i < m; ++i) {
    std::vector<bool> cand(m);
    Eigen::Index np = 0;
    for (Eigen::Index j = 0; j < m; ++j) {
      cand[j] = j != i;
      np += j != i && y[j] == y[i];
    }
    if (np == 0) continue;
    const double l = ref::lse_row(s, i, cand);
    double mean_log_prob = 0;
    for (Eigen::Index j = 0; j < m; ++j)
      if (j != i && y[j] == y[i]) mean_log_prob += (s(i, j) - l) / double(np);
    li.push_back(-mean_log_prob);
    who.push_back(i);
    for (Eigen::Index j = 0; j < m; ++j)
      if (j != i) g(i, j) = std::exp(s(i, j) - l) - (y[j] == y[i] ? 1.0 / double(np) : 0.0);
  }
  const double c = o.base_temperature > 0 ? o.temperature / o.base_temperature : 1.0;
  const double w =
      li.empty()
          ? 0.0
          : (o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(li.size()) : 1.0);
  ref::mat gw = ref::mat::Zero(m, m);
  ref::result r;
  for (std::size_t k = 0; k < li.size(); ++k) {
    r.loss += w * li[k];
    gw.row(who[k]) = w * g.row(who[k]);
  }
  r.grad_a = c * lambda * (gw + gw.transpose()) * a;
  const double dtheta = (gw.array() * s.array()).sum();
  r.dtheta = o.base_temperature > 0 ? c * (dtheta - r.loss) : dtheta;
  r.loss *= c;
  return r;
}

// Naive ntxent_pairs as pytorch-metric-learning's NTXentLoss computes it: for every positive pair
// (i, p), i != p, max_val = max(s_ip, max over i's negatives), numerator exp(s_ip - max_val),
// denominator the sum over i's negatives plus the numerator, loss -log(numerator / denominator);
// the mean over the pairs. Its gradient dense: d/ds_ip = -(1 - pi), d/ds_in = e^{s_in} / den.
ref::result pair_reference(const ref::mat& a, const labels_t& y, const supcon_options& o) {
  const Eigen::Index m = a.rows();
  const double lambda = 1 / o.temperature;
  const ref::mat s = lambda * a * a.transpose();
  ref::mat g = ref::mat::Zero(m, m);
  double total = 0;
  Eigen::Index pairs = 0;
  for (Eigen::Index i = 0; i < m; ++i) {
    for (Eigen::Index p = 0; p < m; ++p) {
      if (p == i || y[p] != y[i]) continue;
      double mx = s(i, p);
      for (Eigen::Index n = 0; n < m; ++n)
        if (y[n] != y[i]) mx = std::max(mx, s(i, n));
      const double num = std::exp(s(i, p) - mx);
      double den = num;
      for (Eigen::Index n = 0; n < m; ++n)
        if (y[n] != y[i]) den += std::exp(s(i, n) - mx);
      total += -std::log(num / den);
      ++pairs;
      g(i, p) -= 1 - num / den;
      for (Eigen::Index n = 0; n < m; ++n)
        if (y[n] != y[i]) g(i, n) += std::exp(s(i, n) - mx) / den;
    }
  }
  const double c = o.base_temperature > 0 ? o.temperature / o.base_temperature : 1.0;
  const double w =
      pairs == 0 ? 0.0
                 : (o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(pairs) : 1.0);
  const ref::mat gw = w * g;
  ref::result r;
  r.loss = w * total;
  r.grad_a = c * lambda * (gw + gw.transpose()) * a;
  const double dtheta = (gw.array() * s.array()).sum();
  r.dtheta = o.base_temperature > 0 ? c * (dtheta - r.loss) : dtheta;
  r.loss *= c;
  return r;
}

/// The loss, the gradient and dL/dtheta of a tiled run against a reference, to `tol`.
void check_close(const run_result& got, const ref::result& want, double tol) {
  CHECK(std::abs(got.loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
  if (want.grad_a.cwiseAbs().maxCoeff() > 0)
    CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= tol * 10);
  else
    CHECK(got.ga.cwiseAbs().maxCoeff() == 0);
  CHECK(std::abs(got.dtheta - want.dtheta) <= tol * 10 * std::max(1.0, std::abs(want.dtheta)));
}

/// Input gradients against finite differences, and dL/dtheta against a central difference in
/// theta = -log(temperature) (o.temperature must be exp(-theta)).
void check_finite_differences(const ref::mat& a, const supcon_options& o, double theta) {
  const run_result r = run<double>(a, o);
  CHECK(ct::gradcheck(ref::mat(a), r.ga, [&](const ref::mat& x) { return loss_only(x, o); }));
  const double h = 1e-6;
  supcon_options op = o, om = o;
  op.temperature = std::exp(-(theta + h));
  om.temperature = std::exp(-(theta - h));
  const double fd = (loss_only(a, op) - loss_only(a, om)) / (2 * h);
  CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
}

labels_t make_labels(Eigen::Index m, int classes, int seed) {
  labels_t y(m);
  for (Eigen::Index i = 0; i < m; ++i) y[i] = (i * 7 + seed) % classes;
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("supcon: tiled equals the naive reference", "[supcon]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  for (const Eigen::Index m : {1, 2, 5, 37, 130}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(m, 8, 13 + m));
    for (const int classes : {2, 5, 1000}) {  // 1000: mostly anchors without positives
      labels_t y = make_labels(m, classes, 3);
      if (classes == 1000 && m > 2) y[m - 1] = y[0];  // at least one pair
      for (const double base : {0.0, 0.07}) {
        supcon_options o;
        o.temperature = 0.2;
        o.labels = y;
        o.base_temperature = base;
        const ref::result want = reference(a, y, o);
        for (const Eigen::Index tile :
             {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), m + 5}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(m, classes, base, tile);
          check_close(run<TestType>(a, o), want, tol);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("supcon ntxent_pairs: tiled equals pytorch-metric-learning's NTXentLoss",
                   "[supcon][pairs]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  for (const Eigen::Index m : {1, 2, 5, 37, 130}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(m, 8, 17 + m));
    for (const int classes : {1, 2, 5, 1000}) {  // 1: no negatives; 1000: few positives
      labels_t y = make_labels(m, classes, 3);
      if (classes == 1000 && m > 2) y[m - 1] = y[0];
      for (const auto red : {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
        for (const double base : {0.0, 0.07}) {
          supcon_options o;
          o.temperature = 0.2;
          o.labels = y;
          o.base_temperature = base;
          o.reduction = red;
          o.convention = contrastive::supcon_convention::ntxent_pairs;
          const ref::result want = pair_reference(a, y, o);
          for (const Eigen::Index tile :
               {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), m + 5}) {
            o.tile_rows = o.tile_cols = tile;
            CAPTURE(m, classes, base, tile, int(red));
            check_close(run<TestType>(a, o), want, tol);
          }
        }
      }
    }
  }
}

TEST_CASE("supcon ntxent_pairs: finite-difference gradients in double",
          "[supcon][pairs][gradcheck]") {
  for (const Eigen::Index m : {2, 3, 7, 11}) {
    for (const double theta : {0.3, 2.0}) {
      const ref::mat a = ref::random_matrix(m, 4, 41 + m, 0.7);
      const labels_t y = make_labels(m, 3, 1);
      supcon_options o;
      o.temperature = std::exp(-theta);
      o.labels = y;
      o.convention = contrastive::supcon_convention::ntxent_pairs;
      o.tile_rows = o.tile_cols = 3;
      CAPTURE(m, theta);
      check_finite_differences(a, o, theta);
    }
  }
}

TEST_CASE("supcon ntxent_pairs: identities and where it differs from l_out", "[supcon][pairs]") {
  const Eigen::Index n = 11, d = 5;
  const ref::mat a = ref::random_matrix(n, d, 5), b = ref::random_matrix(n, d, 6);
  ref::mat z(2 * n, d);
  z << a, b;
  supcon_options o;
  o.temperature = 0.3;
  o.tile_rows = o.tile_cols = 4;
  SECTION("one positive per anchor (two views, sample ids as labels): NT-Xent without labels") {
    labels_t ids(2 * n);
    for (Eigen::Index i = 0; i < 2 * n; ++i) ids[i] = i % n;
    o.labels = ids;
    o.convention = contrastive::supcon_convention::ntxent_pairs;
    const run_result pr = run<double>(z, o);
    contrastive::nt_xent_options on;
    on.temperature = 0.3;
    const rmat<double> ar = a, br = b;
    rmat<double> ga(n, d), gb(n, d);
    contrastive::temperature_gradient tg;
    const double want = contrastive::nt_xent_forward_backward(ar, br, ga, gb, on, &tg);
    CHECK(pr.loss == Approx(want).epsilon(1e-13));
    CHECK(ref::max_rel_diff(pr.ga.topRows(n), ga) < 1e-12);
    CHECK(ref::max_rel_diff(pr.ga.bottomRows(n), gb) < 1e-12);
    CHECK(pr.dtheta == Approx(tg.log_scale).epsilon(1e-12));
  }
  SECTION("several positives, equal classes: the pair loss is the smaller") {
    const labels_t y = make_labels(2 * n, 2, 0);  // 11 rows per class
    o.labels = y;
    const double l_out = run<double>(z, o).loss;
    o.convention = contrastive::supcon_convention::ntxent_pairs;
    const double pairs = run<double>(z, o).loss;
    // Each pair's denominator drops the other positives, so each term is below L_out's, and with
    // equal classes both means weigh every pair alike.
    CHECK(pairs < l_out);
  }
  SECTION("one class: no negatives, every pair's loss is 0") {
    const labels_t y(2 * n, 7);
    o.labels = y;
    o.convention = contrastive::supcon_convention::ntxent_pairs;
    const run_result r = run<double>(z, o);
    CHECK(r.loss == 0.0);
    CHECK(r.ga.cwiseAbs().maxCoeff() == 0.0);
    CHECK(r.skipped == 0);
  }
}

TEST_CASE("supcon: finite-difference gradients in double", "[supcon][gradcheck]") {
  for (const Eigen::Index m : {2, 3, 7, 11}) {
    for (const double theta : {0.3, 2.0}) {
      for (const double base : {0.0, 0.07}) {
        const ref::mat a = ref::random_matrix(m, 4, 23 + m, 0.7);
        const labels_t y = make_labels(m, 3, 1);
        supcon_options o;
        o.temperature = std::exp(-theta);
        o.labels = y;
        o.base_temperature = base;
        o.tile_rows = o.tile_cols = 3;
        CAPTURE(m, theta, base);
        check_finite_differences(a, o, theta);
      }
    }
  }
}

TEST_CASE("supcon: identities", "[supcon][identity]") {
  SECTION("two views stacked as rows equal NT-Xent with the same labels") {
    const Eigen::Index n = 13, d = 5;
    const ref::mat a = ref::random_matrix(n, d, 3), b = ref::random_matrix(n, d, 4);
    const labels_t y = make_labels(n, 4, 2);
    labels_t yy = y;
    yy.insert(yy.end(), y.begin(), y.end());
    ref::mat z(2 * n, d);
    z << a, b;
    supcon_options o;
    o.temperature = 0.3;
    o.labels = yy;
    o.tile_rows = o.tile_cols = 4;
    const run_result s = run<double>(z, o);
    contrastive::nt_xent_options on;
    on.temperature = 0.3;
    on.labels = y;
    const rmat<double> ar = a, br = b;
    rmat<double> ga(n, d), gb(n, d);
    contrastive::temperature_gradient tg;
    const double want = contrastive::nt_xent_forward_backward(ar, br, ga, gb, on, &tg);
    CHECK(s.loss == Approx(want).epsilon(1e-13));
    CHECK(ref::max_rel_diff(s.ga.topRows(n), ga) < 1e-12);
    CHECK(ref::max_rel_diff(s.ga.bottomRows(n), gb) < 1e-12);
    CHECK(s.dtheta == Approx(tg.log_scale).epsilon(1e-12));
    CHECK(s.skipped == 0);
  }
  SECTION("all labels distinct: every anchor skipped, loss 0, no gradient") {
    const ref::mat a = ref::random_matrix(6, 3, 8);
    labels_t y = {4, 8, 15, 16, 23, 42};
    supcon_options o;
    o.labels = y;
    const run_result r = run<double>(a, o);
    CHECK(r.loss == 0.0);
    CHECK(r.skipped == 6);
    CHECK(r.ga.cwiseAbs().maxCoeff() == 0.0);
  }
  SECTION("one class, all rows equal: log(M - 1)") {
    ref::mat a(9, 2);
    a.rowwise() = Eigen::RowVector2d(0.6, 0.8);
    const labels_t y(9, 1);
    supcon_options o;
    o.labels = y;
    CHECK(run<double>(a, o).loss == Approx(std::log(8.0) - 0.0).epsilon(1e-12));
  }
}

TEST_CASE("supcon: workspace, accumulate, upstream, layouts", "[supcon][api]") {
  const Eigen::Index m = 17, d = 6;
  const ref::mat a = ref::random_matrix(m, d, 30);
  const labels_t y = make_labels(m, 4, 0);
  supcon_options o;
  o.labels = y;
  o.tile_rows = o.tile_cols = 4;
  o.convention =
      GENERATE(contrastive::supcon_convention::l_out, contrastive::supcon_convention::ntxent_pairs);
  CAPTURE(int(o.convention));
  const rmat<double> ar = a;
  rmat<double> ga(m, d);
  const double want = contrastive::supcon_forward_backward(ar, ga, o);
  Eigen::MatrixXd ac = a, gc(m, d);  // column-major
  CHECK(contrastive::supcon_forward_backward(ac, gc, o) == Approx(want).epsilon(1e-15));
  CHECK(ref::max_rel_diff(gc, ga) < 1e-14);
  const std::size_t bytes = contrastive::supcon_workspace_bytes<double>(m, d, o);
  CHECK(contrastive::supcon_workspace_bytes(ar, o) == bytes);
  std::vector<unsigned char> buf(bytes);
  rmat<double> g2 = rmat<double>::Constant(m, d, 1.0);
  supcon_options acc = o;
  acc.accumulate = true;
  const auto saved = contrastive::supcon_forward(ar, o, {buf.data(), buf.size()});
  CHECK(saved.loss == want);
  contrastive::supcon_backward(ar, saved, g2, acc, 3.0, {buf.data(), buf.size()});
  CHECK(ref::max_rel_diff((g2.array() - 1.0) / 3.0, ga) < 1e-14);
  CHECK_THROWS_AS(contrastive::supcon_forward(ar, o, {buf.data(), 64}),
                  contrastive::invalid_argument);
}

TEST_CASE("supcon: bad input throws and leaves the output untouched", "[supcon][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index m = 5, d = 3;
  const rmat<double> a = ref::random_matrix(m, d, 1);
  const labels_t y = {0, 1, 0, 1, 2};
  supcon_options o;
  o.labels = y;
  const auto saved = contrastive::supcon_forward(a, o);
  rmat<double> pa = rmat<double>::Constant(m, d, 3.5);
  auto untouched = [&] { return (pa.array() == 3.5).all(); };
  CHECK_THROWS_WITH(contrastive::supcon_forward(a, supcon_options{}),
                    "supcon_forward: 'labels' are required (one per row of 'a')");
  const labels_t short_y = {0, 1};
  supcon_options bad = o;
  bad.labels = short_y;
  CHECK_THROWS_WITH(contrastive::supcon_forward_backward(a, pa, bad),
                    "supcon_forward: 'labels' has 2 labels, expected 5 (one per row)");
  CHECK(untouched());
  bad = o;
  bad.temperature = 0;
  CHECK_THROWS_WITH(contrastive::supcon_forward(a, bad),
                    "supcon_forward: 'temperature' must be finite and > 0, got 0");
  bad = o;
  bad.base_temperature = -1;
  CHECK_THROWS_WITH(contrastive::supcon_forward(a, bad),
                    "supcon_forward: 'base_temperature' must be finite and >= 0 (0: off), got -1");
  rmat<double> an = a;
  an(2, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(contrastive::supcon_backward(an, saved, pa, o),
                    "supcon_backward: 'a' has a non-finite value (inf) at row 2, column 1");
  CHECK(untouched());
  const rmat<double> e0(0, d);
  CHECK_THROWS_AS(contrastive::supcon_forward(e0, o), invalid_argument);
  rmat<double> g2(m, d + 1);
  CHECK_THROWS_AS(contrastive::supcon_backward(a, saved, g2, o), invalid_argument);
  rmat<double> x = a;
  CHECK_THROWS_AS(contrastive::supcon_backward(x, saved, x, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::supcon_backward(a, saved, pa, o, std::nan("")), invalid_argument);
  bad = o;
  bad.temperature = 0.2;
  CHECK_THROWS_AS(contrastive::supcon_backward(a, saved, pa, bad), invalid_argument);
  CHECK(untouched());
  const rmat<double> big = 1e200 * a;
  CHECK_THROWS_AS(contrastive::supcon_forward(big, o), invalid_argument);
  bad = o;
  bad.convention = static_cast<contrastive::supcon_convention>(7);
  CHECK_THROWS_WITH(contrastive::supcon_forward_backward(a, pa, bad),
                    "supcon_forward: 'convention' must be l_out or ntxent_pairs, got 7");
  bad = o;
  bad.convention = contrastive::supcon_convention::ntxent_pairs;
  CHECK_THROWS_WITH(contrastive::supcon_backward(a, saved, pa, bad),
                    "supcon_backward: 'saved' was computed with other options (temperature 0.1, "
                    "base_temperature 0, reduction 0, convention 0) than these (temperature 0.1, "
                    "base_temperature 0, reduction 0, convention 1)");
  CHECK(untouched());
}

TEST_CASE("supcon: bitwise identical for any thread count", "[supcon][threads]") {
  const Eigen::Index m = 301, d = 40;
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(m, d, 5)).cast<float>();
  const labels_t y = make_labels(m, 10, 4);
  for (const auto conv :
       {contrastive::supcon_convention::l_out, contrastive::supcon_convention::ntxent_pairs}) {
    supcon_options o;
    o.labels = y;
    o.convention = conv;
    o.tile_rows = o.tile_cols = 32;
    o.num_threads = 1;
    rmat<float> g1(m, d);
    const float l1 = contrastive::supcon_forward_backward(a, g1, o);
    for (const int threads : {2, 3}) {
      CAPTURE(int(conv), threads);
      o.num_threads = threads;
      rmat<float> g(m, d);
      CHECK(contrastive::supcon_forward_backward(a, g, o) == l1);
      CHECK((g.array() == g1.array()).all());
    }
  }
}
