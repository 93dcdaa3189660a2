#ifndef CONTRASTIVE_LOSSES_FEATURE_SEPARATION_HPP
#define CONTRASTIVE_LOSSES_FEATURE_SEPARATION_HPP

// Deep feature separation (Jiang et al., "Understanding and Constructing Latent Modality
// Structures in Multi-modal Representation Learning", CVPR 2023; docs/feature_separation.md):
//
//   L_Sep = w_o L_Ortho + w_c L^i_Con + w_u L^i_Uni     (weights 1, 1, 1 by default)
//
// Inputs (N x D each, row j = pair j): v, u the shared (aligned) image and text features;
// vi, ui the "independent" features of an extra head of width D; via, uia the independent
// features of the augmented views.
//
// - Orthogonality:  L_Ortho = (1/N) sum_j (<v_j, vi_j>^2 + <u_j, ui_j>^2).
// - In-modal contrastive: L^i_Con = InfoNCE(vi, via) + InfoNCE(ui, uia), one-direction InfoNCE
//   (mean reduction) computed by info_nce_forward / info_nce_backward, with the temperature
//   shared with the base loss L_Con. Reading chosen (the printed numerator <z^i_Vj, z^i_Vj> is
//   identically 1): the positive of vi_j is the augmented view's via_j and the candidates are
//   the rows of via, mirroring L_Con.
// - Uniformity, G_t(x, y) = exp(-t ||x - y||^2), t = 2 (the paper's value):
//   * literal (default, the paper's text): log((1/N) sum_{j,k} [G_t(vi_j, vi_k) + G_t(ui_j, ui_k)]),
//     j = k included, one log over both modalities;
//   * wang_isola (option, after Wang & Isola 2020): per modality log((1/(N(N-1))) sum_{j != k} G_t),
//     the two logs summed (needs N >= 2).
//   ||x - y||^2 = ||x||^2 + ||y||^2 - 2<x, y> from tiled Gram products: the N x N kernel matrix
//   is never stored (tiles of tile_rows x tile_cols, per-row log-sum-exp statistics in double).
//
// The independent head is not specified by the paper; library guidance: a linear layer of width
// D on the pooled backbone output, L2-normalised, used in training only, no stop-gradients.
//
// Each term has its own forward / backward / forward_backward and the combined loss takes the
// weights. Backward writes (or, with `accumulate`, adds) upstream * the gradients; the combined
// backward writes all six gradients (those a term does not touch get only the other terms).
// The temperature gradient of L^i_Con is returned as contrastive::temperature_gradient.
//
// Inputs are used as given (normalise them with l2_normalize); a zero-norm row or a non-finite
// value is contrastive::invalid_argument. Threads: OpenMP over row tiles of the uniformity term
// (InfoNCE uses its own); results never depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/gemm.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/modal_common.hpp"
#include "contrastive/core/parallel.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/losses/feature_separation_options.hpp"
#include "contrastive/losses/info_nce.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
struct feature_orthogonality_saved {
  T loss = 0;
  index_t n = 0, d = 0;
};

template <class T>
struct in_modal_contrastive_saved {
  T loss = 0;
  info_nce_saved<T> a, b;  // InfoNCE(a_ind, a_ind_aug) and InfoNCE(b_ind, b_ind_aug)
};

template <class T>
struct feature_uniformity_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  uniformity_form form = uniformity_form::literal;
  double t = 2;
  double log_sum_v = 0, log_sum_u = 0;  // log of sum_{j,k} G over each modality's pairs
};

template <class T>
struct feature_separation_saved {
  T loss = 0;
  feature_orthogonality_saved<T> orthogonality;  // unweighted terms
  in_modal_contrastive_saved<T> contrastive;
  feature_uniformity_saved<T> uniformity;
  double orthogonality_weight = 1, contrastive_weight = 1, uniformity_weight = 1;
};

