#ifndef CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_HPP
#define CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_HPP

// Brownian-bridge path sampling between paired embeddings (Jiang et al., CVPR 2023, eq. (1);
// docs/brownian_bridge.md#sampler). Row j of V (image, the t = 1 end) and U (text, the t = 0
// end) are the endpoints of pair j.
//
//   mean    mu(v, u, t) = m / max(||m||, 1e-12),   m = t v + (1 - t) u   (on the unit sphere)
//   point   y = mu(v, u, t) + sigma sqrt(t (1 - t)) eps,   eps ~ N(0, I_D)      [optional noise]
//           then, with `reproject`, y / max(||y||, 1e-12)
//   path    K steps, t_k = k / K; increments conditioned on both endpoints:
//           n_0 = n_K = 0,  n_k = n_{k-1} (K-k)/(K-k+1) + sqrt((K-k)/(K(K-k+1))) xi_k,
//           X_k = mu(v, u, t_k) + sigma n_k  (k = 1..K-1; `reproject` as above),
//           so Cov(n_j, n_k) = t_j (1 - t_k) I for j <= k and each X_k has the point's law.
//
// Readings and library choices (the paper leaves these open):
// - t: fixed (default 0.25, the paper's value, which puts the mean near the text), or with
//   `random_t` t_j ~ U(t_min, t_max) (default [0.05, 0.95]): t_j = t_min + (t_max - t_min) u,
//   u = uniform_open01(word 0 of block 0) of Philox stream 3 (seed, id_j, step).
// - sigma defaults to 1/sqrt(D), so that E||noise||^2 = t (1 - t); the paper's literal unit
//   variance per coordinate (sigma = 1) would swamp unit vectors.
// - Noise: eps_d (points) and xi_k,d (paths) are normal numbers m = d and m = (k-1) D + d of
//   Philox stream 2 (seed, id_j, step): block m/2, words (0,1) for even m and (2,3) for odd m,
//   Box-Muller cosine branch, i.e. exactly philox_stream::normal(m). id_j = ids[j] when `ids`
//   is given (e.g. dataset indices), else first_id + j. The caller may pass eps / xi instead.
// - Trajectories have K + 1 rows per pair (row j (K+1) + k holds X_k); X_0 = u and X_K = v are
//   copies of the inputs (exact, never re-projected) and pass their gradient straight through.
// - Backward is by reparameterisation (the noise is fixed): gradients to v, u (both endpoints),
//   to each row's t (points) and to sigma. At t = 0 or t = 1 the noise term's t-derivative
//   sigma (1 - 2t) / (2 sqrt(t (1 - t))) <g, eps> is infinite; it is omitted there (the mean
//   term's derivative is still reported).
//
// Inputs are used as given (the mean is normalised, the endpoints are not); a row of zero norm
// or a non-finite value in v or u is bad input (contrastive::invalid_argument), as are t outside
// [0, 1] and non-finite noise. Threads: OpenMP over rows when compiled with it; results never
// depend on the thread count.

#include <cmath>
#include <limits>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/modal_common.hpp"
#include "contrastive/core/parallel.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/sampling/brownian_bridge_options.hpp"
#include "contrastive/sampling/philox.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What a sampling call keeps for its backward: O(N) numbers, never the noise.
template <class T>
struct brownian_bridge_saved {
  index_t n = 0, d = 0;
  index_t steps = 0;      // K for trajectories, 0 for points
  std::vector<double> t;  // per-row t (points)
  double sigma = 0;       // the resolved noise scale
  bool noise = true, reproject = false, given_noise = false;
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
};

