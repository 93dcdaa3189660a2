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
using contrastive::nt_xent_options;

struct run_result {
  double loss;
  ref::mat ga, gb;
  double dtheta;
};

template <class T>
run_result run(const ref::mat& a, const ref::mat& b, const nt_xent_options& o) {
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::temperature_gradient tg;
  const T loss = contrastive::nt_xent_forward_backward(at, bt, ga, gb, o, &tg);
  return {double(loss), ga.template cast<double>(), gb.template cast<double>(), tg.log_scale};
}

ref::result reference(const ref::mat& a, const ref::mat& b, const nt_xent_options& o,
                      const std::vector<std::int64_t>* labels = nullptr) {
  return ref::nt_xent(a, b, o.temperature, o.label_smoothing,
                      o.reduction == contrastive::loss_reduction::mean, labels);
}

double loss_only(const ref::mat& a, const ref::mat& b, const nt_xent_options& o) {
  const rmat<double> ar = a, br = b;
  return contrastive::nt_xent_forward(ar, br, o).loss;
}

}  // namespace

TEMPLATE_TEST_CASE("nt_xent: tiled equals the naive reference", "[nt_xent]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{130, 17}}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 13 + sh.n));
    const ref::mat b = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 17 + sh.n));
    for (const double eps : {0.0, 0.1}) {
      for (const auto red : {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
        nt_xent_options o;
        o.temperature = 0.2;
        o.label_smoothing = eps;
        o.reduction = red;
        const ref::result want = reference(a, b, o);
        // Tiles of 1 and 3 split the A and B halves raggedly; N + 5 covers a tile larger than N.
        for (const Eigen::Index tile :
             {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(sh.n, sh.d, eps, tile);
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

TEST_CASE("nt_xent: labels match the reference", "[nt_xent]") {
  const Eigen::Index n = 21, d = 5;
  const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 7));
  const ref::mat b = ref::normalized_rows(ref::random_matrix(n, d, 8));
  std::vector<std::int64_t> y(n);
  for (Eigen::Index i = 0; i < n; ++i) y[i] = (i * 5) % 6;
  for (const double eps : {0.0, 0.2}) {
    for (const Eigen::Index tile : {Eigen::Index(4), Eigen::Index(21), Eigen::Index(64)}) {
      nt_xent_options o;
      o.temperature = 0.4;
      o.label_smoothing = eps;
      o.labels = y;
      o.tile_rows = o.tile_cols = tile;
      CAPTURE(eps, tile);
      const ref::result want = reference(a, b, o, &y);
      const run_result got = run<double>(a, b, o);
      CHECK(got.loss == Approx(want.loss).epsilon(1e-12));
      CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= 1e-11);
      CHECK(ref::max_rel_diff(got.gb, want.grad_b) <= 1e-11);
      CHECK(got.dtheta == Approx(want.dtheta).epsilon(1e-11));
    }
  }
}

TEST_CASE("nt_xent: all-distinct labels equal the unlabelled loss", "[nt_xent]") {
  const Eigen::Index n = 15, d = 4;
  const ref::mat a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  std::vector<std::int64_t> y(n);
  for (Eigen::Index i = 0; i < n; ++i) y[i] = 7 * i - 40;
  nt_xent_options o;
  o.temperature = 0.3;
  o.tile_rows = o.tile_cols = 4;
  const run_result plain = run<double>(a, b, o);
  o.labels = y;
  const run_result lab = run<double>(a, b, o);
  CHECK(lab.loss == Approx(plain.loss).epsilon(1e-13));
  CHECK(ref::max_rel_diff(lab.ga, plain.ga) < 1e-12);
  CHECK(ref::max_rel_diff(lab.gb, plain.gb) < 1e-12);
}

TEST_CASE("nt_xent: finite-difference gradients in double", "[nt_xent][gradcheck]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 1}, shape{1, 4}, shape{5, 3}, shape{7, 4}}) {
    for (const double theta : {0.3, 2.0}) {
      for (const double eps : {0.0, 0.15}) {
        const ref::mat a = ref::random_matrix(sh.n, sh.d, 23 + sh.n, 0.7);
        const ref::mat b = ref::random_matrix(sh.n, sh.d, 29 + sh.d, 0.7);
        nt_xent_options o;
        o.temperature = std::exp(-theta);
        o.label_smoothing = eps;
        o.tile_rows = o.tile_cols = 3;
        CAPTURE(sh.n, sh.d, theta, eps);
        const run_result r = run<double>(a, b, o);
        CHECK(ct::gradcheck(ref::mat(a), r.ga,
                            [&](const ref::mat& x) { return loss_only(x, b, o); }));
        CHECK(ct::gradcheck(ref::mat(b), r.gb,
                            [&](const ref::mat& x) { return loss_only(a, x, o); }));
        const double h = 1e-6;
        nt_xent_options op = o, om = o;
        op.temperature = std::exp(-(theta + h));
        om.temperature = std::exp(-(theta - h));
        const double fd = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
        CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
      }
    }
  }
  SECTION("with labels") {
    const ref::mat a = ref::random_matrix(6, 3, 77, 0.8), b = ref::random_matrix(6, 3, 78, 0.8);
    std::vector<std::int64_t> y = {0, 1, 0, 2, 1, 0};
    nt_xent_options o;
    o.temperature = 0.5;
    o.labels = y;
    o.label_smoothing = 0.05;
    o.tile_rows = o.tile_cols = 4;
    const run_result r = run<double>(a, b, o);
    CHECK(ct::gradcheck(ref::mat(a), r.ga, [&](const ref::mat& x) { return loss_only(x, b, o); }));
    CHECK(ct::gradcheck(ref::mat(b), r.gb, [&](const ref::mat& x) { return loss_only(a, x, o); }));
  }
}

TEST_CASE("nt_xent: identities", "[nt_xent][identity]") {
  SECTION("all rows equal gives log(2N - 1) and zero gradients") {
    for (const Eigen::Index n : {2, 7, 200}) {
      ref::mat a(n, 3);
      a.rowwise() = Eigen::RowVector3d(0.6, 0.0, 0.8);
      nt_xent_options o;
      o.tile_rows = o.tile_cols = 64;
      const run_result r = run<double>(a, a, o);
      CHECK(r.loss == Approx(std::log(2.0 * double(n) - 1)).epsilon(1e-12));
      CHECK(r.ga.cwiseAbs().maxCoeff() < 1e-9);
    }
    ref::mat a2(2, 1);
    a2 << 1, 1;
    CHECK(run<double>(a2, a2, {}).loss == Approx(1.098612).epsilon(1e-6));
  }
  SECTION("orthonormal views: -lambda + log(e^lambda + 2N - 2)") {
    const Eigen::Index n = 6;
    const ref::mat e = ref::mat::Identity(n, n + 1);
    nt_xent_options o;
    o.temperature = 0.5;
    o.tile_rows = o.tile_cols = 4;
    const double lambda = 2.0;
    CHECK(run<double>(e, e, o).loss ==
          Approx(-lambda + std::log(std::exp(lambda) + 2.0 * double(n) - 2)).epsilon(1e-13));
  }
  SECTION("N = 1 gives zero") {
    const ref::mat a = ref::random_matrix(1, 4, 3), b = ref::random_matrix(1, 4, 4);
    const run_result r = run<double>(a, b, {});
    CHECK(r.loss == 0.0);
    CHECK(r.ga.cwiseAbs().maxCoeff() == 0.0);
  }
  SECTION("swapping the views leaves the loss and swaps the gradients") {
    const ref::mat a = ref::random_matrix(9, 4, 5), b = ref::random_matrix(9, 4, 6);
    nt_xent_options o;
    o.tile_rows = o.tile_cols = 4;
    const run_result ab = run<double>(a, b, o), ba = run<double>(b, a, o);
    CHECK(ab.loss == Approx(ba.loss).epsilon(1e-13));
    CHECK(ref::max_rel_diff(ab.ga, ba.gb) < 1e-12);
  }
}

TEST_CASE("nt_xent: float is stable at tau = 1e-3", "[nt_xent][stability]") {
  const Eigen::Index n = 40, d = 16;
  const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 90));
  const ref::mat b = ref::normalized_rows(a + 0.3 * ref::random_matrix(n, d, 91));
  nt_xent_options o;
  o.temperature = 1e-3;
  o.tile_rows = o.tile_cols = 16;
  const run_result f = run<float>(a, b, o), dd = run<double>(a, b, o);
  REQUIRE(std::isfinite(f.loss));
  REQUIRE(f.ga.allFinite());
  REQUIRE(f.gb.allFinite());
  CHECK(std::abs(f.loss - dd.loss) <= 1e-4 * std::abs(dd.loss));
  CHECK(ref::max_rel_diff(f.ga, dd.ga) < 1e-3);
}

