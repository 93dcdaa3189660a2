#ifndef CONTRASTIVE_TESTS_ENCODER_GRADCHECK_HPP
#define CONTRASTIVE_TESTS_ENCODER_GRADCHECK_HPP

// Gradient checks of the encoder stack's layers on the library's checker
// (contrastive/testing/gradcheck.hpp: central differences in double, h = 1e-6 max(1, |x|)).

#include <cstdint>
#include <string>

#include <contrastive/testing/gradcheck.hpp>

#include "encoder/layers.hpp"

namespace enc_test {

namespace ct = contrastive::testing;
using encoder::index_t;
using mat = encoder::matrix<double>;

inline mat random_matrix(index_t r, index_t c, std::uint64_t seed, double scale = 1.0) {
  encoder::rng g(seed, 0, 0, encoder::stream_misc);
  mat m(r, c);
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) m(i, j) = scale * g.normal();
  return m;
}

struct layer_check {
  ct::gradcheck_result input;  // dL/dx
  double input_error = 0;      // input.max_rel_error
  double max_param_error = 0;  // the largest max_rel_error over the parameters
  std::string worst_param;
};

/// Checks a layer's backward against finite differences of L = sum(R .* layer(x)).
inline layer_check check_layer(encoder::layer<double>& l, mat x, std::uint64_t seed) {
  mat y = l.forward(x);
  const mat r = random_matrix(y.rows(), y.cols(), seed + 1000);
  auto f = [&]() { return ct::weighted_sum(l.forward(x), r); };
  auto params = l.parameters();
  encoder::zero_grad(params);
  l.forward(x);
  const mat gx = l.backward(r);
  layer_check out;
  out.input = ct::gradcheck(x, gx, f);
  out.input_error = out.input.max_rel_error;
  for (auto* p : params) {
    const mat analytic = p->grad;
    const double e = ct::gradcheck(p->value, analytic, f).max_rel_error;
    if (e >= out.max_param_error) {
      out.max_param_error = e;
      out.worst_param = p->name;
    }
  }
  return out;
}

}  // namespace enc_test

#endif  // CONTRASTIVE_TESTS_ENCODER_GRADCHECK_HPP