namespace detail {

/// mu = m / max(||m||, floor), m = t v + (1 - t) u, for row j; returns max(||m||, floor).
template <class T>
double bridge_mean_row(const matrix_view<const T>& v, const matrix_view<const T>& u, index_t j,
                       double t, double* mu) noexcept {
  const index_t d = v.cols();
  double s = 0;
  for (index_t k = 0; k < d; ++k) {
    const double m = bridge_mix(double(v(j, k)), double(u(j, k)), t);
    mu[k] = m;
    s += m * m;
  }
  const double rr = bridge_norm(s);
  for (index_t k = 0; k < d; ++k) mu[k] /= rr;
  return rr;
}

/// Replaces g (dL/dmu) by g_m = dL/dm: (g - mu <mu, g>) / r, or g / floor when ||m|| <= floor.
inline void bridge_mean_backward(const double* mu, double r, index_t d, double* g) noexcept {
  if (r <= bridge_floor) {
    for (index_t k = 0; k < d; ++k) g[k] /= bridge_floor;
    return;
  }
  double p = 0;
  for (index_t k = 0; k < d; ++k) p += mu[k] * g[k];
  for (index_t k = 0; k < d; ++k) g[k] = (g[k] - mu[k] * p) / r;
}

/// y /= max(||y||, floor); returns the norm used.
inline double bridge_project(double* y, index_t d) noexcept {
  double s = 0;
  for (index_t k = 0; k < d; ++k) s += y[k] * y[k];
  const double rr = bridge_norm(s);
  for (index_t k = 0; k < d; ++k) y[k] /= rr;
  return rr;
}

/// Gradient through s = y / max(||y||, floor) (s given, r the norm used).
inline void bridge_project_backward(const double* s, double r, index_t d, double* g) noexcept {
  bridge_mean_backward(s, r, d, g);
}

inline void bridge_check_ids(const char* fn, const brownian_bridge_options& o, index_t n) {
  if (o.ids.empty()) return;
  CONTRASTIVE_CHECK(o.ids.size == n, fn, ": 'ids' has ", o.ids.size, " entries, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(o.ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                    o.ids.stride);
  for (index_t j = 0; j < n; ++j) check_id_nonnegative(fn, o.ids.data[j], "row", j);
}

/// v, u: N x D, N > 0, D > 0, finite, no zero-norm row; options valid.
template <class T>
void bridge_check_endpoints(const char* fn, const matrix_view<const T>& v,
                            const matrix_view<const T>& u, const brownian_bridge_options& o,
                            bool trajectory, bool philox_noise) {
  check_matrix(fn, "a", v);
  check_matrix(fn, "b", u);
  check_pair_shape(fn, v, u);
  bridge_check_scalars(fn, o, trajectory, philox_noise ? v.cols() : 0);
  bridge_check_ids(fn, o, v.rows());
  check_rows(fn, "a", v);
  check_rows(fn, "b", u);
}

template <class T>
void bridge_check_noise(const char* fn, const char* name, const matrix_view<const T>& e,
                        index_t rows, index_t cols, const char* what) {
  check_matrix(fn, name, e);
  check_shape(fn, name, e, rows, cols, what);
  check_finite(fn, name, e);
}

/// Rows per parallel task and per-thread scratch of D doubles x `width`.
struct bridge_scratch {
  std::vector<double> data;
  index_t stride = 0;
  double* get(int tid) noexcept {
    return data.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(stride);
  }
  bridge_scratch(int threads, index_t per_thread)
      : data(static_cast<std::size_t>(threads) * static_cast<std::size_t>(per_thread)),
        stride(per_thread) {}
};

constexpr index_t bridge_rows_per_task = 16;

template <class F>
void bridge_for_rows(index_t n, int threads, F&& row_fn) {
  const index_t tasks = (n + bridge_rows_per_task - 1) / bridge_rows_per_task;
  parallel_for(tasks, threads, [&](index_t task, int tid) {
    const index_t j1 =
        (task + 1) * bridge_rows_per_task < n ? (task + 1) * bridge_rows_per_task : n;
    for (index_t j = task * bridge_rows_per_task; j < j1; ++j) row_fn(j, tid);
  });
}

template <class T>
void bridge_store_row(const matrix_view<T>& out, index_t i, const double* x, bool accumulate) {
  for (index_t k = 0; k < out.cols(); ++k)
    out(i, k) = accumulate ? static_cast<T>(double(out(i, k)) + x[k]) : static_cast<T>(x[k]);
}

/// Stores row i (store), or only tells whether storing it would keep every element finite in T.
template <class T>
bool bridge_put_row(const matrix_view<T>& out, index_t i, const double* x, bool accumulate,
                    bool store) {
  if (store) {
    bridge_store_row(out, i, x, accumulate);
    return true;
  }
  constexpr double largest = static_cast<double>(std::numeric_limits<T>::max());
  for (index_t k = 0; k < out.cols(); ++k) {
    const double y = accumulate ? double(out(i, k)) + x[k] : x[k];
    if (!(std::abs(y) <= largest)) return false;
  }
  return true;
}

/// Runs row_fn(j, tid, store) -> bool over the rows twice: first with store = false, when a row
/// only reports whether everything it would write (and its double results) is finite, then, if
/// every row is, with store = true. The O(N D) row work is done twice so that a call whose results
/// overflow T throws with every output untouched. `finish` (after the first pass) may check sums.
template <class T, class F, class G>
void bridge_for_rows_checked(const char* fn, index_t n, int threads, F&& row_fn, G&& finish) {
  std::vector<unsigned char> fits(static_cast<std::size_t>(n), 1);
  bridge_for_rows(n, threads, [&](index_t j, int tid) {
    fits[static_cast<std::size_t>(j)] = row_fn(j, tid, false) ? 1 : 0;
  });
  for (index_t j = 0; j < n; ++j)
    CONTRASTIVE_CHECK(fits[static_cast<std::size_t>(j)], fn, ": the results of row ", j,
                      " overflow ", sizeof(T) == sizeof(float) ? "float" : "double",
                      "; scale the inputs, 'sigma' or the upstream gradient down");
  finish();
  bridge_for_rows(n, threads, [&](index_t j, int tid) { row_fn(j, tid, true); });
}

// ---- points ----

/// What a sampling call records for its backward (the per-row t of points excepted).
template <class T>
brownian_bridge_saved<T> bridge_saved_for(index_t n, index_t d, index_t steps,
                                          const brownian_bridge_options& o, bool given_noise) {
  brownian_bridge_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.steps = steps;
  saved.sigma = bridge_sigma(o, d);
  saved.noise = o.noise;
  saved.reproject = o.reproject;
  saved.given_noise = given_noise;
  saved.seed = o.seed;
  saved.step = o.step;
  return saved;
}

/// A backward's `saved` belongs to these inputs and options: a point sample (o.steps ignored;
/// with its per-row t when `needs_t`) or a path of o.steps steps, the same noise source.
template <class T>
void bridge_check_saved(const char* fn, const brownian_bridge_saved<T>& saved, index_t n, index_t d,
                        const brownian_bridge_options& o, bool given_noise, bool point,
                        bool needs_t = true) {
  const char* noise_name = point ? "'eps'" : "'xi'";
  if (point) {
    CONTRASTIVE_CHECK(saved.steps == 0 && saved.n == n && saved.d == d &&
                          (!needs_t || saved.t.size() == static_cast<std::size_t>(n)),
                      fn, ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                      saved.steps ? " trajectory" : " point", " sample, the inputs are ", n, " x ",
                      d);
  } else {
    CONTRASTIVE_CHECK(saved.steps == o.steps && saved.n == n && saved.d == d, fn,
                      ": 'saved' belongs to a ", saved.n, " x ", saved.d, " sample with ",
                      saved.steps, " steps, the inputs are ", n, " x ", d,
                      " with 'steps' = ", o.steps);
  }
  CONTRASTIVE_CHECK(saved.given_noise == given_noise, fn,
                    saved.given_noise ? ": 'saved' was sampled with caller noise: pass the same "
                                      : ": 'saved' was sampled on the Philox stream: pass no ",
                    noise_name);
  CONTRASTIVE_CHECK(saved.noise == o.noise && saved.reproject == o.reproject &&
                        saved.sigma == bridge_sigma(o, d) &&
                        (given_noise || (saved.seed == o.seed && saved.step == o.step)),
                    fn, ": 'saved' was sampled with other options (noise ", saved.noise,
                    ", reproject ", saved.reproject, ", sigma ", saved.sigma, ", seed ", saved.seed,
                    ", step ", saved.step, ")");
}

template <class T>
brownian_bridge_saved<T> bridge_point_forward(const char* fn, const matrix_view<const T>& v,
                                              const matrix_view<const T>& u,
                                              const matrix_view<const T>* eps,
                                              const matrix_view<T>& y,
                                              const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, false, eps == nullptr);
  const index_t n = v.rows(), d = v.cols();
  if (eps) bridge_check_noise(fn, "eps", *eps, n, d, "the shape of 'a'");
  check_matrix(fn, "y", y);
  check_shape(fn, "y", y, n, d, "the shape of 'a'");
  check_writable_layout(fn, "y", y);
  check_no_alias(fn, "y", y, "a", v);
  check_no_alias(fn, "y", y, "b", u);
  if (eps) check_no_alias(fn, "y", y, "eps", *eps);

  brownian_bridge_saved<T> saved = bridge_saved_for<T>(n, d, 0, o, eps != nullptr);
  saved.t.resize(static_cast<std::size_t>(n));
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 2 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* e = mu + d;
        const double t = bridge_t(o, j);
        saved.t[static_cast<std::size_t>(j)] = t;
        bridge_mean_row(v, u, j, t, mu);
        if (o.noise) {
          const double c = bridge_point_scale(sigma, t);
          if (eps) {
            for (index_t k = 0; k < d; ++k) e[k] = double((*eps)(j, k));
          } else {
            bridge_normals(bridge_noise_stream(o, j), 0, d, e);
          }
          for (index_t k = 0; k < d; ++k) mu[k] += c * e[k];
        }
        if (o.reproject) bridge_project(mu, d);
        return bridge_put_row(y, j, mu, false, store);
      },
      [] {});
  return saved;
}

