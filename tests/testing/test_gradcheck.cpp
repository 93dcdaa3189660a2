#include "support/test_config.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

using rmd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ref::mat;

// f(x) = sum_ij c_ij sin(x_ij) + (sum_ij x_ij)^2 / 2, df/dx_ij = c_ij cos(x_ij) + sum(x).
struct test_fn {
  mat c;
  template <class X>
  double operator()(const X& x) const {
    const auto v = contrastive::as_view(x);
    double s = 0, t = 0;
    for (Eigen::Index i = 0; i < v.rows(); ++i)
      for (Eigen::Index j = 0; j < v.cols(); ++j) {
        s += c(i, j) * std::sin(v(i, j));
        t += v(i, j);
      }
    return s + 0.5 * t * t;
  }
  mat grad(const mat& x) const {
    return (c.array() * x.array().cos()).matrix() + mat::Constant(x.rows(), x.cols(), x.sum());
  }
};

test_fn make_fn(Eigen::Index r, Eigen::Index k) { return test_fn{ref::random_matrix(r, k, 7)}; }

}  // namespace

TEST_CASE("gradcheck: a correct gradient passes, on any tensor type", "[gradcheck]") {
  const test_fn f = make_fn(4, 3);
  mat x = ref::random_matrix(4, 3, 1, 2.0);
  const mat g = f.grad(x);
  SECTION("column-major Eigen") {
    const auto r = ct::gradcheck(x, g, f);
    INFO(r);
    CHECK(r.passed);
    CHECK(bool(r));
    CHECK(r.failures == 0);
    CHECK(r.max_rel_error < 1e-8);
    CHECK(r.rows == 4);
    CHECK(r.cols == 3);
  }
  SECTION("row-major point, float gradient, Eigen Map of a raw buffer") {
    rmd xr = x;
    const Eigen::MatrixXf gf = g.cast<float>();
    ct::gradcheck_options o;
    o.rtol = 1e-6;  // float rounding of g is ~1e-7 relative to the scale
    CHECK(ct::gradcheck(
        xr, gf, [&](const rmd& m) { return f(mat(m)); }, o));
    std::vector<double> buf(x.data(), x.data() + x.size());  // column-major storage
    CHECK(ct::gradcheck(Eigen::Map<mat>(buf.data(), 4, 3), g, f));
  }
  SECTION("strided raw views, a closure over the point") {
    std::vector<double> buf(2 * 4 * 3, -99.0);  // every other element of a 4 x 6 row-major buffer
    auto v = contrastive::make_view(buf.data(), 4, 3, 6, 2);
    for (Eigen::Index i = 0; i < 4; ++i)
      for (Eigen::Index j = 0; j < 3; ++j) v(i, j) = x(i, j);
    const std::vector<double> before = buf;
    const auto r = ct::gradcheck(v, g, [&] { return f(v); });
    CHECK(r.passed);
    CHECK(std::memcmp(before.data(), buf.data(), buf.size() * sizeof(double)) ==
          0);  // restored bit for bit
  }
  SECTION("an owning temporary is checked at a copy; the original is untouched") {
    const mat x0 = x;
    CHECK(ct::gradcheck(mat(x), g, f));
    CHECK((x.array() == x0.array()).all());
  }
}

TEST_CASE("gradcheck: one wrong entry is caught and reported at its index", "[gradcheck]") {
  const test_fn f = make_fn(5, 4);
  mat x = ref::random_matrix(5, 4, 2);
  mat g = f.grad(x);
  g(3, 1) += 1e-3;
  const auto r = ct::gradcheck(x, g, f);
  CHECK_FALSE(r.passed);
  CHECK_FALSE(bool(r));
  CHECK(r.failures == 1);
  REQUIRE(r.worst.size() == 5);
  CHECK(r.worst[0].row == 3);
  CHECK(r.worst[0].col == 1);
  CHECK(r.worst[0].analytic == g(3, 1));
  CHECK(r.worst[0].numeric == Approx(g(3, 1) - 1e-3).epsilon(1e-8));
  CHECK(r.worst[0].abs_error == Approx(1e-3).epsilon(1e-4));
  CHECK(r.worst[0].rel_error == Approx(r.worst[0].abs_error / r.scale));
  CHECK(r.max_abs_error == r.worst[0].abs_error);
  CHECK(r.worst[1].abs_error < 1e-8);  // the others are right
  for (std::size_t k = 1; k < r.worst.size(); ++k)
    CHECK(r.worst[k - 1].abs_error >= r.worst[k].abs_error);
  const std::string s = r.summary();
  CHECK(s.find("FAILED") != std::string::npos);
  CHECK(s.find("1 entry over the bound") != std::string::npos);
  CHECK(s.find("(3, 1): analytic") != std::string::npos);
}

