#ifndef CONTRASTIVE_LOSSES_SIGLIP_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_SIGLIP_OPTIONS_HPP

// The options of siglip.hpp (the sigmoid loss of SigLIP), Eigen-free.

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of the SigLIP loss; tile_rows, tile_cols and num_threads come from tiling_options.
struct siglip_options : tiling_options {
  double scale = 10;  ///< t > 0: logits are t <a_i, b_j> + bias (SigLIP initialises log t = log 10)
  double bias = -10;  ///< b, finite (SigLIP initialises -10)
  loss_reduction reduction = loss_reduction::mean;  ///< mean: the sum over pairs / N; sum: the sum
  bool accumulate = false;  ///< backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients (times upstream).
struct siglip_parameter_gradients {
  double log_scale = 0;  ///< dL/dlog t
  double scale = 0;      ///< dL/dt = dL/dlog t / t
  double bias = 0;       ///< dL/db
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SIGLIP_OPTIONS_HPP
