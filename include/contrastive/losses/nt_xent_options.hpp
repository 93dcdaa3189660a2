#ifndef CONTRASTIVE_LOSSES_NT_XENT_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_NT_XENT_OPTIONS_HPP

// The options of nt_xent.hpp, apart so that the CUDA path (cuda/nt_xent.cuh, nvcc) takes the same
// struct without Eigen.

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of NT-Xent; tiles are square, min(tile_rows, tile_cols) (from tiling_options).
struct nt_xent_options : tiling_options {
  double temperature = 0.1;    // tau > 0; logits are <z_i, z_j> / tau
  double label_smoothing = 0;  // eps in [0, 1); spread over the 2N - 1 candidates
  // Multiple positives: one label per sample (length N), inherited by both views. Without
  // labels the positive of view i is the other view of the same sample.
  vector_view<const std::int64_t> labels{};
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;    // backward adds into the gradients instead of overwriting them
  bool cache_logits = false;  // cached mode, as in info_nce_options (about 2 N^2 elements)
  // Debiased negatives (Chuang et al. 2020): the class prior tau+ in [0, 1); 0 is off.
  // Hard negatives (Robinson et al. 2021): the concentration beta >= 0; 0 is off. Either one
  // selects l_i = log(e^{s_p} + Ng) - s_p over the negatives only, Ng clamped below at
  // M e^{-1/tau} (docs/debiased.md); one positive per anchor (no labels, no smoothing).
  double debias_tau_plus = 0;
  double hard_negative_beta = 0;
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using nt_xent_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_NT_XENT_OPTIONS_HPP
