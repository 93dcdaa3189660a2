#ifndef CONTRASTIVE_CORE_BLOCK_SWEEP_EMULATOR_HPP
#define CONTRASTIVE_CORE_BLOCK_SWEEP_EMULATOR_HPP

// The host emulator of the GPU block sweep (cuda/detail/block_sweep.cuh): the same plan
// (core/block_sweep.hpp: blocks, order, chunked partials, merge order, masks, G scaling), the
// same driver loop and the same per-entry epilogue functions (core/math.hpp pairwise_*), with
// plain host loops in place of the GEMMs and kernels. It exists so that the CPU tests check the
// GPU design against the CPU losses on every run, without a GPU. Host-only, Eigen-free.
//
// T is the type of the logits, statistics and accumulators (double for the 1e-12 checks; float
// is close to the device's fp32 blocks); G is the stored type of the gradient blocks.

#include <cmath>
#include <cstdint>
#include <vector>

#include "contrastive/core/block_sweep.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/math.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// Inputs of one emulated sweep: X (nx x d) and Y (ny x d) row-major; labels of the rows of X
/// and Y (with label_period as in the problem); optional per-row / per-column logit offsets.
template <class T>
struct block_emulator_inputs {
  const T* x = nullptr;
  const T* y = nullptr;
  const std::int64_t* label_x = nullptr;
  const std::int64_t* label_y = nullptr;
  const T* row_offset = nullptr;
  const T* col_offset = nullptr;
};

template <class T>
pairwise_epilogue_args<T> block_epilogue_args(const block_problem& q,
                                              const block_emulator_inputs<T>& in) {
  pairwise_epilogue_args<T> a = block_epilogue_base<T>(q, in.label_x, in.label_y);
  a.row_offset = in.row_offset;
  a.col_offset = in.col_offset;
  return a;
}

/// The executor of run_block_forward / run_block_backward on the host.
template <class T, class G = T>
class block_emulator {
 public:
  block_emulator(const block_plan& p, const block_emulator_inputs<T>& in,
                 const pairwise_epilogue_args<T>& ep)
      : p_(p), in_(in), ep_(ep) {
    const auto blk = static_cast<std::size_t>(p.br * p.ld);
    s_.assign(static_cast<std::size_t>(p.slots) * blk, T(0));
  }

  // ---- forward ----
  void begin_forward() {
    const block_problem& q = p_.problem;
    row_part_.assign(static_cast<std::size_t>(p_.row_chunks() * p_.br), {});
    col_part_.assign(static_cast<std::size_t>(p_.col_chunks() * p_.bc), {});
    row_stats_.assign(static_cast<std::size_t>(q.nx), {});
    col_stats_.assign(q.columns && !q.self ? static_cast<std::size_t>(q.ny) : 0, {});
  }

  void logits(const sweep_block& b, int slot) {
    T* s = slot_ptr(slot);
    const index_t d = p_.problem.d;
    const T scale = static_cast<T>(p_.problem.scale);
    for (index_t r = 0; r < b.rows; ++r)
      for (index_t c = 0; c < b.cols; ++c) {
        T acc = 0;
        for (index_t k = 0; k < d; ++k)
          acc += in_.x[(b.row0 + r) * d + k] * in_.y[(b.col0 + c) * d + k];
        s[r * p_.ld + c] = scale * acc;
      }
  }

  void forward_epilogue(const sweep_block& b, int slot) {
    const T* s = slot_ptr(slot);
    const index_t ch = p_.chunk;
    for (index_t cc = 0; cc * ch < b.cols; ++cc)
      for (index_t r = 0; r < b.rows; ++r) {
        const index_t n = b.cols - cc * ch < ch ? b.cols - cc * ch : ch;
        row_part_[cc * p_.br + r] = pairwise_segment_partial(
            ep_, s + r * p_.ld + cc * ch, index_t(1), b.row0 + r, b.col0 + cc * ch, n, false);
      }
    if (!column_partials(b)) return;
    for (index_t rc = 0; rc * ch < b.rows; ++rc)
      for (index_t c = 0; c < b.cols; ++c) {
        const index_t n = b.rows - rc * ch < ch ? b.rows - rc * ch : ch;
        col_part_[rc * p_.bc + c] = pairwise_segment_partial(ep_, s + rc * ch * p_.ld + c, p_.ld,
                                                             b.row0 + rc * ch, b.col0 + c, n, true);
      }
  }