TEST_CASE("nt_xent: layouts, workspace, accumulate", "[nt_xent][api]") {
  const Eigen::Index n = 11, d = 6;
  const ref::mat a = ref::random_matrix(n, d, 30), b = ref::random_matrix(n, d, 31);
  nt_xent_options o;
  o.tile_rows = o.tile_cols = 4;
  const rmat<double> ar = a, br = b;
  rmat<double> ga(n, d), gb(n, d);
  const double want = contrastive::nt_xent_forward_backward(ar, br, ga, gb, o);

  // One 2N x D matrix passed as its top and bottom halves, column-major.
  Eigen::MatrixXd z(2 * n, d);
  z << a, b;
  Eigen::MatrixXd gz(2 * n, d);
  CHECK(contrastive::nt_xent_forward_backward(z.topRows(n), z.bottomRows(n), gz.topRows(n),
                                              gz.bottomRows(n), o) == want);
  CHECK((gz.topRows(n).array() == ga.array()).all());
  CHECK((gz.bottomRows(n).array() == gb.array()).all());

  const std::size_t bytes = contrastive::nt_xent_workspace_bytes<double>(n, d, o);
  std::vector<unsigned char> buf(bytes);
  rmat<double> ga2 = rmat<double>::Constant(n, d, 1.0), gb2 = rmat<double>::Constant(n, d, 1.0);
  nt_xent_options acc = o;
  acc.accumulate = true;
  const auto saved = contrastive::nt_xent_forward(ar, br, o, {buf.data(), buf.size()});
  CHECK(saved.loss == want);
  CHECK(saved.lse.size() == std::size_t(2 * n));
  contrastive::nt_xent_backward(ar, br, saved, ga2, gb2, acc, 1.0, {buf.data(), buf.size()});
  CHECK(ref::max_rel_diff(ga2.array() - 1.0, ga) < 1e-14);
  CHECK_THROWS_AS(contrastive::nt_xent_forward(ar, br, o, {buf.data(), 64}),
                  contrastive::invalid_argument);
  CHECK_THROWS_AS(
      contrastive::nt_xent_backward(ar, br, saved, ga2, gb2, acc, 1.0, {buf.data(), 64}),
      contrastive::invalid_argument);

  // The inputs overload: row-major inputs need exactly the row-major query; for the halves of z
  // it sizes a workspace that serves a call on them.
  CHECK(contrastive::nt_xent_workspace_bytes(ar, br, o) == bytes);
  const std::size_t zbytes = contrastive::nt_xent_workspace_bytes(z.topRows(n), z.bottomRows(n), o);
  CHECK(zbytes >= bytes);
  std::vector<unsigned char> zbuf(zbytes);
  CHECK(contrastive::nt_xent_forward(z.topRows(n), z.bottomRows(n), o, {zbuf.data(), zbuf.size()})
            .loss == want);
}

