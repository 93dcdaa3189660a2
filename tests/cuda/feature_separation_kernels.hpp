#ifndef CONTRASTIVE_TESTS_CUDA_FEATURE_SEPARATION_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_FEATURE_SEPARATION_KERNELS_HPP

// Host functions (built by nvcc in feature_separation_kernels.cu) that run the GPU deep feature
// separation of cuda/feature_separation.cuh and return plain values to the Catch2 side (g++).

#include <string>
#include <vector>

#include <contrastive/losses/feature_separation_options.hpp>

#include "cuda/info_nce_kernels.hpp"

namespace cuda_test {

struct separation_case {
  int n = 0, d = 0;
  double orthogonality_weight = 1, contrastive_weight = 1, uniformity_weight = 1;
  double temperature = 0.1, t = 2;
  bool wang_isola = false;
  double upstream = 1;
  bool accumulate = false;          // gradients start at 0.5
  bool generic = false;             // through the generic contrastive::feature_* functions
  bool uniformity_only = false;     // inputs a_ind, b_ind
  bool orthogonality_only = false;  // inputs a, b, a_ind, b_ind
  bool in_modal_only = false;       // inputs a_ind, b_ind, a_ind_aug, b_ind_aug
};

inline contrastive::feature_separation_options separation_options(const separation_case& c) {
  contrastive::feature_separation_options o;
  o.orthogonality_weight = c.orthogonality_weight;
  o.contrastive_weight = c.contrastive_weight;
  o.uniformity_weight = c.uniformity_weight;
  o.temperature = c.temperature;
  o.uniformity_t = c.t;
  o.uniformity = c.wang_isola ? contrastive::uniformity_form::wang_isola
                              : contrastive::uniformity_form::literal;
  o.accumulate = c.accumulate;
  return o;
}

struct separation_result {
  double loss = 0;
  double log_sum_a = 0, log_sum_b = 0;     // uniformity_only
  std::vector<std::vector<double>> grads;  // 6 (combined) or 2 (uniformity) n x d matrices
  double grad_temperature = 0;
  std::string error;
};

/// x holds the six inputs a, b, a_ind, b_ind, a_ind_aug, b_ind_aug (a term alone: its own inputs,
/// in that order), n x d row-major each, rounded to t on the device.
separation_result run_feature_separation(dtype t, const separation_case& c,
                                         const std::vector<std::vector<double>>& x);

/// Workspace bytes of the GPU uniformity term (no device needed).
std::size_t uniformity_workspace_bytes(dtype t, int n, int d);

}  // namespace cuda_test

#endif