TEST_CASE("gradcheck: a sign flip and a factor 2 are caught", "[gradcheck]") {
  const test_fn f = make_fn(3, 4);
  mat x = ref::random_matrix(3, 4, 3);
  const mat g = f.grad(x);
  const auto flipped = ct::gradcheck(x, (-g).eval(), f);
  CHECK_FALSE(flipped.passed);
  CHECK(flipped.failures == 12);
  Eigen::Index wi = 0, wj = 0;  // the entry of largest |g|: its error 2 |g| is the worst
  g.cwiseAbs().maxCoeff(&wi, &wj);
  CHECK(flipped.worst[0].row == wi);
  CHECK(flipped.worst[0].col == wj);
  CHECK(flipped.worst[0].abs_error == Approx(2 * std::abs(g(wi, wj))).epsilon(1e-6));
  const auto doubled = ct::gradcheck(x, (2 * g).eval(), f);
  CHECK_FALSE(doubled.passed);
  CHECK(doubled.worst[0].analytic == Approx(2 * doubled.worst[0].numeric).epsilon(1e-6));
  CHECK(doubled.max_rel_error == Approx(g.cwiseAbs().maxCoeff() / doubled.scale).epsilon(1e-6));
}

TEST_CASE("gradcheck: non-finite gradients fail", "[gradcheck]") {
  const test_fn f = make_fn(2, 2);
  mat x = ref::random_matrix(2, 2, 4);
  mat g = f.grad(x);
  g(1, 0) = std::numeric_limits<double>::quiet_NaN();
  const auto r = ct::gradcheck(x, g, f);
  CHECK_FALSE(r.passed);
  CHECK(r.failures == 1);
  CHECK(r.worst[0].row == 1);
  CHECK(r.worst[0].col == 0);
  CHECK(std::isinf(r.worst[0].abs_error));
  g = f.grad(x);
  const auto nan_loss =
      ct::gradcheck(x, g, [](const mat&) { return std::numeric_limits<double>::quiet_NaN(); });
  CHECK_FALSE(nan_loss.passed);
  CHECK(nan_loss.failures == 4);
}

TEST_CASE("gradcheck: tolerances, step and report size are the caller's", "[gradcheck]") {
  const test_fn f = make_fn(4, 4);
  mat x = ref::random_matrix(4, 4, 5);
  mat g = f.grad(x);
  g(0, 2) += 1e-4;
  ct::gradcheck_options o;
  CHECK_FALSE(ct::gradcheck(x, g, f, o));
  o.rtol = 1e-3;  // bound 1e-3 * scale
  CHECK(ct::gradcheck(x, g, f, o));
  o.rtol = 0;
  o.atol = 2e-4;
  CHECK(ct::gradcheck(x, g, f, o));
  o.atol = 5e-5;
  CHECK_FALSE(ct::gradcheck(x, g, f, o));
  o = ct::gradcheck_options{};
  o.worst_entries = 2;
  CHECK(ct::gradcheck(x, g, f, o).worst.size() == 2);
  o.worst_entries = 100;
  CHECK(ct::gradcheck(x, g, f, o).worst.size() == 16);
  o.worst_entries = 0;
  CHECK(ct::gradcheck(x, g, f, o).worst.empty());
  // The scale floor: a gradient of size 1e-3 with an error of 1e-7 passes against max(1, |n|)
  // and fails relative to its own size.
  const mat small_x = 1e-3 * ref::random_matrix(2, 3, 6);
  auto sq = [](const mat& m) { return 0.5 * m.squaredNorm(); };  // gradient = x
  mat gs = small_x;
  gs(1, 1) += 1e-7;
  ct::gradcheck_options so;
  so.rtol = 1e-6;
  CHECK(ct::gradcheck(mat(small_x), gs, sq, so));
  so.scale_floor = 0;
  CHECK_FALSE(ct::gradcheck(mat(small_x), gs, sq, so));
  // A fixed step gives the same verdict on a smooth function.
  ct::gradcheck_options fixed;
  fixed.relative_step = false;
  fixed.step = 1e-5;
  CHECK(ct::gradcheck(x, f.grad(x), f, fixed));
}

