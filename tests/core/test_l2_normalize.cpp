#include "support/test_config.hpp"

#include <cmath>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {
using rmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
}

TEST_CASE("l2_normalize: unit rows, in place, and the epsilon floor", "[l2_normalize]") {
  const rmat x = ref::random_matrix(6, 4, 3);
  rmat y(6, 4);
  contrastive::l2_normalize(x, y);
  for (Eigen::Index i = 0; i < 6; ++i) {
    CHECK(y.row(i).norm() == Approx(1.0).epsilon(1e-15));
    CHECK((y.row(i) * x.row(i).norm() - x.row(i)).cwiseAbs().maxCoeff() < 1e-14);
  }
  rmat z = x;
  contrastive::l2_normalize(z, z);
  CHECK((z.array() == y.array()).all());
  rmat tiny = rmat::Constant(1, 3, 1e-14), out(1, 3);
  contrastive::l2_normalize(tiny, out);
  CHECK(out(0, 0) == Approx(1e-2));  // divided by eps = 1e-12, not by the norm
  Eigen::MatrixXf xf = x.cast<float>(), yf(6, 4);
  contrastive::l2_normalize(xf, yf);
  CHECK(yf.row(2).norm() == Approx(1.0f).epsilon(1e-6));
}

TEST_CASE("l2_normalize_backward: finite differences", "[l2_normalize][gradcheck]") {
  const ref::mat x = ref::random_matrix(5, 3, 9);
  const ref::mat g = ref::random_matrix(5, 3, 10);  // dL/dy of L = <g, y>
  auto loss = [&](const ref::mat& xx) {
    rmat y(xx.rows(), xx.cols());
    const rmat xr = xx;
    contrastive::l2_normalize(xr, y);
    return (y.array() * g.array()).sum();
  };
  const rmat xr = x, gr = g;
  rmat gx(5, 3);
  contrastive::l2_normalize_backward(xr, gr, gx);
  CHECK(ct::gradcheck(ref::mat(x), gx, loss));
  // In place on the upstream gradient.
  rmat gin = gr;
  contrastive::l2_normalize_backward(xr, gin, gin);
  CHECK((gin.array() == gx.array()).all());
}

TEST_CASE("l2_normalize composed with InfoNCE: gradients w.r.t. the raw inputs",
          "[l2_normalize][gradcheck]") {
  const ref::mat a = ref::random_matrix(6, 4, 11), b = ref::random_matrix(6, 4, 12);
  contrastive::info_nce_options o;
  o.temperature = 0.2;
  o.tile_rows = o.tile_cols = 4;
  auto loss = [&](const ref::mat& xa, const ref::mat& xb) {
    const rmat ra = xa, rb = xb;
    rmat na(6, 4), nb(6, 4);
    contrastive::l2_normalize(ra, na);
    contrastive::l2_normalize(rb, nb);
    return contrastive::info_nce_forward(na, nb, o).loss;
  };
  const rmat ra = a, rb = b;
  rmat na(6, 4), nb(6, 4), gna(6, 4), gnb(6, 4), ga(6, 4), gb(6, 4);
  contrastive::l2_normalize(ra, na);
  contrastive::l2_normalize(rb, nb);
  contrastive::info_nce_forward_backward(na, nb, gna, gnb, o);
  contrastive::l2_normalize_backward(ra, gna, ga);
  contrastive::l2_normalize_backward(rb, gnb, gb);
  CHECK(ct::gradcheck(ref::mat(a), ga, [&](const ref::mat& x) { return loss(x, b); }));
  CHECK(ct::gradcheck(ref::mat(b), gb, [&](const ref::mat& x) { return loss(a, x); }));
}

TEST_CASE("l2_normalize: bad input", "[l2_normalize][errors]") {
  rmat x = ref::random_matrix(3, 2, 1), y(3, 3), ok(3, 2);
  CHECK_THROWS_AS(contrastive::l2_normalize(x, y), contrastive::invalid_argument);
  x(1, 1) = std::nan("");
  CHECK_THROWS_WITH(contrastive::l2_normalize(x, ok),
                    "l2_normalize: 'x' has a non-finite value (nan) at row 1, column 1");
  rmat big(3, 4);
  const auto shifted = contrastive::make_view(big.data() + 1, 3, 2, 4, 1);
  const auto base = contrastive::make_view(static_cast<const double*>(big.data()), 3, 2, 4, 1);
  big.setOnes();
  CHECK_THROWS_AS(contrastive::l2_normalize(base, shifted), contrastive::invalid_argument);
  rmat g(3, 2);
  g.setOnes();
  x.setOnes();
  CHECK_THROWS_AS(contrastive::l2_normalize_backward(x, g, x), contrastive::invalid_argument);
}