namespace detail {

/// Inputs named in `names`: all the shape of the first, N > 0, D > 0, finite, no zero-norm row.
template <class T>
void fs_check_inputs(const char* fn, const matrix_view<const T>* const* in,
                     const char* const* names, int count) {
  fs_check_shapes(fn, in, names, count);
  for (int k = 0; k < count; ++k) check_rows(fn, names[k], *in[k]);
}

template <class T>
void fs_check_outputs(const char* fn, const matrix_view<T>* const* out,
                      const char* const* out_names, int count,
                      const matrix_view<const T>* const* in, const char* const* in_names,
                      int in_count) {
  const index_t n = in[0]->rows(), d = in[0]->cols();
  for (int k = 0; k < count; ++k) {
    check_matrix(fn, out_names[k], *out[k]);
    check_shape(fn, out_names[k], *out[k], n, d, "the shape of the inputs");
    check_writable_layout(fn, out_names[k], *out[k]);
    for (int j = 0; j < in_count; ++j)
      check_no_alias(fn, out_names[k], *out[k], in_names[j], *in[j]);
    for (int j = 0; j < k; ++j) check_no_alias(fn, out_names[k], *out[k], out_names[j], *out[j]);
  }
}

/// Rejects a backward whose gradients could overflow T, before anything is written. With
/// m = max|x|: |dL/dx| <= |upstream| (2 w_o D m^3 + 4 (N + 1) w_c m / tau + 8 t w_u m), the
/// orthogonality, in-modal InfoNCE (check_pair_gradient_bound) and uniformity bounds; `accumulate`
/// adds what the outputs hold. `in_modal` (the in-modal InfoNCE forwards, or null) gives the
/// temperature gradient, which must be finite too.
template <class T>
void fs_check_gradient_bound(const char* fn, const matrix_view<T>* const* out, int count,
                             const matrix_view<const T>* const* in, int in_count,
                             const feature_separation_options& o, double upstream, double w_o,
                             double w_c, double w_u,
                             const in_modal_contrastive_saved<T>* in_modal) {
  double m = 0, existing = 0;
  for (int k = 0; k < in_count; ++k) m = std::max(m, max_abs(*in[k]));
  if (o.accumulate)
    for (int k = 0; k < count; ++k) existing = std::max(existing, max_abs(*out[k]));
  const double d = static_cast<double>(in[0]->cols()), n = static_cast<double>(in[0]->rows());
  const double m1 = at_least_one(m);  // each factor at least 1: partial products are bounded too
  const double bound = at_least_one(upstream) *
                       (2 * at_least_one(w_o) * d * m1 * m1 * m1 +
                        4 * (n + 1) * at_least_one(w_c) * m1 * at_least_one(1 / o.temperature) +
                        8 * at_least_one(o.uniformity_t) * at_least_one(w_u) * m1);
  check_output_bound<T>(fn, "gradients", bound + existing);
  if (in_modal) {
    // What each in-modal InfoNCE backward checks besides its gradients, so that none throws
    // after the orthogonality gradients are written (a fuzz run found that order).
    // (An array, not a braced list: nvcc's front end rejects the latter in a range-for here.)
    const double grads[2] = {in_modal->a.grad_log_scale, in_modal->b.grad_log_scale};
    for (const double g : grads)
      check_pair_logit_bounds<T>(fn, in[0]->rows(), in[0]->cols(), m, upstream * w_c,
                                 1 / o.temperature, 1.0, g);
    check_output_bound<double>(
        fn, "temperature gradient",
        std::abs(upstream * w_c * (in_modal->a.grad_log_scale + in_modal->b.grad_log_scale)) /
            o.temperature);
  }
}

template <class T>
void fs_clear(const matrix_view<T>& out) {
  for (index_t i = 0; i < out.rows(); ++i)
    for (index_t k = 0; k < out.cols(); ++k) out(i, k) = T(0);
}

// ---- orthogonality ----

template <class T>
double fs_ortho_forward(const matrix_view<const T>& v, const matrix_view<const T>& u,
                        const matrix_view<const T>& vi, const matrix_view<const T>& ui) {
  double s = 0;
  for (index_t j = 0; j < v.rows(); ++j) {
    const double a = dot_rows(v, j, vi, j), b = dot_rows(u, j, ui, j);
    s += a * a + b * b;
  }
  return s / double(v.rows());
}

/// Adds (always) scale * gradients of L_Ortho into the four outputs.
template <class T>
void fs_ortho_backward(const matrix_view<const T>& v, const matrix_view<const T>& u,
                       const matrix_view<const T>& vi, const matrix_view<const T>& ui,
                       const matrix_view<T>& gv, const matrix_view<T>& gu,
                       const matrix_view<T>& gvi, const matrix_view<T>& gui, double scale) {
  const index_t n = v.rows(), d = v.cols();
  const double c = 2 * scale / double(n);
  for (index_t j = 0; j < n; ++j) {
    const double a = c * dot_rows(v, j, vi, j), b = c * dot_rows(u, j, ui, j);
    for (index_t k = 0; k < d; ++k) {
      gv(j, k) += static_cast<T>(a * double(vi(j, k)));
      gvi(j, k) += static_cast<T>(a * double(v(j, k)));
      gu(j, k) += static_cast<T>(b * double(ui(j, k)));
      gui(j, k) += static_cast<T>(b * double(u(j, k)));
    }
  }
}

// ---- uniformity (tiled) ----

/// One modality prepared for the sweep: a gemm-ready view and the squared row norms.
template <class T>
struct fs_modality {
  row_major_matrix<T> packed;  // used when the input is not gemm_ready
  matrix_view<const T> x;
  std::vector<double> sq;

