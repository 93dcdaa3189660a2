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
using contrastive::dcl_options;

struct run_result {
  double loss;
  ref::mat ga, gb;
  double dtheta;
};

template <class T>
run_result run(const ref::mat& a, const ref::mat& b, const dcl_options& o) {
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::temperature_gradient tg;
  const T loss = contrastive::dcl_forward_backward(at, bt, ga, gb, o, &tg);
  return {double(loss), ga.template cast<double>(), gb.template cast<double>(), tg.log_scale};
}

double loss_only(const ref::mat& a, const ref::mat& b, const dcl_options& o) {
  const rmat<double> ar = a, br = b;
  return contrastive::dcl_forward(ar, br, o).loss;
}

// Naive DCL/DCLW: the 2N x 2N logits, negatives-only log-sum-exps, the weights by their formula,
// the gradient of the negative part through G and of the positive part in closed form written
// out independently (dw/du by the softmax Jacobian, as a dense N x N matrix).
ref::result reference(const ref::mat& a, const ref::mat& b, const dcl_options& o) {
  const Eigen::Index n = a.rows(), n2 = 2 * n;
  ref::mat z(n2, a.cols());
  z << a, b;
  const double lambda = 1.0 / o.temperature;
  const ref::mat s = lambda * z * z.transpose();
  const double wv = o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  ref::mat g = ref::mat::Zero(n2, n2);
  ref::result r;
  for (Eigen::Index i = 0; i < n2; ++i) {
    std::vector<bool> cand(n2);
    for (Eigen::Index j = 0; j < n2; ++j) cand[j] = j != i && j != (i + n) % n2;
    const double l = ref::lse_row(s, i, cand);
    r.loss += wv * l;
    for (Eigen::Index j = 0; j < n2; ++j)
      if (cand[j]) {
        g(i, j) = wv * std::exp(s(i, j) - l);
        r.dtheta += g(i, j) * s(i, j);
      }
  }
  Eigen::VectorXd u(n), w = Eigen::VectorXd::Ones(n);
  for (Eigen::Index k = 0; k < n; ++k) u(k) = a.row(k).dot(b.row(k));
  ref::mat jw = ref::mat::Zero(n, n);  // dw_m / du_k
  if (o.weighted) {
    const Eigen::VectorXd e = (u / o.sigma).array().exp();
    const Eigen::VectorXd p = e / e.sum();
    w = (2.0 - double(n) * p.array()).matrix();
    for (Eigen::Index m = 0; m < n; ++m)
      for (Eigen::Index k = 0; k < n; ++k)
        jw(m, k) = -double(n) * p(m) * ((m == k ? 1.0 : 0.0) - p(k)) / o.sigma;
  }
  // Positive part: -wv sum_{i < 2N} w_(i mod N) lambda u_(i mod N) = -2 wv lambda w.u
  const double pos = -2 * wv * lambda * w.dot(u);
  r.loss += pos;
  r.dtheta += pos;
  const Eigen::VectorXd dpos = -2 * wv * lambda * (w + jw.transpose() * u);
  const ref::mat dz = lambda * (g + g.transpose()) * z;
  r.grad_a = dz.topRows(n);
  r.grad_b = dz.bottomRows(n);
  for (Eigen::Index k = 0; k < n; ++k) {
    r.grad_a.row(k) += dpos(k) * b.row(k);
    r.grad_b.row(k) += dpos(k) * a.row(k);
  }
  return r;
}

}  // namespace

TEMPLATE_TEST_CASE("dcl: tiled equals the naive reference", "[dcl]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{130, 17}}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 13 + sh.n));
    const ref::mat b = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 17 + sh.n));
    for (const bool weighted : {false, true}) {
      for (const auto red : {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
        dcl_options o;
        o.temperature = 0.2;
        o.weighted = weighted;
        o.reduction = red;
        const ref::result want = reference(a, b, o);
        for (const Eigen::Index tile :
             {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(sh.n, sh.d, weighted, tile);
          const run_result got = run<TestType>(a, b, o);
          CHECK(std::abs(got.loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
          CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= tol * 10);
          CHECK(ref::max_rel_diff(got.gb, want.grad_b) <= tol * 10);
          CHECK(std::abs(got.dtheta - want.dtheta) <=
                tol * 10 * std::max(1.0, std::abs(want.dtheta)));
        }
      }
    }
  }
}

TEST_CASE("dcl: finite-difference gradients in double", "[dcl][gradcheck]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{2, 1}, shape{2, 4}, shape{5, 3}, shape{7, 4}}) {
    for (const double theta : {0.3, 2.0}) {
      for (const bool weighted : {false, true}) {
        const ref::mat a = ref::random_matrix(sh.n, sh.d, 23 + sh.n, 0.7);
        const ref::mat b = ref::random_matrix(sh.n, sh.d, 29 + sh.d, 0.7);
        dcl_options o;
        o.temperature = std::exp(-theta);
        o.weighted = weighted;
        o.sigma = 0.7;
        o.tile_rows = o.tile_cols = 3;
        CAPTURE(sh.n, sh.d, theta, weighted);
        const run_result r = run<double>(a, b, o);
        CHECK(ct::gradcheck(ref::mat(a), r.ga,
                            [&](const ref::mat& x) { return loss_only(x, b, o); }));
        CHECK(ct::gradcheck(ref::mat(b), r.gb,
                            [&](const ref::mat& x) { return loss_only(a, x, o); }));
        const double h = 1e-6;
        dcl_options op = o, om = o;
        op.temperature = std::exp(-(theta + h));
        om.temperature = std::exp(-(theta - h));
        const double fd = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
        CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
      }
    }
  }
}