TEST_CASE("nt_xent: bad input throws contrastive::invalid_argument", "[nt_xent][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 4, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  rmat<double> ga(n, d), gb(n, d);
  nt_xent_options o;
  const auto saved = contrastive::nt_xent_forward(a, b, o);
  const rmat<double> wrong_rows = ref::random_matrix(n + 1, d, 3),
                     wrong_cols = ref::random_matrix(n, d + 2, 3);
  CHECK_THROWS_AS(contrastive::nt_xent_forward(a, wrong_rows, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::nt_xent_forward(a, wrong_cols, o), invalid_argument);
  const rmat<double> e0(0, d), e1(n, 0);
  CHECK_THROWS_AS(contrastive::nt_xent_forward(e0, e0, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::nt_xent_forward(e1, e1, o), invalid_argument);
  nt_xent_options bad_reduction = o;
  bad_reduction.reduction = static_cast<contrastive::loss_reduction>(-1);
  rmat<double> pa = rmat<double>::Constant(n, d, 3.5), pb = pa;
  CHECK_THROWS_WITH(contrastive::nt_xent_forward_backward(a, b, pa, pb, bad_reduction),
                    "nt_xent_forward: 'reduction' has an invalid value (-1)");
  CHECK_THROWS_WITH(contrastive::nt_xent_backward(a, b, saved, pa, pb, bad_reduction),
                    "nt_xent_backward: 'reduction' has an invalid value (-1)");
  CHECK(((pa.array() == 3.5).all() && (pb.array() == 3.5).all()));
  nt_xent_options bad = o;
  bad.temperature = -0.1;
  CHECK_THROWS_WITH(contrastive::nt_xent_forward(a, b, bad),
                    "nt_xent_forward: 'temperature' must be finite and > 0, got -0.1");
  rmat<double> an = a;
  an(3, 2) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(contrastive::nt_xent_forward(an, b, o),
                    "nt_xent_forward: 'a' has a non-finite value (inf) at row 3, column 2");
  rmat<double> g2(n, d + 1);
  CHECK_THROWS_AS(contrastive::nt_xent_backward(a, b, saved, g2, gb, o), invalid_argument);
  rmat<double> x = b;
  CHECK_THROWS_AS(contrastive::nt_xent_backward(a, x, saved, ga, x, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::nt_xent_backward(a, b, saved, gb, gb, o), invalid_argument);
  std::vector<std::int64_t> y(n + 1, 0);
  bad = o;
  bad.labels = y;
  CHECK_THROWS_WITH(contrastive::nt_xent_forward(a, b, bad),
                    "nt_xent_forward: 'labels' has 5 labels, expected 4 (one per row)");
  bad = o;
  bad.temperature = 0.2;
  CHECK_THROWS_AS(contrastive::nt_xent_backward(a, b, saved, ga, gb, bad), invalid_argument);
}

TEST_CASE("nt_xent: bitwise identical for any thread count and in cached mode",
          "[nt_xent][threads]") {
  const Eigen::Index n = 157, d = 48;  // above the size where the sweep starts threads
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 5)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 6)).cast<float>();
  nt_xent_options o;
  o.tile_rows = o.tile_cols = 16;
  o.num_threads = 1;
  rmat<float> ga1(n, d), gb1(n, d);
  const float l1 = contrastive::nt_xent_forward_backward(a, b, ga1, gb1, o);
  for (const int threads : {1, 2, 3}) {
    for (const bool cached : {false, true}) {
      CAPTURE(threads, cached);
      nt_xent_options ot = o;
      ot.num_threads = threads;
      ot.cache_logits = cached;
      rmat<float> ga(n, d), gb(n, d);
      CHECK(contrastive::nt_xent_forward_backward(a, b, ga, gb, ot) == l1);
      CHECK((ga.array() == ga1.array()).all());
      CHECK((gb.array() == gb1.array()).all());
    }
  }
}
