#ifndef CONTRASTIVE_LOSSES_INFO_NCE_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_INFO_NCE_OPTIONS_HPP

// The options of info_nce.hpp, apart so that the CUDA path (cuda/info_nce.cuh, nvcc) takes the same
// struct without Eigen.

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of InfoNCE / CLIP; tile_rows, tile_cols and num_threads come from tiling_options.
struct info_nce_options : tiling_options {
  double temperature = 0.07;   // tau > 0; logits are <a_i, b_j> / tau
  bool symmetric = true;       // true: CLIP, the mean of the a->b and b->a losses
  double label_smoothing = 0;  // eps in [0, 1)
  // Multiple positives (SupCon style): b_j is a positive of a_i when labels_b[j] == labels_a[i].
  // Give both or neither; without labels the positive of a_i is b_i.
  vector_view<const std::int64_t> labels_a{};
  vector_view<const std::int64_t> labels_b{};
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
  // Cached mode: the forward keeps every logit tile in the caller's workspace (sized by the
  // workspace query with this option set, about N^2 elements) and a backward given the same
  // workspace reads them instead of recomputing. forward_backward allocates it when no
  // workspace is given. Inputs must not change between the two calls.
  bool cache_logits = false;
  // Debiased negatives (Chuang et al. 2020): the class prior tau+ in [0, 1); 0 is off.
  // Hard negatives (Robinson et al. 2021): the concentration beta >= 0; 0 is off. Either one
  // selects l_i = log(e^{s_p} + Ng) - s_p over the negatives only, Ng clamped below at
  // M e^{-1/tau} (docs/debiased.md); one positive per anchor (no labels, no smoothing).
  double debias_tau_plus = 0;
  double hard_negative_beta = 0;
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using info_nce_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_INFO_NCE_OPTIONS_HPP
