#ifndef CONTRASTIVE_SAMPLING_GAMMA_HPP
#define CONTRASTIVE_SAMPLING_GAMMA_HPP

// Gamma(alpha, rate) variates on the library's Philox streams (docs/gamma_sampler.md, [LIB]:
// the layout and block usage are the library's own, pinned by the known answers listed there).
//
// Marsaglia and Tsang's method (ACM TOMS 26(3), 2000) for alpha >= 1, with the standard boost
// Gamma(alpha) = Gamma(alpha + 1) * U^(1/alpha) for alpha < 1. Rejection attempt k consumes
// exactly Philox block k of the stream (seed, id, step, stream):
//
//   a = alpha < 1 ? alpha + 1 : alpha;   d = a - 1/3;   c = 1/sqrt(9 d)
//   for k = 0, 1, ...:  (w0, w1, w2, w3) = block k
//       x = sqrt(-2 log u(w0)) cos(2 pi u(w1))             (box_muller, as in philox.hpp)
//       v = 1 + c x;   if v <= 0: next k
//       v = v^3;  U = u(w2)
//       if U < 1 - 0.0331 x^4  or  log U < x^2/2 + d (1 - v + log v):
//           g = d v;   if alpha < 1: g *= u(w3)^(1/alpha)
//           return g / rate
//
// Every draw is a pure function of (alpha, rate, seed, id, step, stream): it does not depend on
// the order of the calls, the tiling or the thread count, and device code that reuses these
// CONTRASTIVE_HOST_DEVICE functions sees the same uint32 words bit for bit (the transcendental
// functions may differ by an ulp between libm and device math, so g agrees to ~1e-12 relative).
// Acceptance is above 0.95, so a draw costs 1.00-1.05 Philox blocks on average.
//
// Two layers:
//   * gamma_variate / gamma_standard / gamma_log_standard: unchecked, noexcept, host-device;
//   * sample_gamma / fill_gamma: checked host entry points (alpha > 0, rate > 0, both finite),
//     throwing contrastive::invalid_argument.

#include <math.h>

#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/sampling/philox.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// One accepted Marsaglia-Tsang draw, kept in two factors so that tiny shapes can be handled in
/// the log domain: g = dv * exp(log_boost) (log_boost = log(u(w3)) / alpha for alpha < 1, else 0).
struct gamma_draw {
  double dv = 0;             // d v^3 of the accepted attempt
  double log_boost = 0;      // 0 when alpha >= 1
  std::uint32_t blocks = 0;  // Philox blocks consumed (attempts made)
};

namespace detail {

/// Constants of the method for one shape.
struct gamma_constants {
  double d = 0, c = 0, inv_alpha = 0;
  bool boost = false;
};

CONTRASTIVE_HOST_DEVICE inline gamma_constants gamma_setup(double alpha) noexcept {
  gamma_constants k;
  k.boost = alpha < 1.0;
  const double a = k.boost ? alpha + 1.0 : alpha;
  k.d = a - 1.0 / 3.0;
  k.c = 1.0 / ::sqrt(9.0 * k.d);
  k.inv_alpha = 1.0 / alpha;
  return k;
}

CONTRASTIVE_HOST_DEVICE inline gamma_draw gamma_run(const gamma_constants& k,
                                                    const philox_stream& s) noexcept {
  gamma_draw out;
  // A stream has 2^28 blocks; acceptance > 0.95 makes running out impossible in practice
  // (probability < 0.05^(2^28)), but the loop stays bounded for device code.
  for (std::uint32_t blk = 0; blk < 0x0FFFFFFFu; ++blk) {
    const philox_block w = s.block(blk);
    const double x = box_muller(w.w[0], w.w[1]);
    double v = 1.0 + k.c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = uniform_open01(w.w[2]);
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2 || ::log(u) < 0.5 * x2 + k.d * (1.0 - v + ::log(v))) {
      out.dv = k.d * v;
      out.log_boost = k.boost ? ::log(uniform_open01(w.w[3])) * k.inv_alpha : 0.0;
      out.blocks = blk + 1;
      return out;
    }
  }
  out.dv = __builtin_nan("");  // quiet NaN; numeric_limits is host-only under nvcc
  out.blocks = 0x0FFFFFFFu;
  return out;
}