  /// Row partials in chunk order into the row statistics, then column partials in chunk order
  /// into the column statistics (self mode: the same array). One thread per row / column on
  /// the GPU, the same order.
  void merge(const sweep_block& b) {
    const index_t ch = p_.chunk;
    for (index_t r = 0; r < b.rows; ++r)
      for (index_t cc = 0; cc * ch < b.cols; ++cc)
        row_stats_[b.row0 + r].merge(row_part_[cc * p_.br + r]);
    if (!column_partials(b)) return;
    std::vector<pairwise_partial<T>>& cs = p_.problem.self ? row_stats_ : col_stats_;
    for (index_t c = 0; c < b.cols; ++c)
      for (index_t rc = 0; rc * ch < b.rows; ++rc) cs[b.col0 + c].merge(col_part_[rc * p_.bc + c]);
  }

  const std::vector<pairwise_partial<T>>& row_stats() const noexcept { return row_stats_; }
  const std::vector<pairwise_partial<T>>& col_stats() const noexcept { return col_stats_; }

  // ---- backward ----
  /// ep must hold the coefficients; G is scaled by 2^k for the bound they give.
  void begin_backward(const pairwise_epilogue_args<T>& ep) {
    ep_ = ep;
    g_scale_ = std::ldexp(
        T(1), gradient_scale_exponent(coefficient_bound(ep, p_.problem.nx, p_.problem.ny)));
    const auto blk = static_cast<std::size_t>(p_.br * p_.ld);
    g_.assign(static_cast<std::size_t>(p_.slots) * blk, G(0));
    const auto d = static_cast<std::size_t>(p_.problem.d);
    dx_.assign(p_.problem.self ? 0 : static_cast<std::size_t>(p_.br) * d, T(0));
    dy_.assign(static_cast<std::size_t>(p_.problem.ny) * d, T(0));
    moment_ = 0;
  }

  void gradient_epilogue(const sweep_block& b, int slot) {
    const T* s = slot_ptr(slot);
    G* g = g_.data() + static_cast<std::size_t>(slot) * static_cast<std::size_t>(p_.br * p_.ld);
    // Moment partials per row, then summed in row order into the running moment (a fixed tree
    // on the GPU); diagonal blocks of self mode count half (G there holds both (i, j) and (j, i)).
    double block_moment = 0;
    for (index_t r = 0; r < b.rows; ++r) {
      double row = 0;
      for (index_t c = 0; c < b.cols; ++c) {
        const T raw = s[r * p_.ld + c];
        const T v = pairwise_logit(ep_, raw, b.row0 + r, b.col0 + c);
        const T gv = pairwise_gradient(ep_, v, b.row0 + r, b.col0 + c);
        g[r * p_.ld + c] = static_cast<G>(gv * g_scale_);
        row += static_cast<double>(gv) * static_cast<double>(raw);
      }
      block_moment += row;
    }
    moment_ += b.diag ? 0.5 * block_moment : block_moment;
  }

  void products(const sweep_block& b, int slot) {
    const G* g =
        g_.data() + static_cast<std::size_t>(slot) * static_cast<std::size_t>(p_.br * p_.ld);
    const index_t d = p_.problem.d;
    const T alpha = static_cast<T>(p_.problem.scale);  // the accumulators hold 2^k dX, 2^k dY
    const bool self = p_.problem.self;
    // dX_I += alpha G Y_J (self: rows I of the one accumulator).
    for (index_t r = 0; r < b.rows; ++r) {
      T* out = self ? &dy_[(b.row0 + r) * d] : &dx_[r * d];
      for (index_t k = 0; k < d; ++k) {
        T acc = 0;
        for (index_t c = 0; c < b.cols; ++c)
          acc += static_cast<T>(g[r * p_.ld + c]) * in_.y[(b.col0 + c) * d + k];
        out[k] += alpha * acc;
      }
    }
    if (b.diag) return;
    // dY_J += alpha G^T X_I.
    for (index_t c = 0; c < b.cols; ++c)
      for (index_t k = 0; k < d; ++k) {
        T acc = 0;
        for (index_t r = 0; r < b.rows; ++r)
          acc += static_cast<T>(g[r * p_.ld + c]) * in_.x[(b.row0 + r) * d + k];
        dy_[(b.col0 + c) * d + k] += alpha * acc;
      }
  }

