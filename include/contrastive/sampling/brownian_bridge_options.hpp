#ifndef CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_OPTIONS_HPP
#define CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_OPTIONS_HPP

// The options of sampling/brownian_bridge.hpp and the per-row pieces of its draws (the row's t,
// its Philox id and noise stream, sigma, the path coefficients, the floored norm), apart and free
// of Eigen so that cuda/brownian_bridge.cuh (nvcc) runs the same host-device code as the CPU.

#include <math.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/sampling/philox.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

struct brownian_bridge_options {
  double t = 0.25;        // fixed t in [0, 1] (t = 0: u, t = 1: v)
  bool random_t = false;  // per-row t_j ~ U(t_min, t_max) on Philox stream 3
  double t_min = 0.05;
  double t_max = 0.95;
  bool noise = true;           // add sigma sqrt(t(1-t)) eps (points) / sigma n_k (paths)
  double sigma = 0;            // noise scale >= 0; 0 (default) means 1/sqrt(D)
  bool reproject = false;      // divide each sampled point by its norm
  index_t steps = 8;           // K, the number of steps of a trajectory (>= 1)
  std::uint64_t seed = 0;      // Philox key
  std::uint32_t step = 0;      // Philox counter word 2 (e.g. the training step)
  std::uint64_t first_id = 0;  // Philox id of row j is first_id + j ...
  vector_view<const std::int64_t>
      ids{};  // ... or ids[j] when given (one per row, >= 0; device memory on the GPU)
  bool accumulate = false;  // backward adds into grad_v / grad_u instead of overwriting them
  int num_threads = 0;      // 0: all OpenMP threads (1 without OpenMP)
};

/// Gradients of a sampling call beyond those to v and u.
struct brownian_bridge_gradient {
  double t = 0;                // dL/dt of a t shared by all rows (the sum of t_rows); 0 for paths
  std::vector<double> t_rows;  // dL/dt_j per row (points)
  double sigma = 0;            // dL/dsigma
};