TEST_CASE("dcl: identities", "[dcl][identity]") {
  SECTION("all rows equal gives log(2N - 2) (DCL and DCLW: the weights are all 1)") {
    for (const Eigen::Index n : {2, 7, 200}) {
      ref::mat a(n, 3);
      a.rowwise() = Eigen::RowVector3d(0.6, 0.0, 0.8);
      for (const bool weighted : {false, true}) {
        dcl_options o;
        o.weighted = weighted;
        o.tile_rows = o.tile_cols = 64;
        const run_result r = run<double>(a, a, o);
        CHECK(r.loss == Approx(std::log(2.0 * double(n) - 2)).epsilon(1e-12));
      }
    }
  }
  SECTION("DCL equals NT-Xent minus the positive's share of the denominator") {
    // l_NT = log(e^{s_p} + sum_neg) - s_p and l_DCL = log(sum_neg) - s_p differ per anchor by
    // log(1 + e^{s_p - LSE_neg}); with orthonormal views every anchor has s_p = lambda, negatives 0.
    const Eigen::Index n = 6;
    const ref::mat e = ref::mat::Identity(n, n + 1);
    dcl_options o;
    o.temperature = 0.5;
    o.tile_rows = o.tile_cols = 4;
    CHECK(run<double>(e, e, o).loss == Approx(-2.0 + std::log(2.0 * double(n) - 2)).epsilon(1e-13));
  }
  SECTION("swapping the views leaves the loss and swaps the gradients") {
    const ref::mat a = ref::random_matrix(9, 4, 5), b = ref::random_matrix(9, 4, 6);
    for (const bool weighted : {false, true}) {
      dcl_options o;
      o.weighted = weighted;
      o.tile_rows = o.tile_cols = 4;
      const run_result ab = run<double>(a, b, o), ba = run<double>(b, a, o);
      CHECK(ab.loss == Approx(ba.loss).epsilon(1e-13));
      CHECK(ref::max_rel_diff(ab.ga, ba.gb) < 1e-12);
    }
  }
  SECTION("DCLW with a huge sigma is DCL") {
    const ref::mat a = ref::random_matrix(8, 4, 15), b = ref::random_matrix(8, 4, 16);
    dcl_options o;
    o.tile_rows = o.tile_cols = 5;
    const run_result plain = run<double>(a, b, o);
    o.weighted = true;
    o.sigma = 1e12;
    const run_result w = run<double>(a, b, o);
    CHECK(w.loss == Approx(plain.loss).epsilon(1e-10));
    CHECK(ref::max_rel_diff(w.ga, plain.ga) < 1e-9);
  }
}

TEST_CASE("dcl: float is stable at tau = 1e-3", "[dcl][stability]") {
  const Eigen::Index n = 40, d = 16;
  const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 90));
  const ref::mat b = ref::normalized_rows(a + 0.3 * ref::random_matrix(n, d, 91));
  dcl_options o;
  o.temperature = 1e-3;
  o.tile_rows = o.tile_cols = 16;
  const run_result f = run<float>(a, b, o), dd = run<double>(a, b, o);
  REQUIRE(std::isfinite(f.loss));
  REQUIRE(f.ga.allFinite());
  CHECK(std::abs(f.loss - dd.loss) <= 1e-3 * std::max(1.0, std::abs(dd.loss)));
}

