#ifndef CONTRASTIVE_LOSSES_NT_XENT_HPP
#define CONTRASTIVE_LOSSES_NT_XENT_HPP

// NT-Xent (SimCLR) over 2N views: Z = [a; b], row i of a and row i of b are two views of sample
// i. Each of the 2N anchors is contrasted with the other 2N - 1 rows (self-similarity masked).
// S = Z Z^T / tau is symmetric, so the sweep visits only tiles J >= I and uses each tile for
// the rows of I and of J. Math and gradients: docs/nt_xent.md; the sweep: docs/tiled_sweep.md.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/tiling.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/losses/debiased_negatives.hpp"
#include "contrastive/losses/nt_xent_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
struct nt_xent_saved {
  T loss = 0;
  double grad_log_scale = 0;       // dL/dtheta at upstream 1
  std::vector<T> lse;              // 2N: LSE over the other 2N - 1 rows, anchors [a; b]
  std::vector<index_t> positives;  // 2N: |P_i| with labels (else empty)
  index_t n = 0, d = 0;
  double temperature = 0;
  double label_smoothing = 0;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;
  const void* logit_cache = nullptr;  // the workspace holding the cached tiles (cached mode)
  double debias_tau_plus = 0;         // the debiased / hard-negative options of the forward
  double hard_negative_beta = 0;
  negative_weighting_saved<T> weighting;  // with debias_tau_plus or hard_negative_beta (2N)

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* nt_xent_fwd_name = "nt_xent_forward";
constexpr const char* nt_xent_bwd_name = "nt_xent_backward";

template <class T>
void nt_xent_check_inputs(const char* fn, const matrix_view<const T>& a,
                          const matrix_view<const T>& b, const nt_xent_options& o) {
  check_smoothing(fn, o.label_smoothing);
  check_reduction(fn, o.reduction);
  check_negative_weighting(fn, o.debias_tau_plus, o.hard_negative_beta, !o.labels.empty(),
                           o.label_smoothing, 2 * a.rows() - 2);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  if (!o.labels.empty()) check_labels(fn, "labels", o.labels, a.rows());
}

inline bool nt_xent_weighted_negatives(const nt_xent_options& o) noexcept {
  return negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta);
}

template <class T, class Alloc>
struct nt_xent_forward_buffers {
  online_softmax<double>* stats = nullptr;
  double* target = nullptr;
  std::int64_t* labels = nullptr;  // 2N
  std::int64_t* sort_scratch = nullptr;
  online_softmax<double>* scaled[2] = {nullptr, nullptr};  // hard negatives: (1+beta) s, beta s

  nt_xent_forward_buffers(Alloc& al, index_t n, bool labelled, bool hard = false) {
    const auto n2 = 2 * static_cast<std::size_t>(n);
    stats = al.template take<online_softmax<double>>(n2);
    if (hard)
      for (auto& s : scaled) s = al.template take<online_softmax<double>>(n2);
    if (labelled) {
      target = al.template take<double>(n2);
      labels = al.template take<std::int64_t>(n2);
      sort_scratch = al.template take<std::int64_t>(n2);
    }
  }
};

template <class T, class Alloc>
struct nt_xent_backward_buffers {
  T* w = nullptr;
  T* lse = nullptr;
  T* q = nullptr;
  std::int64_t* labels = nullptr;
  double* sums = nullptr;               // 2 D: sum_i z_i and sum_i w_i z_i (smoothing)
  T* scaled_w[2] = {nullptr, nullptr};  // hard negatives
  T* scaled_lse[2] = {nullptr, nullptr};

  nt_xent_backward_buffers(Alloc& al, index_t n, index_t d, bool labelled, bool smoothing,
                           bool hard = false) {
    const auto n2 = 2 * static_cast<std::size_t>(n);
    w = al.template take<T>(n2);
    lse = al.template take<T>(n2);
    if (hard) {
      for (int k = 0; k < 2; ++k) {
        scaled_w[k] = al.template take<T>(n2);
        scaled_lse[k] = al.template take<T>(n2);
      }
    }
    if (labelled) {
      q = al.template take<T>(n2);
      labels = al.template take<std::int64_t>(n2);
    }
    if (smoothing) sums = al.template take<double>(2 * static_cast<std::size_t>(d));
  }
};

