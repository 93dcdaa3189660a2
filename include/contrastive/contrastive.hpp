#ifndef CONTRASTIVE_CONTRASTIVE_HPP
#define CONTRASTIVE_CONTRASTIVE_HPP

// Umbrella header: core, the raw and Eigen adapters, every loss, the samplers and the normaliser
// state. Never includes the xtensor or torch adapters, cuda/ or distributed/.
#include "contrastive/version.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/core/l2_normalize.hpp"
#include "contrastive/adapters/raw.hpp"
#include "contrastive/adapters/eigen.hpp"
#include "contrastive/losses/info_nce.hpp"
#include "contrastive/losses/nt_xent.hpp"
#include "contrastive/losses/dcl.hpp"
#include "contrastive/losses/supcon.hpp"
#include "contrastive/losses/siglip.hpp"
#include "contrastive/losses/moco.hpp"
#include "contrastive/losses/feature_separation.hpp"
#include "contrastive/losses/brownian_bridge.hpp"
#include "contrastive/losses/geometric_consistency.hpp"
#include "contrastive/losses/gamma_nce.hpp"
#include "contrastive/sampling/philox.hpp"
#include "contrastive/sampling/brownian_bridge.hpp"
#include "contrastive/sampling/gamma.hpp"
#include "contrastive/state/normalizer_state.hpp"
#include "contrastive/state/negative_queue.hpp"

#endif  // CONTRASTIVE_CONTRASTIVE_HPP