template <class T>
brownian_bridge_gradient bridge_point_backward(const char* fn, const matrix_view<const T>& v,
                                               const matrix_view<const T>& u,
                                               const matrix_view<const T>* eps,
                                               const brownian_bridge_saved<T>& saved,
                                               const matrix_view<const T>& gy,
                                               const matrix_view<T>& gv, const matrix_view<T>& gu,
                                               const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, false, eps == nullptr);
  const index_t n = v.rows(), d = v.cols();
  bridge_check_saved(fn, saved, n, d, o, eps != nullptr, true);
  if (eps) bridge_check_noise(fn, "eps", *eps, n, d, "the shape of 'a'");
  check_matrix(fn, "grad_y", gy);
  check_shape(fn, "grad_y", gy, n, d, "the shape of 'a'");
  check_finite(fn, "grad_y", gy);
  check_matrix(fn, "grad_a", gv);
  check_matrix(fn, "grad_b", gu);
  check_shape(fn, "grad_a", gv, n, d, "the shape of 'a'");
  check_shape(fn, "grad_b", gu, n, d, "the shape of 'b'");
  check_writable_layout(fn, "grad_a", gv);
  check_writable_layout(fn, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "a", v);
  check_no_alias(fn, "grad_a", gv, "b", u);
  check_no_alias(fn, "grad_a", gv, "grad_y", gy);
  check_no_alias(fn, "grad_b", gu, "a", v);
  check_no_alias(fn, "grad_b", gu, "b", u);
  check_no_alias(fn, "grad_b", gu, "grad_y", gy);

  brownian_bridge_gradient out;
  out.t_rows.assign(static_cast<std::size_t>(n), 0.0);
  std::vector<double> dsig(static_cast<std::size_t>(n), 0.0);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 4 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* e = mu + d;
        double* y = e + d;
        double* g = y + d;
        const double t = saved.t[static_cast<std::size_t>(j)];
        const double r = bridge_mean_row(v, u, j, t, mu);
        for (index_t k = 0; k < d; ++k) g[k] = double(gy(j, k));
        const double c = o.noise ? sigma * std::sqrt(t * (1 - t)) : 0.0;
        if (o.noise) {
          if (eps) {
            for (index_t k = 0; k < d; ++k) e[k] = double((*eps)(j, k));
          } else {
            const philox_stream s{o.seed, bridge_id(o, j), o.step,
                                  static_cast<std::uint32_t>(philox_stream_id::bridge_noise)};
            bridge_normals(s, 0, d, e);
          }
        }
        if (o.reproject) {
          for (index_t k = 0; k < d; ++k) y[k] = mu[k] + (o.noise ? c * e[k] : 0.0);
          const double ry = bridge_project(y, d);
          bridge_project_backward(y, ry, d, g);
        }
        double dt = 0;
        if (o.noise) {
          double ge = 0;
          for (index_t k = 0; k < d; ++k) ge += g[k] * e[k];
          dsig[static_cast<std::size_t>(j)] = std::sqrt(t * (1 - t)) * ge;
          if (t > 0 && t < 1) dt += sigma * (1 - 2 * t) / (2 * std::sqrt(t * (1 - t))) * ge;
        }
        bridge_mean_backward(mu, r, d, g);  // g = dL/dm
        double dvu = 0;
        for (index_t k = 0; k < d; ++k) dvu += (double(v(j, k)) - double(u(j, k))) * g[k];
        dt += dvu;
        out.t_rows[static_cast<std::size_t>(j)] = dt;
        bool ok = std::isfinite(dt) && std::isfinite(dsig[static_cast<std::size_t>(j)]);
        for (index_t k = 0; k < d; ++k) y[k] = t * g[k];
        ok = bridge_put_row(gv, j, y, o.accumulate, store) && ok;
        for (index_t k = 0; k < d; ++k) y[k] = (1 - t) * g[k];
        return bridge_put_row(gu, j, y, o.accumulate, store) && ok;
      },
      [&] {
        for (index_t j = 0; j < n; ++j) {
          out.t += out.t_rows[static_cast<std::size_t>(j)];
          out.sigma += dsig[static_cast<std::size_t>(j)];
        }
        CONTRASTIVE_CHECK(std::isfinite(out.t) && std::isfinite(out.sigma), fn,
                          ": dL/dt or dL/dsigma overflows; scale the upstream gradient down");
      });
  return out;
}