  void finish_band(const sweep_block& b) {
    if (p_.problem.self) return;
    const index_t d = p_.problem.d;
    for (index_t r = 0; r < b.rows; ++r)
      for (index_t k = 0; k < d; ++k) {
        out_x_[(b.row0 + r) * d + k] = dx_[r * d + k] / g_scale_;
        if (diagonal_ != T(0) || per_row_ != nullptr)
          out_x_[(b.row0 + r) * d + k] += row_term(b.row0 + r) * in_.y[(b.row0 + r) * d + k];
        dx_[r * d + k] = 0;
      }
  }

  /// Where the finished gradients go (nx x d and ny x d; self mode: dy holds dZ).
  void set_dx_output(std::vector<T>* dx) { out_x_ = dx->data(); }
  /// Row terms c_i = diagonal + per_row[i] (per_row may be null), added at the stores after
  /// the 2^k scaling is undone: c_i y_i to dX_i and c_i x_i to dY_i (self mode: to dZ_i). The
  /// gamma loss's -s_ii terms (a constant) and the uniformity's offset terms (per row).
  void set_row_terms(T diagonal, const T* per_row) {
    diagonal_ = diagonal;
    per_row_ = per_row;
  }

  /// The finished dY (self mode: dZ).
  std::vector<T> dy() const {
    std::vector<T> out(dy_);
    const index_t d = p_.problem.d;
    const bool terms = diagonal_ != T(0) || per_row_ != nullptr;
    for (std::size_t e = 0; e < out.size(); ++e) {
      out[e] /= g_scale_;
      if (terms) out[e] += row_term(static_cast<index_t>(e) / d) * in_.x[e];
    }
    return out;
  }
  double moment() const noexcept { return moment_; }

 private:
  T row_term(index_t i) const noexcept {
    return diagonal_ + (per_row_ != nullptr ? per_row_[i] : T(0));
  }
  bool column_partials(const sweep_block& b) const noexcept {
    return (p_.problem.columns || p_.problem.self) && !b.diag;
  }
  T* slot_ptr(int slot) {
    return s_.data() + static_cast<std::size_t>(slot) * static_cast<std::size_t>(p_.br * p_.ld);
  }

  const block_plan& p_;
  block_emulator_inputs<T> in_;
  pairwise_epilogue_args<T> ep_;
  std::vector<T> s_;
  std::vector<G> g_;
  std::vector<pairwise_partial<T>> row_part_, col_part_, row_stats_, col_stats_;
  std::vector<T> dx_, dy_;
  T* out_x_ = nullptr;
  T g_scale_ = 1;
  T diagonal_ = 0;
  const T* per_row_ = nullptr;
  double moment_ = 0;
};

/// What an emulated forward returns: the loss and the log-normalisers (self mode: row_lse holds
/// every anchor's).
struct block_forward_result {
  double loss = 0;
  std::vector<double> row_lse, col_lse;
};

/// The loss of a forward sweep's statistics: per-anchor terms summed in anchor order, each
/// direction over its valid anchors.
template <class T>
double block_loss(const block_problem& q, const std::vector<pairwise_partial<T>>& rows,
                  const std::vector<pairwise_partial<T>>& cols) {
  auto direction = [&](const std::vector<pairwise_partial<T>>& st, double candidates) {
    double sum = 0, valid = 0;
    for (const auto& s : st) {
      bool ok = false;
      sum += pairwise_anchor_term(s, q.eps, candidates, &ok);
      valid += ok ? 1 : 0;
    }
    return block_anchor_weight(q, valid, 1.0) * sum;
  };
  double loss = direction(rows, q.row_candidates);
  if (q.columns && !q.self) loss += direction(cols, q.col_candidates);
  return loss;
}