TEST_CASE("dcl: layouts, workspace, accumulate, upstream", "[dcl][api]") {
  const Eigen::Index n = 11, d = 6;
  const ref::mat a = ref::random_matrix(n, d, 30), b = ref::random_matrix(n, d, 31);
  dcl_options o;
  o.weighted = true;
  o.tile_rows = o.tile_cols = 4;
  const rmat<double> ar = a, br = b;
  rmat<double> ga(n, d), gb(n, d);
  const double want = contrastive::dcl_forward_backward(ar, br, ga, gb, o);
  Eigen::MatrixXd z(2 * n, d);
  z << a, b;
  Eigen::MatrixXd gz(2 * n, d);
  CHECK(contrastive::dcl_forward_backward(z.topRows(n), z.bottomRows(n), gz.topRows(n),
                                          gz.bottomRows(n), o) == want);
  CHECK((gz.topRows(n).array() == ga.array()).all());
  CHECK((gz.bottomRows(n).array() == gb.array()).all());

  const std::size_t bytes = contrastive::dcl_workspace_bytes<double>(n, d, o);
  CHECK(contrastive::dcl_workspace_bytes(ar, br, o) == bytes);
  std::vector<unsigned char> buf(bytes);
  rmat<double> ga2 = rmat<double>::Constant(n, d, 1.0), gb2 = rmat<double>::Constant(n, d, 1.0);
  dcl_options acc = o;
  acc.accumulate = true;
  const auto saved = contrastive::dcl_forward(ar, br, o, {buf.data(), buf.size()});
  CHECK(saved.loss == want);
  contrastive::dcl_backward(ar, br, saved, ga2, gb2, acc, 2.0, {buf.data(), buf.size()});
  CHECK(ref::max_rel_diff((ga2.array() - 1.0) / 2.0, ga) < 1e-14);
  CHECK(ref::max_rel_diff((gb2.array() - 1.0) / 2.0, gb) < 1e-14);
  CHECK_THROWS_AS(contrastive::dcl_forward(ar, br, o, {buf.data(), 64}),
                  contrastive::invalid_argument);
}

TEST_CASE("dcl: bad input throws and leaves the outputs untouched", "[dcl][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 4, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  dcl_options o;
  const auto saved = contrastive::dcl_forward(a, b, o);
  rmat<double> pa = rmat<double>::Constant(n, d, 3.5), pb = pa;
  auto untouched = [&] { return (pa.array() == 3.5).all() && (pb.array() == 3.5).all(); };
  const rmat<double> one = ref::random_matrix(1, d, 3);
  CHECK_THROWS_WITH(contrastive::dcl_forward(one, one, o),
                    "dcl_forward: needs at least 2 samples (an anchor's negatives are the other "
                    "2N - 2 views), got 1");
  dcl_options bad = o;
  bad.weighted = true;
  bad.sigma = 0;
  CHECK_THROWS_WITH(contrastive::dcl_forward_backward(a, b, pa, pb, bad),
                    "dcl_forward: 'sigma' must be finite and > 0, got 0");
  CHECK(untouched());
  bad = o;
  bad.temperature = -0.1;
  CHECK_THROWS_WITH(contrastive::dcl_forward(a, b, bad),
                    "dcl_forward: 'temperature' must be finite and > 0, got -0.1");
  bad = o;
  bad.reduction = static_cast<contrastive::loss_reduction>(-1);
  CHECK_THROWS_WITH(contrastive::dcl_backward(a, b, saved, pa, pb, bad),
                    "dcl_backward: 'reduction' has an invalid value (-1)");
  CHECK(untouched());
  rmat<double> an = a;
  an(3, 2) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(contrastive::dcl_backward(an, b, saved, pa, pb, o),
                    "dcl_backward: 'a' has a non-finite value (nan) at row 3, column 2");
  CHECK(untouched());
  bad = o;
  bad.weighted = true;
  CHECK_THROWS_AS(contrastive::dcl_backward(a, b, saved, pa, pb, bad), invalid_argument);
  CHECK(untouched());
  rmat<double> g2(n, d + 1);
  CHECK_THROWS_AS(contrastive::dcl_backward(a, b, saved, g2, pb, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::dcl_backward(a, b, saved, pa, pa, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::dcl_backward(a, b, saved, pa, pb, o, std::nan("")),
                  invalid_argument);
  CHECK(untouched());
  const rmat<double> big = 1e200 * ref::random_matrix(n, d, 9);
  CHECK_THROWS_AS(contrastive::dcl_forward(big, big, o), invalid_argument);
}

TEST_CASE("dcl: bitwise identical for any thread count", "[dcl][threads]") {
  const Eigen::Index n = 157, d = 48;
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 5)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 6)).cast<float>();
  dcl_options o;
  o.weighted = true;
  o.tile_rows = o.tile_cols = 16;
  o.num_threads = 1;
  rmat<float> ga1(n, d), gb1(n, d);
  const float l1 = contrastive::dcl_forward_backward(a, b, ga1, gb1, o);
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    o.num_threads = threads;
    rmat<float> ga(n, d), gb(n, d);
    CHECK(contrastive::dcl_forward_backward(a, b, ga, gb, o) == l1);
    CHECK((ga.array() == ga1.array()).all());
    CHECK((gb.array() == gb1.array()).all());
  }
}