  explicit fs_modality(const matrix_view<const T>& in) {
    if (gemm_ready(in)) {
      x = in;
    } else {
      packed.resize(in.rows(), in.cols());
      for (index_t i = 0; i < in.rows(); ++i)
        for (index_t k = 0; k < in.cols(); ++k) packed(i, k) = in(i, k);
      x = matrix_view<const T>(packed.data(), in.rows(), in.cols(), in.cols(), 1);
    }
    sq.resize(static_cast<std::size_t>(in.rows()));
    for (index_t i = 0; i < in.rows(); ++i)
      sq[static_cast<std::size_t>(i)] = row_squared_norm(in, i);
  }
};

/// Exponent e_jk = -t ||x_j - x_k||^2 of tile (I, J) written over the Gram tile s (Tr x Tc,
/// row-major, in double); the diagonal is 0 (literal) or -inf (excluded, wang_isola).
template <class T>
void fs_exponents(const fs_modality<T>& m, index_t i0, index_t tr, index_t j0, index_t tc,
                  const T* s, double* e, double t, bool exclude_diagonal) noexcept {
  for (index_t a = 0; a < tr; ++a) {
    const double na = m.sq[static_cast<std::size_t>(i0 + a)];
    for (index_t b = 0; b < tc; ++b) {
      double d2 = na + m.sq[static_cast<std::size_t>(j0 + b)] - 2 * double(s[a * tc + b]);
      d2 = d2 > 0 ? d2 : 0;
      e[a * tc + b] = -t * d2;
    }
    if (i0 + a >= j0 && i0 + a < j0 + tc)
      e[a * tc + (i0 + a - j0)] = exclude_diagonal ? -infinity<double>() : 0.0;
  }
}

/// Forward sweep of one modality: log sum_{j,k} G (j != k when excluded).
template <class T>
double fs_uniformity_log_sum(const fs_modality<T>& m, const feature_separation_options& o,
                             bool exclude_diagonal) {
  const index_t n = m.x.rows();
  const index_t tr = std::min(o.tile_rows, n), tc = std::min(o.tile_cols, n);
  const index_t row_tiles = (n + tr - 1) / tr;
  const int threads = resolve_threads(o.num_threads, double(n) * double(n) * double(m.x.cols()));
  const int used = threads < row_tiles ? threads : static_cast<int>(row_tiles);
  std::vector<T> s_buf(static_cast<std::size_t>(used * tr * tc));
  std::vector<double> e_buf(static_cast<std::size_t>(used * tr * tc));
  std::vector<online_lse<double>> rows(static_cast<std::size_t>(n));
  parallel_for(row_tiles, used, [&](index_t it, int tid) {
    T* s = s_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr * tc);
    double* e = e_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr * tc);
    const index_t i0 = it * tr, ni = std::min(tr, n - i0);
    const auto xi = map_rows(m.x.middle_rows(i0, ni));
    for (index_t j0 = 0; j0 < n; j0 += tc) {
      const index_t nj = std::min(tc, n - j0);
      row_map<T> sm(s, ni, nj, Eigen::OuterStride<>(nj));
      sm.noalias() = xi * map_rows(m.x.middle_rows(j0, nj)).transpose();
      fs_exponents(m, i0, ni, j0, nj, s, e, o.uniformity_t, exclude_diagonal);
      for (index_t a = 0; a < ni; ++a) {
        const double* er = e + a * nj;
        double mx = -infinity<double>();
        for (index_t b = 0; b < nj; ++b) mx = er[b] > mx ? er[b] : mx;
        if (mx == -infinity<double>()) continue;
        online_lse<double> part;
        part.max = mx;
        part.sum = 0;
        for (index_t b = 0; b < nj; ++b) part.sum += std::exp(er[b] - mx);
        rows[static_cast<std::size_t>(i0 + a)].merge(part);
      }
    }
  });
  online_lse<double> total;
  for (const auto& r : rows) total.merge(r);
  return total.value();
}

/// Adds scale * d(log S)/dx into g for one modality, with log S = lambda (the normaliser the
/// weights W_jk = G_jk / S use): dx_j = -4 t scale sum_k W_jk (x_j - x_k).
template <class T>
void fs_uniformity_backward(const fs_modality<T>& m, const feature_separation_options& o,
                            bool exclude_diagonal, double lambda, double scale,
                            const matrix_view<T>& g) {
  const index_t n = m.x.rows(), d = m.x.cols();
  const index_t tr = std::min(o.tile_rows, n), tc = std::min(o.tile_cols, n);
  const index_t row_tiles = (n + tr - 1) / tr;
  const int threads = resolve_threads(o.num_threads, double(n) * double(n) * double(m.x.cols()));
  const int used = threads < row_tiles ? threads : static_cast<int>(row_tiles);
  const std::size_t tile = static_cast<std::size_t>(tr * tc);
  std::vector<T> s_buf(static_cast<std::size_t>(used) * tile);
  std::vector<double> e_buf(static_cast<std::size_t>(used) * tile);
  std::vector<T> acc_buf(static_cast<std::size_t>(used * tr * d));
  std::vector<double> rs_buf(static_cast<std::size_t>(used * tr));
  const double c = -4 * o.uniformity_t * scale;
  parallel_for(row_tiles, used, [&](index_t it, int tid) {
    T* s = s_buf.data() + static_cast<std::size_t>(tid) * tile;
    double* e = e_buf.data() + static_cast<std::size_t>(tid) * tile;
    T* acc = acc_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr * d);
    double* rs = rs_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr);
    const index_t i0 = it * tr, ni = std::min(tr, n - i0);
    const auto xi = map_rows(m.x.middle_rows(i0, ni));
    row_map<T> am(acc, ni, d, Eigen::OuterStride<>(d));
    am.setZero();
    std::fill(rs, rs + ni, 0.0);
    for (index_t j0 = 0; j0 < n; j0 += tc) {
      const index_t nj = std::min(tc, n - j0);
      const auto xj = map_rows(m.x.middle_rows(j0, nj));
      row_map<T> sm(s, ni, nj, Eigen::OuterStride<>(nj));
      sm.noalias() = xi * xj.transpose();
      fs_exponents(m, i0, ni, j0, nj, s, e, o.uniformity_t, exclude_diagonal);
      for (index_t a = 0; a < ni; ++a) {
        double r = 0;
        for (index_t b = 0; b < nj; ++b) {
          const double w = std::exp(e[a * nj + b] - lambda);
          s[a * nj + b] = static_cast<T>(w);
          r += w;
        }
        rs[a] += r;
      }
      am.noalias() += sm * xj;  // sum_k W_jk x_k
    }
    for (index_t a = 0; a < ni; ++a)
      for (index_t k = 0; k < d; ++k)
        g(i0 + a, k) +=
            static_cast<T>(c * (rs[a] * double(m.x(i0 + a, k)) - double(acc[a * d + k])));
  });
}

