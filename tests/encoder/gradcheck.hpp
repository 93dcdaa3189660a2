#ifndef CONTRASTIVE_TESTS_ENCODER_GRADCHECK_HPP
#define CONTRASTIVE_TESTS_ENCODER_GRADCHECK_HPP

// Central finite differences in double (h = 1e-6) for the encoder stack's layers.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "encoder/layers.hpp"

namespace enc_test {

using encoder::index_t;
using mat = encoder::matrix<double>;

inline mat random_matrix(index_t r, index_t c, std::uint64_t seed, double scale = 1.0) {
  encoder::rng g(seed, 0, 0, encoder::stream_misc);
  mat m(r, c);
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) m(i, j) = scale * g.normal();
  return m;
}

/// max_k |analytic_k - numeric_k| / max(1, max_k |numeric_k|): the relative error the checks
/// below bound by 1e-6.
inline double relative_error(const mat& analytic, const mat& numeric) {
  const double scale = std::max(1.0, numeric.cwiseAbs().maxCoeff());
  return (analytic - numeric).cwiseAbs().maxCoeff() / scale;
}

/// Numeric gradient of f with respect to every entry of x (x is restored afterwards).
inline mat numeric_gradient(mat& x, const std::function<double()>& f, double h = 1e-6) {
  mat g(x.rows(), x.cols());
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t j = 0; j < x.cols(); ++j) {
      const double old = x(i, j);
      x(i, j) = old + h;
      const double fp = f();
      x(i, j) = old - h;
      const double fm = f();
      x(i, j) = old;
      g(i, j) = (fp - fm) / (2 * h);
    }
  return g;
}

struct layer_check {
  double input_error = 0;
  double max_param_error = 0;
  std::string worst_param;
};

/// Checks a layer's backward against finite differences of L = sum(R .* layer(x)).
inline layer_check check_layer(encoder::layer<double>& l, mat x, std::uint64_t seed) {
  mat y = l.forward(x);
  const mat r = random_matrix(y.rows(), y.cols(), seed + 1000);
  auto f = [&]() { return l.forward(x).cwiseProduct(r).sum(); };
  auto params = l.parameters();
  encoder::zero_grad(params);
  l.forward(x);
  const mat gx = l.backward(r);
  layer_check out;
  out.input_error = relative_error(gx, numeric_gradient(x, f));
  for (auto* p : params) {
    const mat analytic = p->grad;
    const double e = relative_error(analytic, numeric_gradient(p->value, f));
    if (e >= out.max_param_error) {
      out.max_param_error = e;
      out.worst_param = p->name;
    }
  }
  return out;
}

}  // namespace enc_test

#endif  // CONTRASTIVE_TESTS_ENCODER_GRADCHECK_HPP