// ---- trajectories ----

/// n_k from n_{k-1} and xi_k (k = 1..K-1).
inline void bridge_step_noise(double* nk, const double* xi, index_t d, index_t k,
                              index_t kk) noexcept {
  double a, b;
  bridge_step_coefficients(k, kk, a, b);
  for (index_t i = 0; i < d; ++i) nk[i] = nk[i] * a + b * xi[i];
}

template <class T>
void bridge_load_xi(const matrix_view<const T>* xi, const brownian_bridge_options& o, index_t j,
                    index_t k, index_t kk, index_t d, double* out) {
  if (xi) {
    const index_t row = j * (kk - 1) + (k - 1);
    for (index_t i = 0; i < d; ++i) out[i] = double((*xi)(row, i));
  } else {
    bridge_normals(bridge_noise_stream(o, j),
                   static_cast<std::uint64_t>(k - 1) * static_cast<std::uint64_t>(d), d, out);
  }
}

template <class T>
brownian_bridge_saved<T> bridge_path_forward(const char* fn, const matrix_view<const T>& v,
                                             const matrix_view<const T>& u,
                                             const matrix_view<const T>* xi,
                                             const matrix_view<T>& x,
                                             const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, true, xi == nullptr);
  const index_t n = v.rows(), d = v.cols(), kk = o.steps;
  if (xi) bridge_check_noise(fn, "xi", *xi, n * (kk - 1), d, "N (steps - 1) x D");
  check_matrix(fn, "x", x);
  check_shape(fn, "x", x, n * (kk + 1), d, "N (steps + 1) x D");
  check_writable_layout(fn, "x", x);
  check_no_alias(fn, "x", x, "a", v);
  check_no_alias(fn, "x", x, "b", u);
  if (xi) check_no_alias(fn, "x", x, "xi", *xi);

  brownian_bridge_saved<T> saved = bridge_saved_for<T>(n, d, kk, o, xi != nullptr);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 3 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* nk = mu + d;
        double* xk = nk + d;
        const index_t base = j * (kk + 1);
        for (index_t i = 0; i < d; ++i) {
          if (store) {
            x(base, i) = u(j, i);
            x(base + kk, i) = v(j, i);
          }
          nk[i] = 0;
        }
        bool ok = true;
        for (index_t k = 1; k < kk; ++k) {
          bridge_mean_row(v, u, j, double(k) / double(kk), mu);
          if (o.noise) {
            bridge_load_xi(xi, o, j, k, kk, d, xk);
            bridge_step_noise(nk, xk, d, k, kk);
            for (index_t i = 0; i < d; ++i) mu[i] += sigma * nk[i];
          }
          if (o.reproject) bridge_project(mu, d);
          ok = bridge_put_row(x, base + k, mu, false, store) && ok;
        }
        return ok;
      },
      [] {});
  return saved;
}

