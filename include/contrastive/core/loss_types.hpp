#ifndef CONTRASTIVE_CORE_LOSS_TYPES_HPP
#define CONTRASTIVE_CORE_LOSS_TYPES_HPP

// Option and result types shared by the losses, free of Eigen so that the CUDA path (nvcc) can
// use them too.

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// How per-anchor losses are combined: the mean over valid anchors (those with a positive), or
/// their sum.
enum class loss_reduction { mean, sum };

/// Tile sizes and thread count, embedded the same way in every loss's options (each options
/// struct derives from it). A loss that has no use for one of them says so on its options.
struct tiling_options {
  index_t tile_rows = 256;  // rows per tile (> 0)
  index_t tile_cols = 256;  // columns per tile (> 0)
  int num_threads = 0;      // 0: all OpenMP threads (1 without OpenMP); results do not depend on it
  // The GPU's throwing calls scan their device inputs first (one pass: NaN / Inf, and zero-norm
  // rows where the CPU rejects them) for the CPU's messages; false skips that pass for trusted
  // inputs. The CPU path always scans.
  bool scan_inputs = true;
};

/// Gradient of a loss with respect to its temperature, in the three usual parameterisations:
/// theta = log(1/tau) (CLIP's learnable logit scale), tau itself and lambda = 1/tau.
struct temperature_gradient {
  double log_scale = 0;    // dL/dtheta
  double temperature = 0;  // dL/dtau = -dL/dtheta / tau
  double scale = 0;        // dL/dlambda = tau dL/dtheta

  static temperature_gradient from_log_scale(double dtheta, double tau) noexcept {
    return temperature_gradient{dtheta, -dtheta / tau, dtheta * tau};
  }
};

namespace detail {
/// Hook of the generic front-end functions for device views (memory-space tag device_memory):
/// cuda/<loss>.cuh specialises it for its loss tag; without that header it is unavailable and
/// the front-end says which header to include.
template <class LossTag, class View>
struct device_backend {
  static constexpr bool available = false;
};
struct info_nce_tag {};
struct nt_xent_tag {};
struct gamma_nce_tag {};
struct feature_uniformity_tag {};
struct feature_separation_tag {};
struct feature_orthogonality_tag {};
struct in_modal_contrastive_tag {};
struct geometric_consistency_tag {};
struct brownian_bridge_loss_tag {};
struct bridge_sampler_tag {};
struct gamma_sampler_tag {};

/// Does A view device memory? Then the generic entry points hand it to the CUDA path.
template <class A, bool = is_tensor_like<A>::value>
struct is_device_input : std::false_type {};
template <class A>
struct is_device_input<A, true>
    : std::is_same<typename decltype(as_view(std::declval<const A&>()))::memory_space,
                   device_memory> {};

/// The CUDA implementation of loss Tag for A's element type, with a clear error when its header
/// was not included.
template <class Tag, class A>
struct device_backend_of {
  using type = device_backend<
      Tag, std::remove_const_t<typename decltype(as_view(std::declval<const A&>()))::value_type>>;
  static_assert(type::available,
                "contrastive: device views need the CUDA header of the loss or sampler called, "
                "#include <contrastive/cuda/NAME.cuh> with NAME one of info_nce, nt_xent, "
                "gamma_nce, feature_separation, geometric_consistency, brownian_bridge, gamma, in "
                "a file compiled by nvcc");
};

/// Does the writable O view device memory? (fill_gamma's output.)
template <class O, class = void>
struct is_device_output : std::false_type {};
template <class O>
struct is_device_output<O, std::void_t<decltype(as_view(std::declval<O>()))>>
    : std::is_same<typename decltype(as_view(std::declval<O>()))::memory_space, device_memory> {};
}  // namespace detail

namespace cuda {
// What the CUDA forwards return (cuda/info_nce.cuh, nt_xent.cuh, gamma_nce.cuh,
// feature_separation.cuh, geometric_consistency.cuh, brownian_bridge.cuh) and the device state;
// declared here so that the generic functions have overloads for them.
struct info_nce_device_saved;
struct nt_xent_device_saved;
struct gamma_nce_device_saved;
class device_normalizer_state;
struct feature_uniformity_device_saved;
struct feature_separation_device_saved;
struct feature_orthogonality_device_saved;
struct in_modal_contrastive_device_saved;
template <class T>
struct geometric_consistency_device_saved;
struct brownian_bridge_loss_device_saved;
}  // namespace cuda

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_LOSS_TYPES_HPP
