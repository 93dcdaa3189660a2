#ifndef CONTRASTIVE_LOSSES_DCL_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_DCL_OPTIONS_HPP

// The options of dcl.hpp (decoupled contrastive learning, DCL and DCLW), Eigen-free.

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of DCL / DCLW over the 2N views [a; b]; tiles are square, min(tile_rows, tile_cols).
struct dcl_options : tiling_options {
  double temperature = 0.1;  ///< tau > 0; logits are <z_i, z_j> / tau
  /// DCLW: weight the positive term of sample k by w_k = 2 - N softmax_k(<a_k, b_k> / sigma).
  bool weighted = false;
  double sigma = 0.5;  ///< the von Mises-Fisher concentration of DCLW (> 0)
  loss_reduction reduction = loss_reduction::mean;  ///< mean over the 2N anchors, or sum
  bool accumulate = false;  ///< backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using dcl_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_DCL_OPTIONS_HPP