TEST_CASE("numeric_gradient and compare_gradients", "[gradcheck]") {
  const test_fn f = make_fn(3, 5);
  mat x = ref::random_matrix(3, 5, 8);
  rmd n(3, 5);
  ct::numeric_gradient(x, f, n);
  CHECK((n - f.grad(x)).cwiseAbs().maxCoeff() < 1e-8);
  CHECK(ct::compare_gradients(f.grad(x), n));
  mat wrong = f.grad(x);
  wrong(2, 4) *= -1;
  const auto r = ct::compare_gradients(wrong, n);
  CHECK_FALSE(r.passed);
  CHECK(r.worst[0].row == 2);
  CHECK(r.worst[0].col == 4);
  CHECK(ct::weighted_sum(x, mat(mat::Ones(3, 5))) == Approx(x.sum()).epsilon(1e-14));
}

TEST_CASE("gradcheck: bad arguments throw contrastive::invalid_argument", "[gradcheck]") {
  const test_fn f = make_fn(3, 3);
  mat x = ref::random_matrix(3, 3, 9);
  const mat g = f.grad(x);
  CHECK_THROWS_WITH(ct::gradcheck(x, mat(g.leftCols(2)), f),
                    Catch::Contains("gradcheck: 'analytic' is 3 x 2, expected 3 x 3"));
  CHECK_THROWS_AS(ct::compare_gradients(g, mat(2, 3)), contrastive::invalid_argument);
  ct::gradcheck_options o;
  o.step = 0;
  CHECK_THROWS_WITH(ct::gradcheck(x, g, f, o), Catch::Contains("'step' must be finite and > 0"));
  o = ct::gradcheck_options{};
  o.rtol = -1;
  CHECK_THROWS_AS(ct::gradcheck(x, g, f, o), contrastive::invalid_argument);
  CHECK_THROWS_WITH(ct::numeric_gradient(x, f, x), Catch::Contains("overlaps"));
  mat out(2, 2);
  CHECK_THROWS_AS(ct::numeric_gradient(x, f, out), contrastive::invalid_argument);
  std::vector<double> one(1, 0.0);
  CHECK_THROWS_WITH(ct::gradcheck(contrastive::make_view(one.data(), 2, 2, 0, 0),
                                  g.topLeftCorner(2, 2).eval(), f),
                    Catch::Contains("self-overlapping"));
  mat empty(0, 4);
  CHECK(ct::gradcheck(empty, mat(0, 4), [](const mat&) { return 0.0; }).passed);
}

TEST_CASE("gradcheck on the library: l2_normalize_backward through a strided view", "[gradcheck]") {
  const mat x = ref::random_matrix(4, 3, 10);
  const mat r = ref::random_matrix(4, 3, 11);
  auto loss = [&](const mat& m) {
    mat y(4, 3);
    contrastive::l2_normalize(m, y);
    return ct::weighted_sum(y, r);
  };
  mat gx(4, 3);
  contrastive::l2_normalize_backward(x, r, gx);
  CHECK(ct::gradcheck(mat(x), gx, loss));
  // A backward that forgets the projection (dL/dx = g / ||x||) is caught.
  mat bad(4, 3);
  for (Eigen::Index i = 0; i < 4; ++i) bad.row(i) = r.row(i) / x.row(i).norm();
  CHECK_FALSE(ct::gradcheck(mat(x), bad, loss).passed);
}