/// The merged statistics of a forward sweep (self mode: every anchor's in `rows`).
template <class T>
struct block_statistics {
  std::vector<pairwise_partial<T>> rows, cols;
};

template <class T, class G = T>
block_statistics<T> emulate_block_statistics(const block_problem& q,
                                             const block_emulator_inputs<T>& in,
                                             const block_element_sizes& sizes = {},
                                             const block_sweep_options& o = {}) {
  const block_plan p = make_block_plan(q, sizes, o);
  block_emulator<T, G> ex(p, in, block_epilogue_args(q, in));
  ex.begin_forward();
  run_block_forward(p, ex);
  return {ex.row_stats(), ex.col_stats()};
}

template <class T>
std::vector<double> block_lse(const std::vector<pairwise_partial<T>>& st) {
  std::vector<double> out;
  out.reserve(st.size());
  for (const auto& s : st) out.push_back(static_cast<double>(s.lse()));
  return out;
}

template <class T, class G = T>
block_forward_result emulate_block_forward(const block_problem& q,
                                           const block_emulator_inputs<T>& in,
                                           const block_element_sizes& sizes = {},
                                           const block_sweep_options& o = {}) {
  const block_statistics<T> st = emulate_block_statistics<T, G>(q, in, sizes, o);
  block_forward_result r;
  r.loss = block_loss(q, st.rows, st.cols);
  r.row_lse = block_lse(st.rows);
  r.col_lse = block_lse(st.cols);
  return r;
}

/// The backward coefficients of one direction from its log-normalisers: counts of positives,
/// the valid anchors' weight, w, lse and q per anchor.
template <class T>
void block_coefficients(const block_problem& q, const pairwise_epilogue_args<T>& ep,
                        const std::vector<double>& lse, bool column, double upstream,
                        std::vector<T>& w, std::vector<T>& l, std::vector<T>& qv) {
  const index_t n = static_cast<index_t>(lse.size());
  const index_t candidates = column ? q.nx : q.ny;
  std::vector<T> count(static_cast<std::size_t>(n));
  double valid = 0;
  for (index_t i = 0; i < n; ++i) {
    count[i] = pairwise_positive_count(ep, i, candidates, column);
    valid += count[i] > T(0) ? 1 : 0;
  }
  const double wv = block_anchor_weight(q, valid, upstream);
  w.resize(static_cast<std::size_t>(n));
  l.resize(static_cast<std::size_t>(n));
  qv.resize(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    pairwise_anchor_coefficients(count[i], wv, q.eps, &w[i], &qv[i]);
    l[i] = static_cast<T>(lse[i]);
  }
}

/// What an emulated backward returns: upstream * dL/dX, dL/dY (self mode: dL/dZ in dx, 2n rows)
/// and upstream * dL/dtheta, theta = log(1 / temperature).
template <class T>
struct block_backward_result {
  std::vector<T> dx, dy;
  double grad_log_scale = 0;
};

/// The backward sweep with the caller's coefficients in `ep` (row_w, row_lse, row_q and the
/// column ones) and optional row terms (set_row_terms): the part every pairwise loss shares.
template <class T, class G = T>
block_backward_result<T> emulate_block_gradient(const block_problem& q,
                                                const block_emulator_inputs<T>& in,
                                                const pairwise_epilogue_args<T>& ep,
                                                const block_element_sizes& sizes = {},
                                                const block_sweep_options& o = {},
                                                T diagonal = T(0), const T* per_row = nullptr) {
  const block_plan p = make_block_plan(q, sizes, o);
  block_emulator<T, G> ex(p, in, ep);
  ex.begin_backward(ep);
  ex.set_row_terms(diagonal, per_row);
  block_backward_result<T> r;
  r.dx.assign(static_cast<std::size_t>(q.nx * q.d), T(0));
  ex.set_dx_output(&r.dx);
  run_block_backward(p, ex);
  if (q.self)
    r.dx = ex.dy();
  else
    r.dy = ex.dy();
  r.grad_log_scale = ex.moment();
  return r;
}