inline sweep_shape nt_xent_sweep(index_t n, index_t d, const nt_xent_options& o) noexcept {
  return make_sweep_shape(o, true, n, n, d);
}

template <class T>
std::size_t nt_xent_cache_bytes(index_t n, const nt_xent_options& o) {
  return o.cache_logits
             ? array_bytes<T>(cache_elements(o.tile_rows, o.tile_cols, true, 2 * n, 2 * n, n, n))
             : 0;
}

template <class T>
std::size_t nt_xent_forward_bytes(index_t n, index_t d, const nt_xent_options& o,
                                  std::size_t packing) {
  size_counter c;
  const bool hard = o.hard_negative_beta > 0;
  const nt_xent_forward_buffers<T, size_counter> sized(c, n, !o.labels.empty(), hard);
  (void)sized;
  return nt_xent_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_forward_bytes<T>(nt_xent_sweep(n, d, o), hard ? 2 : 0) + workspace_alignment;
}

template <class T>
std::size_t nt_xent_backward_bytes(index_t n, index_t d, const nt_xent_options& o,
                                   std::size_t packing) {
  size_counter c;
  const nt_xent_backward_buffers<T, size_counter> sized(
      c, n, d, !o.labels.empty(), o.label_smoothing > 0, o.hard_negative_beta > 0);
  (void)sized;
  return nt_xent_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_backward_bytes<T>(nt_xent_sweep(n, d, o)) + workspace_alignment;
}

/// Views of Z = [a; b] row by row.
template <class T>
struct stacked_rows {
  matrix_view<const T> a, b;
  index_t n() const noexcept { return a.rows(); }
  const matrix_view<const T>& half(index_t i) const noexcept { return i < n() ? a : b; }
  index_t local(index_t i) const noexcept { return i < n() ? i : i - n(); }
  T operator()(index_t i, index_t k) const noexcept { return half(i)(local(i), k); }
};

inline void nt_xent_labels(const vector_view<const std::int64_t>& y, index_t n, std::int64_t* out) {
  for (index_t i = 0; i < 2 * n; ++i) out[i] = y.data[i < n ? i : i - n];
}

template <class T>
pairwise_problem<T> nt_xent_problem(const matrix_view<const T>* segments, const nt_xent_options& o,
                                    const std::int64_t* labels, T* cache) {
  pairwise_problem<T> p = make_pairwise_problem(segments, 2, segments, 2, o.temperature, o);
  p.self = true;
  p.cache = cache;
  p.label_x = labels;
  p.label_y = labels;
  if (nt_xent_weighted_negatives(o)) p.partner_offset = segments[0].rows();  // negatives only
  if (o.hard_negative_beta > 0) {
    p.extra_scales = 2;
    p.gamma[0] = static_cast<T>(1 + o.hard_negative_beta);
    p.gamma[1] = static_cast<T>(o.hard_negative_beta);
  }
  return p;
}