template <class T>
feature_uniformity_saved<T> fs_uniformity_forward(const char* fn, const matrix_view<const T>& vi,
                                                  const matrix_view<const T>& ui,
                                                  const feature_separation_options& o) {
  const index_t n = vi.rows();
  const bool wang = o.uniformity == uniformity_form::wang_isola;
  CONTRASTIVE_CHECK(!wang || n >= 2, fn,
                    ": the wang_isola uniformity needs at least 2 rows (pairs j != k), got ", n);
  feature_uniformity_saved<T> s;
  s.n = n;
  s.d = vi.cols();
  s.form = o.uniformity;
  s.t = o.uniformity_t;
  s.log_sum_v = fs_uniformity_log_sum(fs_modality<T>(vi), o, wang);
  s.log_sum_u = fs_uniformity_log_sum(fs_modality<T>(ui), o, wang);
  s.loss = static_cast<T>(uniformity_loss(o.uniformity, n, s.log_sum_v, s.log_sum_u));
  return s;
}

/// Adds scale * dL_Uni into gvi and gui.
template <class T>
void fs_uniformity_backward_both(const char* fn, const matrix_view<const T>& vi,
                                 const matrix_view<const T>& ui,
                                 const feature_uniformity_saved<T>& s,
                                 const feature_separation_options& o, const matrix_view<T>& gvi,
                                 const matrix_view<T>& gui, double scale) {
  CONTRASTIVE_CHECK(
      s.n == vi.rows() && s.d == vi.cols() && s.form == o.uniformity && s.t == o.uniformity_t, fn,
      ": 'saved' (uniformity) was computed for a ", s.n, " x ", s.d, " batch with t = ", s.t,
      ", these are ", vi.rows(), " x ", vi.cols(), " with t = ", o.uniformity_t,
      " (or another uniformity form)");
  const bool wang = o.uniformity == uniformity_form::wang_isola;
  double lv = 0, lu = 0;
  uniformity_normalizers(o.uniformity, s.log_sum_v, s.log_sum_u, &lv, &lu);
  fs_uniformity_backward(fs_modality<T>(vi), o, wang, lv, scale, gvi);
  fs_uniformity_backward(fs_modality<T>(ui), o, wang, lu, scale, gui);
}

// ---- in-modal contrastive ----

inline info_nce_options fs_info_nce_options(const feature_separation_options& o, index_t n,
                                            index_t d) {
  info_nce_options io;
  io.temperature = o.temperature;
  io.symmetric = false;
  io.tile_rows = o.tile_rows;
  io.tile_cols = o.tile_cols;
  io.accumulate = true;
  // Small problems run on one thread (InfoNCE's results do not depend on it either).
  io.num_threads = resolve_threads(o.num_threads, double(n) * double(n) * double(d));
  return io;
}

template <class T>
in_modal_contrastive_saved<T> fs_contrastive_forward(
    const matrix_view<const T>& vi, const matrix_view<const T>& ui, const matrix_view<const T>& via,
    const matrix_view<const T>& uia, const feature_separation_options& o, workspace ws) {
  const info_nce_options io = fs_info_nce_options(o, vi.rows(), vi.cols());
  in_modal_contrastive_saved<T> s;
  s.a = info_nce_forward(vi, via, io, ws);
  s.b = info_nce_forward(ui, uia, io, ws);
  s.loss = static_cast<T>(double(s.a.loss) + double(s.b.loss));
  return s;
}

/// Adds scale * dL^i_Con into the four outputs; returns scale * the temperature gradient.
template <class T>
temperature_gradient fs_contrastive_backward(
    const matrix_view<const T>& vi, const matrix_view<const T>& ui, const matrix_view<const T>& via,
    const matrix_view<const T>& uia, const in_modal_contrastive_saved<T>& s,
    const matrix_view<T>& gvi, const matrix_view<T>& gui, const matrix_view<T>& gvia,
    const matrix_view<T>& guia, const feature_separation_options& o, double scale, workspace ws) {
  const info_nce_options io = fs_info_nce_options(o, vi.rows(), vi.cols());
  const temperature_gradient a = info_nce_backward(vi, via, s.a, gvi, gvia, io, scale, ws);
  const temperature_gradient b = info_nce_backward(ui, uia, s.b, gui, guia, io, scale, ws);
  return temperature_gradient::from_log_scale(a.log_scale + b.log_scale, o.temperature);
}

}  // namespace detail

/// Bytes of scratch the in-modal InfoNCE calls use for N x D row-major inputs (the workspace of
/// every feature-separation call serves them; the orthogonality and uniformity terms keep their
/// O(N + tile^2) scratch themselves). Pass at least this much to make those calls
/// allocation-free.
template <class T>
std::size_t feature_separation_workspace_bytes(index_t n, index_t d,
                                               const feature_separation_options& o = {}) {
  return info_nce_workspace_bytes<T>(n, d, detail::fs_info_nce_options(o, n, d));
}

/// The same for these inputs (the augmented views' layouts add their packing).
template <class A, class B, class AI, class BI, class AIA, class BIA,
          std::enable_if_t<is_tensor_like<AI>::value && is_tensor_like<AIA>::value, int> = 0>
std::size_t feature_separation_workspace_bytes(const A&, const B&, const AI& a_ind, const BI& b_ind,
                                               const AIA& a_ind_aug, const BIA& b_ind_aug,
                                               const feature_separation_options& o = {}) {
  const auto va = detail::input_view(a_ind);
  const info_nce_options io = detail::fs_info_nce_options(o, va.rows(), va.cols());
  const std::size_t x = info_nce_workspace_bytes(a_ind, a_ind_aug, io);
  const std::size_t y = info_nce_workspace_bytes(b_ind, b_ind_aug, io);
  return x > y ? x : y;
}