/// The draw as a number: dv exp(log_boost), without the exp when there is no boost.
CONTRASTIVE_HOST_DEVICE inline double gamma_value(const gamma_draw& g) noexcept {
  return g.log_boost == 0.0 ? g.dv : g.dv * ::exp(g.log_boost);
}

}  // namespace detail

/// The accepted draw of Gamma(alpha, 1) on stream s, in factored form. Unchecked: alpha must be
/// finite and > 0.
CONTRASTIVE_HOST_DEVICE inline gamma_draw gamma_variate(double alpha,
                                                        const philox_stream& s) noexcept {
  return detail::gamma_run(detail::gamma_setup(alpha), s);
}

/// Gamma(alpha, 1) on stream s. Unchecked (alpha finite and > 0). For alpha < 1 the boost
/// u^(1/alpha) underflows to 0 once alpha is below about 0.0015; use gamma_log_standard there.
/// `blocks_used`, when given, receives the number of Philox blocks consumed.
CONTRASTIVE_HOST_DEVICE inline double gamma_standard(
    double alpha, const philox_stream& s, std::uint32_t* blocks_used = nullptr) noexcept {
  const gamma_draw g = gamma_variate(alpha, s);
  if (blocks_used) *blocks_used = g.blocks;
  return detail::gamma_value(g);
}

/// log of the same draw as gamma_standard, without underflow for tiny shapes.
CONTRASTIVE_HOST_DEVICE inline double gamma_log_standard(double alpha,
                                                         const philox_stream& s) noexcept {
  const gamma_draw g = gamma_variate(alpha, s);
  return ::log(g.dv) + g.log_boost;
}

/// Parameters of a family of gamma draws; the sample id selects the member.
struct gamma_params {
  double alpha = 1.0;        // shape, finite and > 0
  double rate = 1.0;         // rate lambda, finite and > 0 (the draw is Gamma(alpha, 1) / rate)
  std::uint64_t seed = 0;    // Philox key
  std::uint32_t step = 0;    // counter word 2
  std::uint32_t stream = 0;  // 0..15, see philox_stream_id
};

namespace detail {

/// What fill_gamma stores for sample `id` (before the cast to the element type); shared with
/// the CUDA sampler (cuda/gamma.cuh) so that both run the same code.
CONTRASTIVE_HOST_DEVICE inline double gamma_sample(const gamma_constants& k, const gamma_params& p,
                                                   std::uint64_t id) noexcept {
  return gamma_value(gamma_run(k, philox_stream{p.seed, id, p.step, p.stream})) / p.rate;
}

inline void check_gamma_params(const char* fn, const gamma_params& p) {
  CONTRASTIVE_CHECK(p.alpha > 0 && p.alpha < std::numeric_limits<double>::infinity(), fn,
                    ": 'alpha' must be finite and > 0, got ", p.alpha);
  CONTRASTIVE_CHECK(p.rate > 0 && p.rate < std::numeric_limits<double>::infinity(), fn,
                    ": 'rate' must be finite and > 0, got ", p.rate);
  CONTRASTIVE_CHECK(p.stream < 16u, fn,
                    ": 'stream' must be in [0, 15] (4 bits of the counter), got ", p.stream);
}

template <class Out>
auto gamma_output_view(Out&& out) {
  static_assert(is_writable_tensor<Out&&>::value,
                "contrastive: fill_gamma needs a writable tensor: an lvalue (or a non-owning view "
                "such as an Eigen Map/Block) of a supported type, not const and not an owning "
                "temporary; include contrastive/adapters/<lib>.hpp or specialise "
                "contrastive::tensor_traits");
  auto v = as_view(std::forward<Out>(out));
  static_assert(std::is_same<typename decltype(v)::memory_space, host_memory>::value,
                "contrastive: fill_gamma fills host memory; device views need the CUDA sampler");
  static_assert(std::is_floating_point<typename decltype(v)::value_type>::value,
                "contrastive: fill_gamma needs a floating-point tensor");
  return v;
}

}  // namespace detail