template <class T>
brownian_bridge_gradient bridge_path_backward(const char* fn, const matrix_view<const T>& v,
                                              const matrix_view<const T>& u,
                                              const matrix_view<const T>* xi,
                                              const brownian_bridge_saved<T>& saved,
                                              const matrix_view<const T>& gx,
                                              const matrix_view<T>& gv, const matrix_view<T>& gu,
                                              const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, true, xi == nullptr);
  const index_t n = v.rows(), d = v.cols(), kk = o.steps;
  bridge_check_saved(fn, saved, n, d, o, xi != nullptr, false);
  if (xi) bridge_check_noise(fn, "xi", *xi, n * (kk - 1), d, "N (steps - 1) x D");
  check_matrix(fn, "grad_x", gx);
  check_shape(fn, "grad_x", gx, n * (kk + 1), d, "N (steps + 1) x D");
  check_finite(fn, "grad_x", gx);
  check_matrix(fn, "grad_a", gv);
  check_matrix(fn, "grad_b", gu);
  check_shape(fn, "grad_a", gv, n, d, "the shape of 'a'");
  check_shape(fn, "grad_b", gu, n, d, "the shape of 'b'");
  check_writable_layout(fn, "grad_a", gv);
  check_writable_layout(fn, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "a", v);
  check_no_alias(fn, "grad_a", gv, "b", u);
  check_no_alias(fn, "grad_a", gv, "grad_x", gx);
  check_no_alias(fn, "grad_b", gu, "a", v);
  check_no_alias(fn, "grad_b", gu, "b", u);
  check_no_alias(fn, "grad_b", gu, "grad_x", gx);

  brownian_bridge_gradient out;
  std::vector<double> dsig(static_cast<std::size_t>(n), 0.0);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 6 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* nk = mu + d;
        double* xk = nk + d;
        double* g = xk + d;
        double* dv = g + d;
        double* du = dv + d;
        const index_t base = j * (kk + 1);
        for (index_t i = 0; i < d; ++i) {
          du[i] = double(gx(base, i));       // X_0 = u
          dv[i] = double(gx(base + kk, i));  // X_K = v
          nk[i] = 0;
        }
        double ds = 0;
        for (index_t k = 1; k < kk; ++k) {
          const double tk = double(k) / double(kk);
          const double r = bridge_mean_row(v, u, j, tk, mu);
          if (o.noise) {
            bridge_load_xi(xi, o, j, k, kk, d, xk);
            bridge_step_noise(nk, xk, d, k, kk);
          }
          for (index_t i = 0; i < d; ++i) g[i] = double(gx(base + k, i));
          if (o.reproject) {
            for (index_t i = 0; i < d; ++i) xk[i] = mu[i] + (o.noise ? sigma * nk[i] : 0.0);
            const double rx = bridge_project(xk, d);
            bridge_project_backward(xk, rx, d, g);
          }
          if (o.noise)
            for (index_t i = 0; i < d; ++i) ds += g[i] * nk[i];
          bridge_mean_backward(mu, r, d, g);
          for (index_t i = 0; i < d; ++i) {
            dv[i] += tk * g[i];
            du[i] += (1 - tk) * g[i];
          }
        }
        dsig[static_cast<std::size_t>(j)] = ds;
        const bool ok = std::isfinite(ds) && bridge_put_row(gv, j, dv, o.accumulate, store);
        return bridge_put_row(gu, j, du, o.accumulate, store) && ok;
      },
      [&] {
        for (index_t j = 0; j < n; ++j) out.sigma += dsig[static_cast<std::size_t>(j)];
        CONTRASTIVE_CHECK(std::isfinite(out.sigma), fn,
                          ": dL/dsigma overflows; scale the upstream gradient down");
      });
  return out;
}

}  // namespace detail