// ---------------------------------------------------------------------------------------------
// Orthogonality term.

/// L_Ortho = (1/N) sum_j (<v_j, vi_j>^2 + <u_j, ui_j>^2).
template <class A, class B, class AI, class BI>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>)
auto feature_orthogonality_forward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                   const feature_separation_options& o = {}, workspace ws = {}) {
  (void)ws;                                           // these terms need no caller scratch
  if constexpr (detail::is_device_input<A>::value) {  // cuda/feature_separation.cuh
    return detail::device_backend_of<detail::feature_orthogonality_tag, A>::type::forward(
        as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), o);
  } else {
    const char* fn = "feature_orthogonality_forward";
    const auto x0 = detail::input_view(a);
    using T = typename decltype(x0)::value_type;
    const matrix_view<const T> x1 = detail::input_view(b), x2 = detail::input_view(a_ind),
                               x3 = detail::input_view(b_ind);
    const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
    const char* names[4] = {"a", "b", "a_ind", "b_ind"};
    detail::fs_check_options(fn, o);
    detail::fs_check_inputs(fn, in, names, 4);
    feature_orthogonality_saved<T> s;
    s.n = x0.rows();
    s.d = x0.cols();
    s.loss = static_cast<T>(detail::fs_ortho_forward(x0, x1, x2, x3));
    return s;
  }
}

/// Backward of an orthogonality forward run on device views (cuda/feature_separation.cuh).
template <class A, class B, class AI, class BI, class GA, class GB, class GAI, class GBI>
feature_separation_parameter_gradients feature_orthogonality_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind,
    const cuda::feature_orthogonality_device_saved& saved, GA&& grad_a, GB&& grad_b,
    GAI&& grad_a_ind, GBI&& grad_b_ind, const feature_separation_options& o = {},
    double upstream = 1.0, workspace = {}) {
  const decltype(as_view(grad_a)) g[4] = {as_view(grad_a), as_view(grad_b), as_view(grad_a_ind),
                                          as_view(grad_b_ind)};
  return detail::device_backend_of<detail::feature_orthogonality_tag, A>::type::backward(
      as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), saved, g, o, upstream);
}

template <class A, class B, class AI, class BI, class T, class GA, class GB, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
feature_separation_parameter_gradients
    feature_orthogonality_backward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                   const feature_orthogonality_saved<T>& saved, GA&& grad_a,
                                   GB&& grad_b, GAI&& grad_a_ind, GBI&& grad_b_ind,
                                   const feature_separation_options& o = {}, double upstream = 1.0,
                                   workspace ws = {}) {
  const char* fn = "feature_orthogonality_backward";
  (void)ws;  // these terms need no caller scratch
  const matrix_view<const T> x0 = detail::input_view(a), x1 = detail::input_view(b),
                             x2 = detail::input_view(a_ind), x3 = detail::input_view(b_ind);
  const matrix_view<T> g0 = detail::output_view(std::forward<GA>(grad_a)),
                       g1 = detail::output_view(std::forward<GB>(grad_b)),
                       g2 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g3 = detail::output_view(std::forward<GBI>(grad_b_ind));
  const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
  const char* names[4] = {"a", "b", "a_ind", "b_ind"};
  const matrix_view<T>* out[4] = {&g0, &g1, &g2, &g3};
  const char* out_names[4] = {"grad_a", "grad_b", "grad_a_ind", "grad_b_ind"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 4);
  CONTRASTIVE_CHECK(saved.n == x0.rows() && saved.d == x0.cols(), fn, ": 'saved' belongs to x0 ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", x0.rows(), " x ",
                    x0.cols());
  detail::fs_check_outputs(fn, out, out_names, 4, in, names, 4);
  detail::fs_check_gradient_bound<T>(fn, out, 4, in, 4, o, upstream, 1, 0, 0, nullptr);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  detail::fs_ortho_backward(x0, x1, x2, x3, g0, g1, g2, g3, upstream);
  return {};
}

template <class A, class B, class AI, class BI, class GA, class GB, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
auto feature_orthogonality_forward_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind, GA&& grad_a, GB&& grad_b,
    GAI&& grad_a_ind, GBI&& grad_b_ind, const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = feature_orthogonality_forward(a, b, a_ind, b_ind, o, ws);
  feature_orthogonality_backward(a, b, a_ind, b_ind, s, std::forward<GA>(grad_a),
                                 std::forward<GB>(grad_b), std::forward<GAI>(grad_a_ind),
                                 std::forward<GBI>(grad_b_ind), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = {};
  return s.loss;
}

// ---------------------------------------------------------------------------------------------
// In-modal contrastive term.