template <class T>
nt_xent_saved<T> nt_xent_forward_impl(const matrix_view<const T>& a_in,
                                      const matrix_view<const T>& b_in, const nt_xent_options& o_in,
                                      workspace ws) {
  const char* fn = nt_xent_fwd_name;
  nt_xent_check_inputs(fn, a_in, b_in, o_in);
  nt_xent_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;  // a cache must outlive the call
  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const bool labelled = !o.labels.empty();
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;

  arena ar(ws,
           nt_xent_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  T* cache = o.cache_logits ? ar.take<T>(nt_xent_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const stacked_rows<T> z{seg[0], seg[1]};
  const bool weighted_neg = nt_xent_weighted_negatives(o), hard = o.hard_negative_beta > 0;
  nt_xent_forward_buffers<T, arena> buf(ar, n, labelled, hard);
  for (index_t i = 0; i < n2; ++i) {
    buf.stats[i] = online_softmax<double>();
    if (labelled) buf.target[i] = 0;
    if (hard) buf.scaled[0][i] = buf.scaled[1][i] = online_softmax<double>();
  }
  if (labelled) nt_xent_labels(o.labels, n, buf.labels);

  const pairwise_problem<T> p = nt_xent_problem<T>(seg, o, buf.labels, cache);
  pairwise_stats<T> st;
  st.row = buf.stats;
  st.col = buf.stats;  // the same anchors: S is symmetric
  st.row_target = buf.target;
  st.col_target = buf.target;
  for (int k = 0; k < 2; ++k) st.row_scaled[k] = st.col_scaled[k] = buf.scaled[k];
  pairwise_forward(p, st, ar);

  nt_xent_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  saved.logit_cache = cache ? ws.data : nullptr;
  saved.debias_tau_plus = o.debias_tau_plus;
  saved.hard_negative_beta = o.hard_negative_beta;
  if (labelled) {
    saved.positives.resize(static_cast<std::size_t>(n2));
    const vector_view<const std::int64_t> zl(buf.labels, n2);
    count_matches(zl, zl, saved.positives.data(), buf.sort_scratch);
    for (auto& c : saved.positives) --c;  // not itself; the other view is always left
  }
  std::vector<double> sum_z;
  if (eps > 0) {
    sum_z.assign(static_cast<std::size_t>(d), 0.0);
    for (index_t i = 0; i < n2; ++i)
      for (index_t k = 0; k < d; ++k) sum_z[uz(k)] += double(z(i, k));
  }

  double loss = 0, dtheta = 0;
  saved.lse.resize(static_cast<std::size_t>(n2));
  if (weighted_neg) {  // debiased / hard negatives: docs/debiased.md
    negative_weighting_saved<T>& nw = saved.weighting;
    nw.negative.resize(static_cast<std::size_t>(n2));
    nw.positive.resize(static_cast<std::size_t>(n2));
    if (hard) {
      nw.lse_hi.resize(static_cast<std::size_t>(n2));
      nw.lse_lo.resize(static_cast<std::size_t>(n2));
    }
    for (index_t i = 0; i < n2; ++i) {
      saved.lse[uz(i)] = static_cast<T>(buf.stats[i].lse());
      const double s_p = lambda_d * dot_rows(seg[0], z.local(i), seg[1], z.local(i));
      const debiased_anchor t = debiased_anchor_terms(
          s_p, buf.stats[i], hard ? &buf.scaled[0][i] : nullptr, hard ? &buf.scaled[1][i] : nullptr,
          double(n2 - 2), lambda_d, o.debias_tau_plus, o.hard_negative_beta);
      if (hard) {
        nw.lse_hi[uz(i)] = static_cast<T>(buf.scaled[0][i].lse());
        nw.lse_lo[uz(i)] = static_cast<T>(buf.scaled[1][i].lse());
      }
      nw.negative[uz(i)] = static_cast<T>(t.negative);
      nw.positive[uz(i)] = static_cast<T>(t.positive);
      nw.clamped += t.clamped;
      loss += t.loss;
      dtheta += t.dtheta;
    }
  }
  for (index_t i = 0; i < n2 && !weighted_neg; ++i) {
    const double lse = buf.stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    const double positive = labelled ? buf.target[i] / double(saved.positives[uz(i)])
                                     : lambda_d * dot_rows(seg[0], z.local(i), seg[1], z.local(i));
    double soft = 0;
    if (eps > 0) {
      for (index_t k = 0; k < d; ++k) soft += double(z(i, k)) * (sum_z[uz(k)] - double(z(i, k)));
      soft *= lambda_d / double(n2 - 1);
    }
    const double t = (1 - eps) * positive + eps * soft;
    loss += lse - t;
    dtheta += buf.stats[i].mean() - t;
  }
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  loss *= w;
  dtheta *= w;
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)), o.temperature);  // as stored
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = dtheta;
  return saved;
}