/// The t of row j under these options: o.t, or the row's draw on Philox stream 3.
inline double brownian_bridge_time(const brownian_bridge_options& o, index_t j) {
  detail::bridge_check_time("brownian_bridge_time", o);
  return detail::bridge_t(o, j);
}

/// Samples one bridge point per pair into y (N x D), noise from Philox stream 2.
template <class A, class B, class Y>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<Y&&>)
auto brownian_bridge_sample(const A& a, const B& b, Y&& y, const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    // The GPU backward draws t_j again from the options: `saved` holds no per-row t.
    using Backend = typename detail::device_backend_of<detail::bridge_sampler_tag, A>::type;
    Backend::sample(as_view(a), as_view(b), as_view(y), o);
    return detail::bridge_saved_for<typename Backend::value_type>(as_view(a).rows(),
                                                                  as_view(a).cols(), 0, o, false);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vy = detail::output_view(std::forward<Y>(y));
    using T = typename decltype(vv)::value_type;
    detail::require_same_value_type<T, decltype(vu), decltype(vy)>();
    return detail::bridge_point_forward<T>("brownian_bridge_sample", vv, vu, nullptr, vy, o);
  }
}

/// As brownian_bridge_sample, with the caller's standard-normal noise eps (N x D).
template <class A, class B, class E, class Y>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<E>&& writable_tensor<Y&&>)
auto brownian_bridge_sample_with_noise(const A& a, const B& b, const E& eps, Y&& y,
                                       const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto ve = detail::input_view(eps);
  const auto vy = detail::output_view(std::forward<Y>(y));
  using T = typename decltype(vv)::value_type;
  detail::require_same_value_type<T, decltype(vu), decltype(ve), decltype(vy)>();
  return detail::bridge_point_forward<T>("brownian_bridge_sample_with_noise", vv, vu, &ve, vy, o);
}

