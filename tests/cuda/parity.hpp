#ifndef CONTRASTIVE_TESTS_CUDA_PARITY_HPP
#define CONTRASTIVE_TESTS_CUDA_PARITY_HPP

// The Catch2 side's (g++) helpers of the GPU-versus-CPU parity tests: unit-row inputs and the
// relative error of a result.

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cuda/info_nce_kernels.hpp"

namespace cuda_test {

/// n x d row-major Gaussian rows, scaled to unit norm unless `unit` is false.
inline std::vector<double> unit_rows(int n, int d, unsigned seed, bool unit = true) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g;
  std::vector<double> x(static_cast<std::size_t>(n) * d);
  for (auto& v : x) v = g(rng);
  for (int i = 0; i < n && unit; ++i) {
    double s = 0;
    for (int k = 0; k < d; ++k) s += x[i * d + k] * x[i * d + k];
    for (int k = 0; k < d; ++k) x[i * d + k] /= std::sqrt(s);
  }
  return x;
}

struct tolerance {
  double loss, stats, grad, temperature;
};
/// What the GPU reaches against the CPU in double on the same rounded inputs: tf32 rounds the
/// inputs of every product to 10 mantissa bits; bf16 and fp16 inputs are exact in the reference,
/// but gradient blocks (G, scaled by 2^k) and the outputs are stored in the input type.
inline tolerance tolerance_for(dtype t) {
  switch (t) {
    case dtype::f32:
      return {2e-5, 2e-5, 2e-4, 2e-4};
    case dtype::tf32:
      return {2e-2, 2e-2, 3e-2, 5e-2};
    case dtype::f16:
      return {2e-5, 2e-5, 6e-3, 1e-3};
    case dtype::bf16:
      return {2e-5, 2e-5, 2.5e-2, 1e-3};
  }
  return {};
}

inline double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double v : x) m = std::max(m, std::abs(v));
  return m;
}

/// max |x - y| over max(max |y|, floor); infinite when x holds a non-finite value or the sizes
/// differ.
inline double rel_error(const std::vector<double>& x, const std::vector<double>& y,
                        double floor = 1e-30) {
  if (x.size() != y.size()) return INFINITY;
  double e = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return INFINITY;
    e = std::max(e, std::abs(x[i] - y[i]));
  }
  return e / std::max(max_abs(y), floor);
}

}  // namespace cuda_test

#endif