/// One Gamma(p.alpha, p.rate) draw for sample `id` on stream (p.seed, id, p.step, p.stream).
inline double sample_gamma(std::uint64_t id, const gamma_params& p) {
  detail::check_gamma_params("sample_gamma", p);
  const philox_stream s{p.seed, id, p.step, p.stream};
  return gamma_standard(p.alpha, s) / p.rate;
}

/// Fills every element of a writable tensor (any tensor_traits type: Eigen, xtensor, raw views,
/// float or double) with independent draws. Element (i, j) gets the draw of sample id
/// first_id + i * cols + j, whatever the memory layout, so a row-major and a column-major tensor
/// of the same shape receive the same values at the same (i, j).
template <class Out>
void fill_gamma(Out&& out, const gamma_params& p, std::uint64_t first_id = 0) {
  if constexpr (detail::is_device_output<Out&&>::value) {  // cuda/gamma.cuh
    detail::device_backend_of<detail::gamma_sampler_tag, std::remove_reference_t<Out>>::type::fill(
        as_view(std::forward<Out>(out)), p, first_id);
  } else {
    const auto v = detail::gamma_output_view(std::forward<Out>(out));
    using T = typename decltype(v)::value_type;
    detail::check_gamma_params("fill_gamma", p);
    CONTRASTIVE_CHECK(v.empty() || v.data() != nullptr,
                      "fill_gamma: 'out' is a null pointer with shape ", v.rows(), " x ", v.cols());
    const detail::gamma_constants k = detail::gamma_setup(p.alpha);
    for (index_t i = 0; i < v.rows(); ++i) {
      for (index_t j = 0; j < v.cols(); ++j) {
        const std::uint64_t id = first_id + static_cast<std::uint64_t>(i * v.cols() + j);
        v(i, j) = static_cast<T>(detail::gamma_sample(k, p, id));
      }
    }
  }
}

/// Fills element (i, j) with the draw of sample ids[i * cols + j] (count must equal the number of
/// elements; ids must be >= 0).
template <class Out>
void fill_gamma(Out&& out, const gamma_params& p, const std::int64_t* ids, index_t count) {
  if constexpr (detail::is_device_output<Out&&>::value) {  // cuda/gamma.cuh; ids: device memory
    detail::device_backend_of<detail::gamma_sampler_tag, std::remove_reference_t<Out>>::type::fill(
        as_view(std::forward<Out>(out)), p, ids, count);
  } else {
    const auto v = detail::gamma_output_view(std::forward<Out>(out));
    using T = typename decltype(v)::value_type;
    detail::check_gamma_params("fill_gamma", p);
    CONTRASTIVE_CHECK(count == v.size(), "fill_gamma: 'ids' has ", count, " entries, expected ",
                      v.size(), " (one per element of 'out', ", v.rows(), " x ", v.cols(), ")");
    CONTRASTIVE_CHECK(count == 0 || ids != nullptr, "fill_gamma: 'ids' is a null pointer");
    CONTRASTIVE_CHECK(v.empty() || v.data() != nullptr,
                      "fill_gamma: 'out' is a null pointer with shape ", v.rows(), " x ", v.cols());
    for (index_t k = 0; k < count; ++k)
      detail::check_id_nonnegative("fill_gamma", ids[k], "position", k);
    const detail::gamma_constants k = detail::gamma_setup(p.alpha);
    for (index_t i = 0; i < v.rows(); ++i) {
      for (index_t j = 0; j < v.cols(); ++j) {
        const auto id = static_cast<std::uint64_t>(ids[i * v.cols() + j]);
        v(i, j) = static_cast<T>(detail::gamma_sample(k, p, id));
      }
    }
  }
}

template <class Out>
void fill_gamma(Out&& out, const gamma_params& p, const std::vector<std::int64_t>& ids) {
  fill_gamma(std::forward<Out>(out), p, ids.data(), static_cast<index_t>(ids.size()));
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_GAMMA_HPP
