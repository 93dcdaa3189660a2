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
using contrastive::siglip_options;

struct run_result {
  double loss;
  ref::mat ga, gb;
  contrastive::siglip_parameter_gradients pg;
};

template <class T>
run_result run(const ref::mat& a, const ref::mat& b, const siglip_options& o) {
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::siglip_parameter_gradients pg;
  const T loss = contrastive::siglip_forward_backward(at, bt, ga, gb, o, &pg);
  return {double(loss), ga.template cast<double>(), gb.template cast<double>(), pg};
}

double loss_only(const ref::mat& a, const ref::mat& b, const siglip_options& o) {
  const rmat<double> ar = a, br = b;
  return contrastive::siglip_forward(ar, br, o).loss;
}

// Naive SigLIP as open_clip writes it: logits = t A B^T + b, labels 2I - 1,
// loss = -sum log sigmoid(labels * logits) / N, with log sigmoid(y) = -log(1 + e^{-y}).
struct naive_result {
  double loss;
  ref::mat ga, gb;
  double dlog_scale, dbias;
};
naive_result reference(const ref::mat& a, const ref::mat& b, const siglip_options& o) {
  const Eigen::Index n = a.rows();
  const ref::mat x = (o.scale * a * b.transpose()).array() + o.bias;
  const double w = o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(n) : 1.0;
  ref::mat g(n, n);
  naive_result r{0, {}, {}, 0, 0};
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < n; ++j) {
      const double z = i == j ? 1.0 : -1.0, y = z * x(i, j);
      r.loss += w * (y > 0 ? std::log1p(std::exp(-y)) : -y + std::log1p(std::exp(y)));
      g(i, j) = w * -z / (1 + std::exp(y));  // d/dx softplus(-z x) = -z sigmoid(-z x)
    }
  r.ga = o.scale * g * b;
  r.gb = o.scale * g.transpose() * a;
  r.dlog_scale = (g.array() * (x.array() - o.bias)).sum();
  r.dbias = g.sum();
  return r;
}

}  // namespace

TEMPLATE_TEST_CASE("siglip: tiled equals the naive reference", "[siglip]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{130, 17}}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 13 + sh.n));
    const ref::mat b = ref::normalized_rows(a + 0.7 * ref::random_matrix(sh.n, sh.d, 17 + sh.n));
    for (const double scale : {1.0, 10.0}) {
      for (const auto red : {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
        siglip_options o;
        o.scale = scale;
        o.bias = scale == 1.0 ? 0.3 : -10.0;
        o.reduction = red;
        const naive_result want = reference(a, b, o);
        for (const Eigen::Index tile :
             {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(sh.n, sh.d, scale, tile);
          const run_result got = run<TestType>(a, b, o);
          CHECK(std::abs(got.loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
          CHECK(ref::max_rel_diff(got.ga, want.ga) <= tol * 10);
          CHECK(ref::max_rel_diff(got.gb, want.gb) <= tol * 10);
          CHECK(std::abs(got.pg.log_scale - want.dlog_scale) <=
                tol * 10 * std::max(1.0, std::abs(want.dlog_scale)));
          CHECK(std::abs(got.pg.bias - want.dbias) <=
                tol * 10 * std::max(1.0, std::abs(want.dbias)));
          // The two-call form gives the same numbers, bitwise.
          const rmat<TestType> at = a.cast<TestType>(), bt = b.cast<TestType>();
          const auto saved = contrastive::siglip_forward(at, bt, o);
          rmat<TestType> ga(sh.n, sh.d), gb(sh.n, sh.d);
          const auto pg = contrastive::siglip_backward(at, bt, saved, ga, gb, o);
          CHECK(double(saved.loss) == got.loss);
          CHECK((ga.template cast<double>().array() == got.ga.array()).all());
          CHECK(pg.log_scale == got.pg.log_scale);
          CHECK(pg.bias == got.pg.bias);
        }
      }
    }
  }
}

TEST_CASE("siglip: finite-difference gradients in double", "[siglip][gradcheck]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 1}, shape{1, 4}, shape{5, 3}, shape{7, 4}}) {
    for (const double log_t : {0.3, 2.0}) {
      const ref::mat a = ref::random_matrix(sh.n, sh.d, 23 + sh.n, 0.7);
      const ref::mat b = ref::random_matrix(sh.n, sh.d, 29 + sh.d, 0.7);
      siglip_options o;
      o.scale = std::exp(log_t);
      o.bias = -1.5;
      o.tile_rows = o.tile_cols = 3;
      CAPTURE(sh.n, sh.d, log_t);
      const run_result r = run<double>(a, b, o);
      CHECK(
          ct::gradcheck(ref::mat(a), r.ga, [&](const ref::mat& x) { return loss_only(x, b, o); }));
      CHECK(
          ct::gradcheck(ref::mat(b), r.gb, [&](const ref::mat& x) { return loss_only(a, x, o); }));
      const double h = 1e-6;
      siglip_options op = o, om = o;
      op.scale = std::exp(log_t + h);
      om.scale = std::exp(log_t - h);
      const double fd_t = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
      CHECK(std::abs(r.pg.log_scale - fd_t) <= 1e-6 * std::max(1.0, std::abs(fd_t)));
      CHECK(r.pg.scale == Approx(r.pg.log_scale / o.scale).epsilon(1e-14));
      op = o;
      om = o;
      op.bias += h;
      om.bias -= h;
      const double fd_b = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
      CHECK(std::abs(r.pg.bias - fd_b) <= 1e-6 * std::max(1.0, std::abs(fd_b)));
    }
  }
}

TEST_CASE("siglip: identities and stability", "[siglip][identity]") {
  SECTION("orthogonal unit rows: log(1 + e^{-(t + b)}) + (N - 1) log(1 + e^{b})") {
    const Eigen::Index n = 6;
    const ref::mat e = ref::mat::Identity(n, n + 1);
    siglip_options o;
    o.scale = 3;
    o.bias = -1;
    o.tile_rows = o.tile_cols = 4;
    CHECK(run<double>(e, e, o).loss ==
          Approx(std::log1p(std::exp(-2.0)) + 5 * std::log1p(std::exp(-1.0))).epsilon(1e-13));
  }
  SECTION("float stays finite with huge logits (t = 1e4)") {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(40, 16, 90));
    const ref::mat b = ref::normalized_rows(a + 0.3 * ref::random_matrix(40, 16, 91));
    siglip_options o;
    o.scale = 1e4;
    o.bias = 0;
    o.tile_rows = o.tile_cols = 16;
    const run_result f = run<float>(a, b, o), d = run<double>(a, b, o);
    REQUIRE(std::isfinite(f.loss));
    REQUIRE(f.ga.allFinite());
    CHECK(std::abs(f.loss - d.loss) <= 1e-3 * std::abs(d.loss));
  }
}

TEST_CASE("siglip: workspace, accumulate, upstream, layouts, threads", "[siglip][api]") {
  const Eigen::Index n = 157, d = 48;
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 5)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 6)).cast<float>();
  siglip_options o;
  o.tile_rows = o.tile_cols = 16;
  o.num_threads = 1;
  rmat<float> ga1(n, d), gb1(n, d);
  const float l1 = contrastive::siglip_forward_backward(a, b, ga1, gb1, o);
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    siglip_options ot = o;
    ot.num_threads = threads;
    rmat<float> ga(n, d), gb(n, d);
    CHECK(contrastive::siglip_forward_backward(a, b, ga, gb, ot) == l1);
    CHECK((ga.array() == ga1.array()).all());
    CHECK((gb.array() == gb1.array()).all());
  }
  const std::size_t bytes = contrastive::siglip_workspace_bytes<float>(n, d, o);
  CHECK(contrastive::siglip_workspace_bytes(a, b, o) == bytes);
  std::vector<unsigned char> buf(bytes);
  const auto saved = contrastive::siglip_forward(a, b, o, {buf.data(), buf.size()});
  CHECK(saved.loss == l1);
  rmat<float> ga2 = rmat<float>::Constant(n, d, 1.0f), gb2 = ga2;
  siglip_options acc = o;
  acc.accumulate = true;
  contrastive::siglip_backward(a, b, saved, ga2, gb2, acc, 2.0, {buf.data(), buf.size()});
  CHECK(ref::max_rel_diff(((ga2.array() - 1.0f) / 2.0f).cast<double>(), ga1.cast<double>()) < 1e-5);
  Eigen::MatrixXf ac = a, bc = b, gac(n, d), gbc(n, d);  // column-major
  CHECK(contrastive::siglip_forward_backward(ac, bc, gac, gbc, o) == Approx(l1).epsilon(1e-6));
  CHECK_THROWS_AS(contrastive::siglip_forward(a, b, o, {buf.data(), 64}),
                  contrastive::invalid_argument);
}