/// Backward of brownian_bridge_sample: given grad_y = dL/dy, writes (or adds) dL/da and dL/db
/// and returns dL/dt (per row and summed) and dL/dsigma.
template <class A, class B, class T, class GY, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<GY>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_sample_backward(const A& a, const B& b, const brownian_bridge_saved<T>& saved,
                                    const GY& grad_y, GA&& grad_a, GB&& grad_b,
                                    const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    const char* fn = "brownian_bridge_sample_backward";
    detail::bridge_check_saved(fn, saved, as_view(a).rows(), as_view(a).cols(), o, false, true,
                               false);
    return detail::device_backend_of<detail::bridge_sampler_tag, A>::type::sample_backward(
        as_view(a), as_view(b), as_view(grad_y), as_view(grad_a), as_view(grad_b), o);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vg = detail::input_view(grad_y);
    const auto gv = detail::output_view(std::forward<GA>(grad_a));
    const auto gu = detail::output_view(std::forward<GB>(grad_b));
    detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(vg), decltype(gv),
                                    decltype(gu)>();
    return detail::bridge_point_backward<T>("brownian_bridge_sample_backward", vv, vu, nullptr,
                                            saved, vg, gv, gu, o);
  }
}

/// Backward of brownian_bridge_sample_with_noise (pass the same eps).
template <class A, class B, class E, class T, class GY, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<E>&& tensor_like<GY>&&
                         writable_tensor<GA&&>&& writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_sample_with_noise_backward(const A& a, const B& b, const E& eps,
                                               const brownian_bridge_saved<T>& saved,
                                               const GY& grad_y, GA&& grad_a, GB&& grad_b,
                                               const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto ve = detail::input_view(eps);
  const auto vg = detail::input_view(grad_y);
  const auto gv = detail::output_view(std::forward<GA>(grad_a));
  const auto gu = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(ve), decltype(vg),
                                  decltype(gv), decltype(gu)>();
  return detail::bridge_point_backward<T>("brownian_bridge_sample_with_noise_backward", vv, vu, &ve,
                                          saved, vg, gv, gu, o);
}

