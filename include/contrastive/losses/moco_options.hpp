#ifndef CONTRASTIVE_LOSSES_MOCO_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_MOCO_OPTIONS_HPP

// The options of moco.hpp (InfoNCE against a queue of negatives), Eigen-free.

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of the queue loss; tile_rows, tile_cols and num_threads come from tiling_options.
struct moco_options : tiling_options {
  double temperature = 0.07;  ///< tau > 0; logits are <a_i, .> / tau (MoCo v1: 0.07, v2: 0.2)
  /// true: every key of the batch is a candidate (N + K logits per query, the other keys are
  /// negatives too); false: MoCo's own form, the query's own key and the K queued keys (1 + K).
  bool batch_negatives = true;
  loss_reduction reduction = loss_reduction::mean;  ///< mean over the N queries, or sum
  bool accumulate = false;  ///< backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using moco_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_MOCO_OPTIONS_HPP