TEST_CASE("siglip: bad input throws and leaves the outputs untouched", "[siglip][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 4, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  siglip_options o;
  const auto saved = contrastive::siglip_forward(a, b, o);
  rmat<double> pa = rmat<double>::Constant(n, d, 3.5), pb = pa;
  auto untouched = [&] { return (pa.array() == 3.5).all() && (pb.array() == 3.5).all(); };
  siglip_options bad = o;
  bad.scale = 0;
  CHECK_THROWS_WITH(contrastive::siglip_forward_backward(a, b, pa, pb, bad),
                    "siglip_forward: 'scale' must be finite and > 0, got 0");
  bad = o;
  bad.bias = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(contrastive::siglip_backward(a, b, saved, pa, pb, bad),
                    "siglip_backward: 'bias' must be finite, got inf");
  bad = o;
  bad.reduction = static_cast<contrastive::loss_reduction>(7);
  CHECK_THROWS_WITH(contrastive::siglip_forward(a, b, bad),
                    "siglip_forward: 'reduction' has an invalid value (7)");
  CHECK(untouched());
  rmat<double> an = a;
  an(1, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(contrastive::siglip_forward_backward(an, b, pa, pb, o),
                    "siglip_forward: 'a' has a non-finite value (nan) at row 1, column 1");
  const rmat<double> wrong = ref::random_matrix(n + 1, d, 3);
  CHECK_THROWS_AS(contrastive::siglip_forward(a, wrong, o), invalid_argument);
  rmat<double> g2(n, d + 1);
  CHECK_THROWS_AS(contrastive::siglip_backward(a, b, saved, g2, pb, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::siglip_backward(a, b, saved, pa, pa, o), invalid_argument);
  bad = o;
  bad.scale = 5;
  CHECK_THROWS_AS(contrastive::siglip_backward(a, b, saved, pa, pb, bad), invalid_argument);
  // Logits that would overflow are rejected before any gradient is written.
  const rmat<float> big = (1e19 * ref::random_matrix(n, d, 4)).cast<float>();
  rmat<float> fa = rmat<float>::Constant(n, d, 3.5f), fb = fa;
  CHECK_THROWS_AS(contrastive::siglip_forward_backward(big, big, fa, fb, o), invalid_argument);
  CHECK((fa.array() == 3.5f).all());
  CHECK(untouched());
}