/// Samples a K-step trajectory per pair into x (N (K+1) x D; row j (K+1) + k holds X_k), noise
/// from Philox stream 2.
template <class A, class B, class X>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<X&&>)
auto brownian_bridge_trajectory(const A& a, const B& b, X&& x,
                                const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    using Backend = typename detail::device_backend_of<detail::bridge_sampler_tag, A>::type;
    Backend::trajectory(as_view(a), as_view(b), as_view(x), o);
    return detail::bridge_saved_for<typename Backend::value_type>(
        as_view(a).rows(), as_view(a).cols(), o.steps, o, false);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vx = detail::output_view(std::forward<X>(x));
    using T = typename decltype(vv)::value_type;
    detail::require_same_value_type<T, decltype(vu), decltype(vx)>();
    return detail::bridge_path_forward<T>("brownian_bridge_trajectory", vv, vu, nullptr, vx, o);
  }
}

/// As brownian_bridge_trajectory, with the caller's standard-normal xi (N (K-1) x D; row
/// j (K-1) + k - 1 holds xi_k of pair j).
template <class A, class B, class XI, class X>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<XI>&& writable_tensor<X&&>)
auto brownian_bridge_trajectory_with_noise(const A& a, const B& b, const XI& xi, X&& x,
                                           const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto vxi = detail::input_view(xi);
  const auto vx = detail::output_view(std::forward<X>(x));
  using T = typename decltype(vv)::value_type;
  detail::require_same_value_type<T, decltype(vu), decltype(vxi), decltype(vx)>();
  return detail::bridge_path_forward<T>("brownian_bridge_trajectory_with_noise", vv, vu, &vxi, vx,
                                        o);
}

/// Backward of brownian_bridge_trajectory: given grad_x = dL/dx, writes (or adds) dL/da and
/// dL/db and returns dL/dsigma.
template <class A, class B, class T, class GX, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<GX>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_trajectory_backward(const A& a, const B& b,
                                        const brownian_bridge_saved<T>& saved, const GX& grad_x,
                                        GA&& grad_a, GB&& grad_b,
                                        const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    detail::bridge_check_saved("brownian_bridge_trajectory_backward", saved, as_view(a).rows(),
                               as_view(a).cols(), o, false, false);
    return detail::device_backend_of<detail::bridge_sampler_tag, A>::type::trajectory_backward(
        as_view(a), as_view(b), as_view(grad_x), as_view(grad_a), as_view(grad_b), o);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vg = detail::input_view(grad_x);
    const auto gv = detail::output_view(std::forward<GA>(grad_a));
    const auto gu = detail::output_view(std::forward<GB>(grad_b));
    detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(vg), decltype(gv),
                                    decltype(gu)>();
    return detail::bridge_path_backward<T>("brownian_bridge_trajectory_backward", vv, vu, nullptr,
                                           saved, vg, gv, gu, o);
  }
}

/// Backward of brownian_bridge_trajectory_with_noise (pass the same xi).
template <class A, class B, class XI, class T, class GX, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<XI>&& tensor_like<GX>&&
                         writable_tensor<GA&&>&& writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_trajectory_with_noise_backward(const A& a, const B& b, const XI& xi,
                                                   const brownian_bridge_saved<T>& saved,
                                                   const GX& grad_x, GA&& grad_a, GB&& grad_b,
                                                   const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto vxi = detail::input_view(xi);
  const auto vg = detail::input_view(grad_x);
  const auto gv = detail::output_view(std::forward<GA>(grad_a));
  const auto gu = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(vxi), decltype(vg),
                                  decltype(gv), decltype(gu)>();
  return detail::bridge_path_backward<T>("brownian_bridge_trajectory_with_noise_backward", vv, vu,
                                         &vxi, saved, vg, gv, gu, o);
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_HPP