template <class T>
temperature_gradient nt_xent_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const nt_xent_saved<T>& saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const nt_xent_options& o_in, double upstream, workspace ws) {
  const char* fn = nt_xent_bwd_name;
  nt_xent_check_inputs(fn, a_in, b_in, o_in);
  nt_xent_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", a_in.rows(), " x ",
                    a_in.cols());
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.label_smoothing == o.label_smoothing &&
          saved.labelled == !o.labels.empty() && saved.reduction == o.reduction &&
          saved.debias_tau_plus == o.debias_tau_plus &&
          saved.hard_negative_beta == o.hard_negative_beta,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", label_smoothing ", saved.label_smoothing, ") than these (temperature ", o.temperature,
      ", label_smoothing ", o.label_smoothing, ")");
  check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
  check_pair_gradient_bound(
      fn, 2 * a_in.rows(), std::max(max_abs(a_in), max_abs(b_in)), grad_a, grad_b, upstream,
      1.0 / o.temperature,
      negative_weighting_bound(o.debias_tau_plus, o.hard_negative_beta, 2 * a_in.rows()),
      o.accumulate, saved.grad_log_scale);

  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const bool labelled = saved.labelled;
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, nt_xent_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  T* cache = o.cache_logits ? ar.take<T>(nt_xent_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const bool use_cache = cache != nullptr && saved.logit_cache == ws.data;
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const stacked_rows<T> z{seg[0], seg[1]};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  const bool weighted_neg = nt_xent_weighted_negatives(o), hard = o.hard_negative_beta > 0;
  nt_xent_backward_buffers<T, arena> buf(ar, n, d, labelled, eps > 0, hard);

  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0);
  const negative_weighting_saved<T>& nw = saved.weighting;
  for (index_t i = 0; i < n2; ++i) {
    buf.w[i] = static_cast<T>(weighted_neg ? wv * double(nw.negative[uz(i)]) : wv);
    buf.lse[i] = saved.lse[uz(i)];
    if (labelled) buf.q[i] = static_cast<T>(wv * (1 - eps) / double(saved.positives[uz(i)]));
    if (hard) {  // kappa ((1 + beta) p1 - beta p0)
      const double beta = o.hard_negative_beta;
      buf.scaled_w[0][i] = static_cast<T>(wv * double(nw.negative[uz(i)]) * (1 + beta));
      buf.scaled_w[1][i] = static_cast<T>(-wv * double(nw.negative[uz(i)]) * beta);
      buf.scaled_lse[0][i] = nw.lse_hi[uz(i)];
      buf.scaled_lse[1][i] = nw.lse_lo[uz(i)];
    }
  }
  if (labelled) nt_xent_labels(o.labels, n, buf.labels);

  const pairwise_problem<T> p = nt_xent_problem<T>(seg, o, buf.labels, use_cache ? cache : nullptr);
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = hard ? nullptr : buf.w;
  k.row_lse = k.col_lse = buf.lse;
  k.row_q = k.col_q = buf.q;
  for (int e = 0; e < 2; ++e) {
    k.row_scaled_w[e] = k.col_scaled_w[e] = buf.scaled_w[e];
    k.row_scaled_lse[e] = k.col_scaled_lse[e] = buf.scaled_lse[e];
  }
  const matrix_view<T> dz[2] = {ga.view(), gb.view()};
  pairwise_backward(p, k, dz, dz, ar);

  auto dz_at = [&](index_t i, index_t c) -> T& { return dz[i < n ? 0 : 1](z.local(i), c); };
  // Target terms, O(N D). One-hot: view i's positive is view p(i) = i +- N, and
  // dL/dz_i gets -(w_i + w_p(i)) lambda z_p(i) (as anchor and as candidate).
  if (!labelled) {
    for (index_t i = 0; i < n; ++i) {
      // Weighted negatives: dl_i/ds_ip is saved per anchor instead of -1.
      const T coef = static_cast<T>(
          weighted_neg
              ? -lambda_d * wv * (double(nw.positive[uz(i)]) + double(nw.positive[uz(i + n)]))
              : lambda_d * (1 - eps) * (double(buf.w[i]) + double(buf.w[i + n])));
      for (index_t c = 0; c < d; ++c) {
        dz[0](i, c) -= coef * seg[1](i, c);
        dz[1](i, c) -= coef * seg[0](i, c);
      }
    }
  }
  // Smoothing: anchor i targets the mean of the other 2N - 1 rows.
  if (eps > 0) {
    double* sum_z = buf.sums;
    double* sum_wz = buf.sums + d;
    for (index_t c = 0; c < 2 * d; ++c) buf.sums[c] = 0;
    for (index_t i = 0; i < n2; ++i) {
      for (index_t c = 0; c < d; ++c) {
        sum_z[c] += double(z(i, c));
        sum_wz[c] += double(buf.w[i]) * double(z(i, c));
      }
    }
    const double f = lambda_d * eps / double(n2 - 1);
    for (index_t i = 0; i < n2; ++i) {
      const double wi = buf.w[i];
      for (index_t c = 0; c < d; ++c) {
        const double zi = z(i, c);
        dz_at(i, c) -= static_cast<T>(f * (wi * (sum_z[c] - zi) + (sum_wz[c] - wi * zi)));
      }
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for row-major N x D views (see info_nce_workspace_bytes).
template <class T>
std::size_t nt_xent_workspace_bytes(index_t n, index_t d, const nt_xent_options& o = {}) {
  const std::size_t f = detail::nt_xent_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::nt_xent_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t nt_xent_workspace_bytes(const A& a, const B& b, const nt_xent_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::nt_xent_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::nt_xent_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto nt_xent_forward(const A& a, const B& b, const nt_xent_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/nt_xent.cuh; ws is the CPU's
    (void)ws;
    CONTRASTIVE_CHECK(!detail::negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta),
                      "nt_xent_forward: 'debias_tau_plus' / 'hard_negative_beta' are CPU-only");
    return detail::device_backend_of<detail::nt_xent_tag, A>::type::forward(as_view(a), as_view(b),
                                                                            o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    return detail::nt_xent_forward_impl<T>(va, vb, o, ws);
  }
}

template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
nt_xent_parameter_gradients
    nt_xent_backward(const A& a, const B& b, const nt_xent_saved<T>& saved, GA&& grad_a,
                     GB&& grad_b, const nt_xent_options& o = {}, double upstream = 1.0,
                     workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::nt_xent_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Backward of a forward run on device views (the CUDA path; needs cuda/nt_xent.cuh).
template <class A, class B, class GA, class GB>
nt_xent_parameter_gradients nt_xent_backward(const A& a, const B& b,
                                             const cuda::nt_xent_device_saved& saved, GA&& grad_a,
                                             GB&& grad_b, const nt_xent_options& o = {},
                                             double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::nt_xent_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
}

template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto nt_xent_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                              const nt_xent_options& o = {},
                              nt_xent_parameter_gradients* parameter_grads = nullptr,
                              workspace ws = {}) {
  std::vector<unsigned char> own;  // cached mode needs one workspace shared by both passes
  if constexpr (!detail::is_device_input<A>::value) {  // no cached mode on the GPU
    if (o.cache_logits && ws.data == nullptr) {
      const auto va = detail::input_view(a);
      using T = typename decltype(va)::value_type;
      own.resize(nt_xent_workspace_bytes<T>(va.rows(), va.cols(), o) + detail::packing_bytes(va) +
                 detail::packing_bytes(detail::input_view(b)) +
                 detail::packing_bytes(as_view(grad_a)) + detail::packing_bytes(as_view(grad_b)));
      ws = workspace{own.data(), own.size()};
    }
  }
  const auto saved = nt_xent_forward(a, b, o, ws);
  const temperature_gradient tg =
      nt_xent_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_NT_XENT_HPP
