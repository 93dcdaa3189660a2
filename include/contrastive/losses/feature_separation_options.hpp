#ifndef CONTRASTIVE_LOSSES_FEATURE_SEPARATION_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_FEATURE_SEPARATION_OPTIONS_HPP

// The options of feature_separation.hpp, the checks that read no element and the uniformity
// term's composition from its log-sums, apart so that the block sweep's plan
// (core/block_sweep.hpp) and the CUDA path (cuda/feature_separation.cuh) share them without
// Eigen.

#include <math.h>

#include <cmath>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// The two readings of the uniformity term.
enum class uniformity_form {
  literal,    // log((1/N) sum_{j,k} [G(vi) + G(ui)]), j = k included (the paper's text)
  wang_isola  // sum over modalities of log((1/(N(N-1))) sum_{j != k} G)
};

/// Options of deep feature separation; tile_rows x tile_cols tiles the uniformity sweep and the
/// in-modal InfoNCE calls, num_threads the uniformity sweep (tiling_options).
struct feature_separation_options : tiling_options {
  double orthogonality_weight = 1;
  double contrastive_weight = 1;
  double uniformity_weight = 1;
  double temperature = 0.07;  // in-modal InfoNCE temperature (shared with the base loss)
  double uniformity_t = 2;    // t of G_t(x, y) = exp(-t ||x - y||^2), > 0
  uniformity_form uniformity = uniformity_form::literal;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What every backward returns besides the input gradients: upstream * dL/dtemperature (from
/// the in-modal InfoNCE term; zero for the terms without a temperature).
using feature_separation_parameter_gradients = temperature_gradient;

namespace detail {

// ---- checks that read no element (the CPU adds its scans, the GPU its device scans) ----

inline void fs_check_options(const char* fn, const feature_separation_options& o) {
  CONTRASTIVE_CHECK(std::isfinite(o.orthogonality_weight) && o.orthogonality_weight >= 0, fn,
                    ": 'orthogonality_weight' must be finite and >= 0, got ",
                    o.orthogonality_weight);
  CONTRASTIVE_CHECK(std::isfinite(o.contrastive_weight) && o.contrastive_weight >= 0, fn,
                    ": 'contrastive_weight' must be finite and >= 0, got ", o.contrastive_weight);
  CONTRASTIVE_CHECK(std::isfinite(o.uniformity_weight) && o.uniformity_weight >= 0, fn,
                    ": 'uniformity_weight' must be finite and >= 0, got ", o.uniformity_weight);
  check_temperature(fn, o.temperature);
  CONTRASTIVE_CHECK(std::isfinite(o.uniformity_t) && o.uniformity_t > 0, fn,
                    ": 'uniformity_t' must be finite and > 0, got ", o.uniformity_t);
  check_tiles(fn, o.tile_rows, o.tile_cols);
}

inline void fs_check_upstream(const char* fn, double upstream) {
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
}

template <class T, class S>
void fs_check_same_shape(const char* fn, const char* name, const matrix_view<const T, S>& x,
                         const char* ref_name, const matrix_view<const T, S>& r) {
  check_matrix(fn, name, x);
  CONTRASTIVE_CHECK(x.rows() == r.rows(), fn, ": '", name, "' has ", x.rows(), " rows, expected ",
                    r.rows(), " (rows of '", ref_name, "')");
  CONTRASTIVE_CHECK(x.cols() == r.cols(), fn, ": '", name, "' has ", x.cols(),
                    " columns, expected ", r.cols(), " (columns of '", ref_name, "')");
}

/// Inputs named in `names` (host or device views): all the shape of the first, N > 0, D > 0.
template <class T, class S>
void fs_check_shapes(const char* fn, const matrix_view<const T, S>* const* in,
                     const char* const* names, int count) {
  check_matrix(fn, names[0], *in[0]);
  CONTRASTIVE_CHECK(in[0]->rows() > 0, fn, ": empty batch ('", names[0], "' has 0 rows)");
  CONTRASTIVE_CHECK(in[0]->cols() > 0, fn, ": '", names[0], "' has 0 columns (D must be > 0)");
  for (int k = 1; k < count; ++k) fs_check_same_shape(fn, names[k], *in[k], names[0], *in[0]);
}

/// The uniformity term from the log-sums lv, lu of G_t over the two modalities' pairs (n rows
/// each), and the normaliser log S of each modality's gradient: the shared sum for the literal
/// form, the modality's own for wang_isola. Used by the CPU term, the block-sweep emulator and
/// the GPU.
CONTRASTIVE_HOST_DEVICE inline double uniformity_loss(uniformity_form f, index_t n, double lv,
                                                      double lu) noexcept {
  if (f == uniformity_form::wang_isola) {
    const double pairs = ::log(double(n) * double(n - 1));
    return (lv - pairs) + (lu - pairs);
  }
  return logaddexp(lv, lu) - ::log(double(n));
}
CONTRASTIVE_HOST_DEVICE inline void uniformity_normalizers(uniformity_form f, double lv, double lu,
                                                           double* nv, double* nu) noexcept {
  *nv = f == uniformity_form::wang_isola ? lv : logaddexp(lv, lu);
  *nu = f == uniformity_form::wang_isola ? lu : *nv;
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_FEATURE_SEPARATION_OPTIONS_HPP