namespace detail {

constexpr double bridge_floor = 1e-12;

CONTRASTIVE_HOST_DEVICE inline std::uint64_t bridge_id(const brownian_bridge_options& o,
                                                       index_t j) noexcept {
  // ids.data, not ids.empty(): the constexpr member is host-only under nvcc.
  return o.ids.data == nullptr ? o.first_id + static_cast<std::uint64_t>(j)
                               : static_cast<std::uint64_t>(o.ids.data[j]);
}

/// The t of row j (unchecked options).
CONTRASTIVE_HOST_DEVICE inline double bridge_t(const brownian_bridge_options& o,
                                               index_t j) noexcept {
  if (!o.random_t) return o.t;
  const philox_stream s{o.seed, bridge_id(o, j), o.step,
                        static_cast<std::uint32_t>(philox_stream_id::bridge_t)};
  return o.t_min + (o.t_max - o.t_min) * uniform_open01(s.block(0).w[0]);
}

/// The noise stream of row j (stream 2): normal m is eps_m (points) or xi of path step m / D + 1.
CONTRASTIVE_HOST_DEVICE inline philox_stream bridge_noise_stream(const brownian_bridge_options& o,
                                                                 index_t j) noexcept {
  return philox_stream{o.seed, bridge_id(o, j), o.step,
                       static_cast<std::uint32_t>(philox_stream_id::bridge_noise)};
}

CONTRASTIVE_HOST_DEVICE inline double bridge_sigma(const brownian_bridge_options& o,
                                                   index_t d) noexcept {
  return o.sigma > 0 ? o.sigma : 1.0 / ::sqrt(double(d));
}

/// One coordinate of m = t v + (1 - t) u.
CONTRASTIVE_HOST_DEVICE inline double bridge_mix(double v, double u, double t) noexcept {
  return t * v + (1 - t) * u;
}

/// max(sqrt(s), floor) for a sum of squares s: the divisor of the mean and of a re-projection.
CONTRASTIVE_HOST_DEVICE inline double bridge_norm(double s) noexcept {
  const double r = ::sqrt(s);
  return r > bridge_floor ? r : bridge_floor;
}

/// The noise scale of a point at t: sigma sqrt(t (1 - t)).
CONTRASTIVE_HOST_DEVICE inline double bridge_point_scale(double sigma, double t) noexcept {
  return sigma * ::sqrt(t * (1 - t));
}

/// n_k = a n_{k-1} + b xi_k on a K-step path (k = 1..K-1).
CONTRASTIVE_HOST_DEVICE inline void bridge_step_coefficients(index_t k, index_t kk, double& a,
                                                             double& b) noexcept {
  a = double(kk - k) / double(kk - k + 1);
  b = ::sqrt(double(kk - k) / (double(kk) * double(kk - k + 1)));
}

/// Standard normals m = first, first + 1, ..., first + count - 1 of a stream (one block per pair).
CONTRASTIVE_HOST_DEVICE inline void bridge_normals(const philox_stream& s, std::uint64_t first,
                                                   index_t count, double* out) noexcept {
  index_t k = 0;
  std::uint64_t m = first;
  if (count > 0 && (m & 1u)) {
    out[k++] = s.normal(m++);
  }
  for (; k + 1 < count; k += 2, m += 2) {
    const philox_block b = s.block(static_cast<std::uint32_t>(m / 2));
    out[k] = box_muller(b.w[0], b.w[1]);
    out[k + 1] = box_muller(b.w[2], b.w[3]);
  }
  if (k < count) out[k] = s.normal(m);
}

/// t (fixed) or [t_min, t_max] (random_t) must lie in [0, 1].
inline void bridge_check_time(const char* fn, const brownian_bridge_options& o) {
  if (o.random_t) {
    CONTRASTIVE_CHECK(std::isfinite(o.t_min) && std::isfinite(o.t_max) && o.t_min >= 0 &&
                          o.t_max <= 1 && o.t_min <= o.t_max,
                      fn, ": 't_min' and 't_max' must satisfy 0 <= t_min <= t_max <= 1, got [",
                      o.t_min, ", ", o.t_max, "]");
  } else {
    CONTRASTIVE_CHECK(std::isfinite(o.t) && o.t >= 0 && o.t <= 1, fn,
                      ": 't' must lie in [0, 1], got ", o.t);
  }
}

/// Normals one Philox stream gives (2^28 blocks of two normals each); one row's noise is one
/// stream, so a row may not need more (they would repeat).
constexpr std::uint64_t bridge_stream_normals = std::uint64_t(1) << 29;

/// The scalar options of a bridge call: the time (points only), sigma, steps (trajectories) and,
/// for Philox noise of rows of D = d > 0 columns, the stream length (d = 0: caller's noise).

inline void bridge_check_scalars(const char* fn, const brownian_bridge_options& o, bool trajectory,
                                 index_t d) {
  if (!trajectory) bridge_check_time(fn, o);
  CONTRASTIVE_CHECK(std::isfinite(o.sigma) && o.sigma >= 0, fn,
                    ": 'sigma' must be finite and >= 0 (0: 1/sqrt(D)), got ", o.sigma);
  if (trajectory) CONTRASTIVE_CHECK(o.steps >= 1, fn, ": 'steps' must be >= 1, got ", o.steps);
  if (o.noise && d > 0) {
    const index_t steps = trajectory ? o.steps : 1;
    CONTRASTIVE_CHECK(
        static_cast<std::uint64_t>(steps) <= bridge_stream_normals / static_cast<std::uint64_t>(d),
        fn, ": the noise of one row needs ", steps, " x ", d,
        " (steps x D) normals, more than the 2^29 of one Philox stream (they would "
        "repeat); pass the noise yourself (the *_with_noise calls)");
  }
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_OPTIONS_HPP