/// L^i_Con = InfoNCE(a_ind, a_ind_aug) + InfoNCE(b_ind, b_ind_aug) (one direction each).
template <class AI, class BI, class AIA, class BIA>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&& tensor_like<BIA>)
auto in_modal_contrastive_forward(const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
                                  const BIA& b_ind_aug, const feature_separation_options& o = {},
                                  workspace ws = {}) {
  if constexpr (detail::is_device_input<AI>::value) {  // cuda/feature_separation.cuh
    (void)ws;
    return detail::device_backend_of<detail::in_modal_contrastive_tag, AI>::type::forward(
        as_view(a_ind), as_view(b_ind), as_view(a_ind_aug), as_view(b_ind_aug), o);
  } else {
    const char* fn = "in_modal_contrastive_forward";
    const auto x0 = detail::input_view(a_ind);
    using T = typename decltype(x0)::value_type;
    const matrix_view<const T> x1 = detail::input_view(b_ind), x2 = detail::input_view(a_ind_aug),
                               x3 = detail::input_view(b_ind_aug);
    const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
    const char* names[4] = {"a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
    detail::fs_check_options(fn, o);
    detail::fs_check_inputs(fn, in, names, 4);
    return detail::fs_contrastive_forward(x0, x1, x2, x3, o, ws);
  }
}

/// Backward of an in-modal contrastive forward run on device views (cuda/feature_separation.cuh).
template <class AI, class BI, class AIA, class BIA, class GAI, class GBI, class GAIA, class GBIA>
feature_separation_parameter_gradients in_modal_contrastive_backward(
    const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug, const BIA& b_ind_aug,
    const cuda::in_modal_contrastive_device_saved& saved, GAI&& grad_a_ind, GBI&& grad_b_ind,
    GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
    double upstream = 1.0, workspace = {}) {
  const decltype(as_view(grad_a_ind)) g[4] = {as_view(grad_a_ind), as_view(grad_b_ind),
                                              as_view(grad_a_ind_aug), as_view(grad_b_ind_aug)};
  return detail::device_backend_of<detail::in_modal_contrastive_tag, AI>::type::backward(
      as_view(a_ind), as_view(b_ind), as_view(a_ind_aug), as_view(b_ind_aug), saved, g, o,
      upstream);
}

template <class AI, class BI, class AIA, class BIA, class T, class GAI, class GBI, class GAIA,
          class GBIA>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&& tensor_like<BIA>&&
                         writable_tensor<GAI&&>&& writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&&
                             writable_tensor<GBIA&&>)
feature_separation_parameter_gradients
    in_modal_contrastive_backward(const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
                                  const BIA& b_ind_aug, const in_modal_contrastive_saved<T>& saved,
                                  GAI&& grad_a_ind, GBI&& grad_b_ind, GAIA&& grad_a_ind_aug,
                                  GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
                                  double upstream = 1.0, workspace ws = {}) {
  const char* fn = "in_modal_contrastive_backward";
  const matrix_view<const T> x0 = detail::input_view(a_ind), x1 = detail::input_view(b_ind),
                             x2 = detail::input_view(a_ind_aug), x3 = detail::input_view(b_ind_aug);
  const matrix_view<T> g0 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g1 = detail::output_view(std::forward<GBI>(grad_b_ind)),
                       g2 = detail::output_view(std::forward<GAIA>(grad_a_ind_aug)),
                       g3 = detail::output_view(std::forward<GBIA>(grad_b_ind_aug));
  const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
  const char* names[4] = {"a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  const matrix_view<T>* out[4] = {&g0, &g1, &g2, &g3};
  const char* out_names[4] = {"grad_a_ind", "grad_b_ind", "grad_a_ind_aug", "grad_b_ind_aug"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 4);
  detail::fs_check_outputs(fn, out, out_names, 4, in, names, 4);
  detail::fs_check_gradient_bound(fn, out, 4, in, 4, o, upstream, 0, 1, 0, &saved);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  return detail::fs_contrastive_backward(x0, x1, x2, x3, saved, g0, g1, g2, g3, o, upstream, ws);
}

template <class AI, class BI, class AIA, class BIA, class GAI, class GBI, class GAIA, class GBIA>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&& tensor_like<BIA>&&
                         writable_tensor<GAI&&>&& writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&&
                             writable_tensor<GBIA&&>)
auto in_modal_contrastive_forward_backward(
    const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug, const BIA& b_ind_aug, GAI&& grad_a_ind,
    GBI&& grad_b_ind, GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug,
    const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = in_modal_contrastive_forward(a_ind, b_ind, a_ind_aug, b_ind_aug, o, ws);
  const temperature_gradient tg = in_modal_contrastive_backward(
      a_ind, b_ind, a_ind_aug, b_ind_aug, s, std::forward<GAI>(grad_a_ind),
      std::forward<GBI>(grad_b_ind), std::forward<GAIA>(grad_a_ind_aug),
      std::forward<GBIA>(grad_b_ind_aug), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return s.loss;
}

// ---------------------------------------------------------------------------------------------
// Uniformity term.

template <class AI, class BI>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>)
auto feature_uniformity_forward(const AI& a_ind, const BI& b_ind,
                                const feature_separation_options& o = {}, workspace ws = {}) {
  (void)ws;                                            // these terms need no caller scratch
  if constexpr (detail::is_device_input<AI>::value) {  // cuda/feature_separation.cuh
    return detail::device_backend_of<detail::feature_uniformity_tag, AI>::type::forward(
        as_view(a_ind), as_view(b_ind), o);
  } else {
    const char* fn = "feature_uniformity_forward";
    const auto x0 = detail::input_view(a_ind);
    using T = typename decltype(x0)::value_type;
    const matrix_view<const T> x1 = detail::input_view(b_ind);
    const matrix_view<const T>* in[2] = {&x0, &x1};
    const char* names[2] = {"a_ind", "b_ind"};
    detail::fs_check_options(fn, o);
    detail::fs_check_inputs(fn, in, names, 2);
    return detail::fs_uniformity_forward(fn, x0, x1, o);
  }
}