template <class T, class G = T>
block_backward_result<T> emulate_block_backward(const block_problem& q,
                                                const block_emulator_inputs<T>& in,
                                                const block_forward_result& fwd, double upstream,
                                                const block_element_sizes& sizes = {},
                                                const block_sweep_options& o = {}) {
  pairwise_epilogue_args<T> ep = block_epilogue_args(q, in);
  std::vector<T> rw, rl, rq, cw, cl, cq;
  block_coefficients(q, ep, fwd.row_lse, false, upstream, rw, rl, rq);
  ep.row_w = rw.data();
  ep.row_lse = rl.data();
  ep.row_q = rq.data();
  if (q.self) {  // the same anchors: G_ij = Gfull_ij + Gfull_ji
    ep.col_w = ep.row_w;
    ep.col_lse = ep.row_lse;
    ep.col_q = ep.row_q;
  } else if (q.columns) {
    block_coefficients(q, ep, fwd.col_lse, true, upstream, cw, cl, cq);
    ep.col_w = cw.data();
    ep.col_lse = cl.data();
    ep.col_q = cq.data();
  }
  ep.off_target = static_cast<T>(q.eps / q.row_candidates);
  return emulate_block_gradient<T, G>(q, in, ep, sizes, o);
}

// ---- the gamma loss on the sweep (gamma_nce_block_problem) ----

/// s_ii = scale <x_i, y_i>: the positives of the gamma loss, O(N D) work beside the sweep.
template <class T>
std::vector<double> block_diagonal_logits(const block_problem& q,
                                          const block_emulator_inputs<T>& in) {
  std::vector<double> s(static_cast<std::size_t>(q.nx));
  for (index_t i = 0; i < q.nx; ++i) {
    T acc = 0;
    for (index_t k = 0; k < q.d; ++k) acc += in.x[i * q.d + k] * in.y[i * q.d + k];
    s[static_cast<std::size_t>(i)] = q.scale * static_cast<double>(acc);
  }
  return s;
}

/// The surrogate c w sum over directions and anchors of (r_i - s_ii), from the weights r_i the
/// caller formed from the sweep's log-normalisers (log Zhat_i = LSE_i - log |N_i|).
inline double gamma_block_loss(const block_problem& q, const std::vector<double>& s_diag,
                               const std::vector<double>& r_row, const std::vector<double>& r_col) {
  double sum = 0;
  for (std::size_t i = 0; i < s_diag.size(); ++i) {
    sum += r_row[i] - s_diag[i];
    if (q.columns) sum += r_col[i] - s_diag[i];
  }
  return gamma_block_weight(q, 1.0) * sum;
}

/// The gamma loss's backward on the emulated sweep: G = c w up (r_i pn^row_ij + r_j pn^col_ij) on
/// N_i through the sweep (row_w = c w up r_i, no positive targets), then the -s_ii terms (G_ii -=
/// c w up per direction) as O(N D) updates and their temperature moment.
template <class T, class G = T>
block_backward_result<T> emulate_gamma_nce_backward(
    const block_problem& q, const block_emulator_inputs<T>& in, const block_forward_result& fwd,
    const std::vector<double>& r_row, const std::vector<double>& r_col, double upstream,
    const block_element_sizes& sizes = {}, const block_sweep_options& o = {}) {
  const double cw = gamma_block_weight(q, upstream);
  const auto n = static_cast<std::size_t>(q.nx);
  std::vector<T> rw(n), rl(n), cwv(q.columns ? n : 0), cl(q.columns ? n : 0);
  for (std::size_t i = 0; i < n; ++i) {
    rw[i] = static_cast<T>(cw * r_row[i]);
    rl[i] = static_cast<T>(fwd.row_lse[i]);
    if (!q.columns) continue;
    cwv[i] = static_cast<T>(cw * r_col[i]);
    cl[i] = static_cast<T>(fwd.col_lse[i]);
  }
  pairwise_epilogue_args<T> ep = block_epilogue_args(q, in);
  ep.row_w = rw.data();
  ep.row_lse = rl.data();
  if (q.columns) {
    ep.col_w = cwv.data();
    ep.col_lse = cl.data();
  }
  // The -s_ii terms: G_ii -= c w up per direction, added at the stores.
  const double dirs = q.columns ? 2.0 : 1.0;
  block_backward_result<T> r =
      emulate_block_gradient<T, G>(q, in, ep, sizes, o, static_cast<T>(-q.scale * cw * dirs));
  const std::vector<double> s = block_diagonal_logits(q, in);
  for (const double v : s) r.grad_log_scale -= cw * dirs * v;
  return r;
}