/// Backward of a uniformity forward run on device views (cuda/feature_separation.cuh).
template <class AI, class BI, class GAI, class GBI>
feature_separation_parameter_gradients feature_uniformity_backward(
    const AI& a_ind, const BI& b_ind, const cuda::feature_uniformity_device_saved& saved,
    GAI&& grad_a_ind, GBI&& grad_b_ind, const feature_separation_options& o = {},
    double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::feature_uniformity_tag, AI>::type::backward(
      as_view(a_ind), as_view(b_ind), saved, as_view(grad_a_ind), as_view(grad_b_ind), o, upstream);
}

template <class AI, class BI, class T, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
feature_separation_parameter_gradients
    feature_uniformity_backward(const AI& a_ind, const BI& b_ind,
                                const feature_uniformity_saved<T>& saved, GAI&& grad_a_ind,
                                GBI&& grad_b_ind, const feature_separation_options& o = {},
                                double upstream = 1.0, workspace ws = {}) {
  const char* fn = "feature_uniformity_backward";
  (void)ws;  // these terms need no caller scratch
  const matrix_view<const T> x0 = detail::input_view(a_ind), x1 = detail::input_view(b_ind);
  const matrix_view<T> g0 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g1 = detail::output_view(std::forward<GBI>(grad_b_ind));
  const matrix_view<const T>* in[2] = {&x0, &x1};
  const char* names[2] = {"a_ind", "b_ind"};
  const matrix_view<T>* out[2] = {&g0, &g1};
  const char* out_names[2] = {"grad_a_ind", "grad_b_ind"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 2);
  detail::fs_check_outputs(fn, out, out_names, 2, in, names, 2);
  detail::fs_check_gradient_bound<T>(fn, out, 2, in, 2, o, upstream, 0, 0, 1, nullptr);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  detail::fs_uniformity_backward_both(fn, x0, x1, saved, o, g0, g1, upstream);
  return {};
}

template <class AI, class BI, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
auto feature_uniformity_forward_backward(
    const AI& a_ind, const BI& b_ind, GAI&& grad_a_ind, GBI&& grad_b_ind,
    const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = feature_uniformity_forward(a_ind, b_ind, o, ws);
  feature_uniformity_backward(a_ind, b_ind, s, std::forward<GAI>(grad_a_ind),
                              std::forward<GBI>(grad_b_ind), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = {};
  return s.loss;
}

// ---------------------------------------------------------------------------------------------
// Combined loss L_Sep = w_o L_Ortho + w_c L^i_Con + w_u L^i_Uni (a term of weight 0 is skipped).

namespace detail {
template <class A, class B, class AI, class BI, class AIA, class BIA>
auto fs_forward_host(const A& a, const B& b, const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
                     const BIA& b_ind_aug, const feature_separation_options& o, workspace ws) {
  const char* fn = "feature_separation_forward";
  const auto a0 = detail::input_view(a);
  using T = typename decltype(a0)::value_type;
  const matrix_view<const T> a1 = detail::input_view(b), a2 = detail::input_view(a_ind),
                             a3 = detail::input_view(b_ind), a4 = detail::input_view(a_ind_aug),
                             a5 = detail::input_view(b_ind_aug);
  const matrix_view<const T>* in[6] = {&a0, &a1, &a2, &a3, &a4, &a5};
  const char* names[6] = {"a", "b", "a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  detail::fs_check_options(fn, o);
  detail::fs_check_inputs(fn, in, names, 6);
  feature_separation_saved<T> s;
  s.orthogonality_weight = o.orthogonality_weight;
  s.contrastive_weight = o.contrastive_weight;
  s.uniformity_weight = o.uniformity_weight;
  s.orthogonality.n = a0.rows();
  s.orthogonality.d = a0.cols();
  double loss = 0;
  if (o.orthogonality_weight != 0) {
    s.orthogonality.loss = static_cast<T>(detail::fs_ortho_forward(a0, a1, a2, a3));
    loss += o.orthogonality_weight * double(s.orthogonality.loss);
  }
  if (o.contrastive_weight != 0) {
    s.contrastive = detail::fs_contrastive_forward(a2, a3, a4, a5, o, ws);
    loss += o.contrastive_weight * double(s.contrastive.loss);
  }
  if (o.uniformity_weight != 0) {
    s.uniformity = detail::fs_uniformity_forward(fn, a2, a3, o);
    loss += o.uniformity_weight * double(s.uniformity.loss);
  }
  detail::check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)));
  s.loss = static_cast<T>(loss);
  return s;
}
}  // namespace detail

template <class A, class B, class AI, class BI, class AIA, class BIA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&&
                         tensor_like<AIA>&& tensor_like<BIA>)
auto feature_separation_forward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                const AIA& a_ind_aug, const BIA& b_ind_aug,
                                const feature_separation_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/feature_separation.cuh
    (void)ws;
    return detail::device_backend_of<detail::feature_separation_tag, A>::type::forward(
        as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), as_view(a_ind_aug),
        as_view(b_ind_aug), o);
  } else {
    return detail::fs_forward_host(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, o, ws);
  }
}

/// Writes (or adds) upstream * dL_Sep for all six inputs; returns upstream * the temperature
/// gradient (from L^i_Con).
template <class A, class B, class AI, class BI, class AIA, class BIA, class T, class GA, class GB,
          class GAI, class GBI, class GAIA, class GBIA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&&
        tensor_like<BIA>&& writable_tensor<GA&&>&& writable_tensor<GB&&>&& writable_tensor<GAI&&>&&
            writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&& writable_tensor<GBIA&&>)
feature_separation_parameter_gradients
    feature_separation_backward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                const AIA& a_ind_aug, const BIA& b_ind_aug,
                                const feature_separation_saved<T>& saved, GA&& grad_a, GB&& grad_b,
                                GAI&& grad_a_ind, GBI&& grad_b_ind, GAIA&& grad_a_ind_aug,
                                GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
                                double upstream = 1.0, workspace ws = {}) {
  const char* fn = "feature_separation_backward";
  const matrix_view<const T> a0 = detail::input_view(a), a1 = detail::input_view(b),
                             a2 = detail::input_view(a_ind), a3 = detail::input_view(b_ind),
                             a4 = detail::input_view(a_ind_aug), a5 = detail::input_view(b_ind_aug);
  const matrix_view<T> g0 = detail::output_view(std::forward<GA>(grad_a)),
                       g1 = detail::output_view(std::forward<GB>(grad_b)),
                       g2 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g3 = detail::output_view(std::forward<GBI>(grad_b_ind)),
                       g4 = detail::output_view(std::forward<GAIA>(grad_a_ind_aug)),
                       g5 = detail::output_view(std::forward<GBIA>(grad_b_ind_aug));
  const matrix_view<const T>* in[6] = {&a0, &a1, &a2, &a3, &a4, &a5};
  const char* names[6] = {"a", "b", "a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  const matrix_view<T>* out[6] = {&g0, &g1, &g2, &g3, &g4, &g5};
  const char* out_names[6] = {"grad_a",     "grad_b",         "grad_a_ind",
                              "grad_b_ind", "grad_a_ind_aug", "grad_b_ind_aug"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 6);
  CONTRASTIVE_CHECK(saved.orthogonality.n == a0.rows() && saved.orthogonality.d == a0.cols(), fn,
                    ": 'saved' belongs to x0 ", saved.orthogonality.n, " x ", saved.orthogonality.d,
                    " batch, the inputs are ", a0.rows(), " x ", a0.cols());
  CONTRASTIVE_CHECK(saved.orthogonality_weight == o.orthogonality_weight &&
                        saved.contrastive_weight == o.contrastive_weight &&
                        saved.uniformity_weight == o.uniformity_weight,
                    fn, ": 'saved' was computed with other weights (", saved.orthogonality_weight,
                    ", ", saved.contrastive_weight, ", ", saved.uniformity_weight, ") than these (",
                    o.orthogonality_weight, ", ", o.contrastive_weight, ", ", o.uniformity_weight,
                    ")");
  detail::fs_check_outputs(fn, out, out_names, 6, in, names, 6);
  detail::fs_check_gradient_bound(fn, out, 6, in, 6, o, upstream, o.orthogonality_weight,
                                  o.contrastive_weight, o.uniformity_weight,
                                  o.contrastive_weight != 0 ? &saved.contrastive : nullptr);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  temperature_gradient tg;
  if (o.orthogonality_weight != 0)
    detail::fs_ortho_backward(a0, a1, a2, a3, g0, g1, g2, g3, upstream * o.orthogonality_weight);
  if (o.contrastive_weight != 0)
    tg = detail::fs_contrastive_backward(a2, a3, a4, a5, saved.contrastive, g2, g3, g4, g5, o,
                                         upstream * o.contrastive_weight, ws);
  if (o.uniformity_weight != 0)
    detail::fs_uniformity_backward_both(fn, a2, a3, saved.uniformity, o, g2, g3,
                                        upstream * o.uniformity_weight);
  return tg;
}

/// Backward of a combined forward run on device views (cuda/feature_separation.cuh).
template <class A, class B, class AI, class BI, class AIA, class BIA, class GA, class GB, class GAI,
          class GBI, class GAIA, class GBIA>
feature_separation_parameter_gradients feature_separation_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
    const BIA& b_ind_aug, const cuda::feature_separation_device_saved& saved, GA&& grad_a,
    GB&& grad_b, GAI&& grad_a_ind, GBI&& grad_b_ind, GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug,
    const feature_separation_options& o = {}, double upstream = 1.0, workspace = {}) {
  const decltype(as_view(grad_a)) g[6] = {as_view(grad_a),         as_view(grad_b),
                                          as_view(grad_a_ind),     as_view(grad_b_ind),
                                          as_view(grad_a_ind_aug), as_view(grad_b_ind_aug)};
  return detail::device_backend_of<detail::feature_separation_tag, A>::type::backward(
      as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), as_view(a_ind_aug),
      as_view(b_ind_aug), saved, g, o, upstream);
}

template <class A, class B, class AI, class BI, class AIA, class BIA, class GA, class GB, class GAI,
          class GBI, class GAIA, class GBIA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&&
        tensor_like<BIA>&& writable_tensor<GA&&>&& writable_tensor<GB&&>&& writable_tensor<GAI&&>&&
            writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&& writable_tensor<GBIA&&>)
auto feature_separation_forward_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
    const BIA& b_ind_aug, GA&& grad_a, GB&& grad_b, GAI&& grad_a_ind, GBI&& grad_b_ind,
    GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = feature_separation_forward(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, o, ws);
  const temperature_gradient tg = feature_separation_backward(
      a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, s, std::forward<GA>(grad_a),
      std::forward<GB>(grad_b), std::forward<GAI>(grad_a_ind), std::forward<GBI>(grad_b_ind),
      std::forward<GAIA>(grad_a_ind_aug), std::forward<GBIA>(grad_b_ind_aug), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return s.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_FEATURE_SEPARATION_HPP