// ---- the uniformity term on the sweep (uniformity_block_problem) ----

/// One modality's rows x (n x d) with the offsets -t |x_j|^2 of its logits.
template <class T>
struct uniformity_block_input {
  std::vector<T> offset;
  block_emulator_inputs<T> in;

  uniformity_block_input(const uniformity_block_input&) = delete;  // `in` points into `offset`
  uniformity_block_input& operator=(const uniformity_block_input&) = delete;
  uniformity_block_input(const T* x, index_t n, index_t d, double t) {
    offset.resize(static_cast<std::size_t>(n));
    for (index_t j = 0; j < n; ++j) {
      double sq = 0;
      for (index_t k = 0; k < d; ++k) sq += static_cast<double>(x[j * d + k]) * x[j * d + k];
      offset[static_cast<std::size_t>(j)] = static_cast<T>(-t * sq);
    }
    in.x = in.y = x;
    in.row_offset = in.col_offset = offset.data();
  }
};

/// The log of sum_{j,k} G_t(x_j, x_k) over the modality's pairs, and each anchor's row of it.
struct uniformity_block_forward {
  double log_sum = 0;
  std::vector<double> row_lse;
};

template <class T, class G = T>
uniformity_block_forward emulate_uniformity_forward(const block_problem& q,
                                                    const uniformity_block_input<T>& x,
                                                    const block_element_sizes& sizes = {},
                                                    const block_sweep_options& o = {}) {
  const block_statistics<T> st = emulate_block_statistics<T, G>(q, x.in, sizes, o);
  uniformity_block_forward f;
  pairwise_partial<T> total;
  for (const auto& r : st.rows) total.merge(r);  // anchor order
  f.log_sum = static_cast<double>(total.lse());
  f.row_lse = block_lse(st.rows);
  return f;
}

/// upstream d(log S)/dx for the normaliser log S = `log_norm` (the modality's own sum, or the
/// sum over both modalities for the literal form): P_jk = exp(s_jk - log S) on the sweep (self
/// mode: G = 2 up P), and the offsets' part as row terms c_j x_j with c_j = -4 t up sum_k P_jk,
/// the row sums being exp(row_lse_j - log S).
template <class T>
std::vector<T> uniformity_row_terms(const block_problem& q, const uniformity_block_forward& fwd,
                                    double log_norm, double upstream) {
  std::vector<T> c(static_cast<std::size_t>(q.nx));
  for (std::size_t j = 0; j < c.size(); ++j)
    c[j] = static_cast<T>(-2 * q.scale * upstream * std::exp(fwd.row_lse[j] - log_norm));
  return c;
}

template <class T, class G = T>
std::vector<T> emulate_uniformity_backward(const block_problem& q,
                                           const uniformity_block_input<T>& x,
                                           const uniformity_block_forward& fwd, double log_norm,
                                           double upstream, const block_element_sizes& sizes = {},
                                           const block_sweep_options& o = {}) {
  const auto n = static_cast<std::size_t>(q.nx);
  std::vector<T> w(n, static_cast<T>(upstream)), l(n, static_cast<T>(log_norm));
  pairwise_epilogue_args<T> ep = block_epilogue_args(q, x.in);
  ep.row_w = ep.col_w = w.data();
  ep.row_lse = ep.col_lse = l.data();
  const std::vector<T> terms = uniformity_row_terms<T>(q, fwd, log_norm, upstream);
  return emulate_block_gradient<T, G>(q, x.in, ep, sizes, o, T(0), terms.data()).dx;
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_BLOCK_SWEEP_EMULATOR_HPP
