#ifndef CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_HPP
#define CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_HPP

// Geometric consistency (Jiang et al., "Understanding and Constructing Latent Modality Structures
// in Multi-modal Representation Learning", CVPR 2023, after CyCLIP). Math, gradients and
// options: docs/geometric_consistency.md. Rows j of V (image) and U (text) are the two embeddings of pair j.
//
//   L_GC   = (1/N) sum_{j,k} [ w_x (<v_j,u_k> - <v_k,u_j>)^2 + w_i (<v_j,v_k> - <u_j,u_k>)^2 ]
//   L^a_GC = (1/N) sum_{j,k} [ (<v_j,v_k> - <va_j,va_k>)^2 + (<u_j,u_k> - <ua_j,ua_k>)^2 ]
//          + (1/N) sum_j (<v_j,u_j> - <va_j,ua_j>)^2
//
// w_x (cross-modal symmetry) and w_i (in-modal consistency) are 1 by default, which is the
// paper's L_GC; either may be set to 0 to use one term alone. The double sums carry 1/N, not
// 1/N^2, as in the paper and CyCLIP; under data parallelism N is the global batch.
//
// Two algorithms:
// - naive: the N x N similarity matrices, O(N^2 D) time and O(N^2) memory; the test reference.
//   Its products are plain Eigen expressions (threaded by Eigen itself under OpenMP).
// - gram: D x D Gram matrices only, O(N D^2) time, O((N/chunk + threads) chunk D + D^2) memory,
//   never N x N. With equal weights it uses the cancellation-free P = V + U, Q = V - U form
//   (L_GC = (1/N) tr((P^T P)(Q^T Q)): 6 N D^2 flop for forward + backward with symmetric rank
//   updates); with unequal weights (or `gram_split`) the three-Gram form (V^T V, U^T U,
//   V^T U). The augmented variant uses P = X + Y, Q = X - Y per pair (X, Y) in {(V, Va), (U, Ua)}
//   (`gram_split`: X^T X, Y^T Y, X^T Y). Rows are processed in chunks of `tile_rows`; chunks are
//   grouped into a fixed number of slabs (a function of N, D and the element type only), each
//   with its own Gram accumulators, summed in slab order, so its results are bit-for-bit the
//   same for any `num_threads`.
// `automatic` picks gram when D < N (it then costs less than naive) and naive otherwise.
//
// Inputs are used as given (normalise them with l2_normalize); a row of zero norm or a
// non-finite value is bad input (contrastive::invalid_argument). The backward checks every row
// before it writes anything, so a throwing call leaves the gradient outputs untouched.
//
// Threads: OpenMP when compiled with it (`num_threads`, 0 = omp_get_max_threads()); serial
// otherwise.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/gemm.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/modal_common.hpp"
#include "contrastive/core/parallel.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/losses/geometric_consistency_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What the forward keeps: the loss, the path that ran and, on the gram path, the D x D Gram
/// matrices (and, for the augmented variant, the N diagonal differences) the backward reuses.
template <class T>
struct geometric_consistency_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  bool augmented = false;
  gc_algorithm algorithm = gc_algorithm::naive;  // never automatic
  double cross_modal_weight = 1, in_modal_weight = 1;
  std::vector<T> grams;       // gram paths: row-major D x D matrices, see detail::gc_gram_count
  std::vector<double> delta;  // augmented: <v_j,u_j> - <va_j,ua_j>
};

namespace detail {

constexpr const char* gc_fwd_name = "geometric_consistency_forward";
constexpr const char* gc_bwd_name = "geometric_consistency_backward";
constexpr const char* gca_fwd_name = "geometric_consistency_augmented_forward";
constexpr const char* gca_bwd_name = "geometric_consistency_augmented_backward";

/// The path that runs for an n x d problem.
inline gc_algorithm gc_resolve(index_t n, index_t d, bool augmented,
                               const geometric_consistency_options& o) noexcept {
  gc_algorithm a = o.algorithm;
  if (a == gc_algorithm::automatic) a = d < n ? gc_algorithm::gram : gc_algorithm::naive;
  if (a == gc_algorithm::gram && !augmented && !gc_equal_weights(o)) a = gc_algorithm::gram_split;
  return a;
}

/// D x D matrices kept by the gram paths.
inline int gc_gram_count(gc_algorithm a, bool augmented) noexcept {
  if (a == gc_algorithm::naive) return 0;
  if (augmented) return 6;                 // per pair: (P^TP, Q^TQ, P^TQ) or (X^TX, Y^TY, X^TY)
  return a == gc_algorithm::gram ? 2 : 3;  // (P^TP, Q^TQ) or (V^TV, U^TU, V^TU)
}

/// The fixed work split of the gram path.
struct gc_plan {
  gc_algorithm algorithm = gc_algorithm::naive;
  bool augmented = false;
  index_t n = 0, d = 0;
  index_t chunk = 0, chunks = 0, slabs = 0;
  int grams = 0;
  int threads = 1;
};

template <class T>
gc_plan gc_make_plan(index_t n, index_t d, bool augmented, const geometric_consistency_options& o) {
  gc_plan p;
  p.algorithm = gc_resolve(n, d, augmented, o);
  p.augmented = augmented;
  p.n = n;
  p.d = d;
  p.grams = gc_gram_count(p.algorithm, augmented);
  p.threads = resolve_threads(o.num_threads, double(n) * double(d) * double(d));
  if (p.algorithm == gc_algorithm::naive) return p;
  p.chunk = o.tile_rows < n ? o.tile_rows : n;
  p.chunks = (n + p.chunk - 1) / p.chunk;
  // Slabs: at most 8, and their extra Gram accumulators within 64 MiB. A function of (N, D, T)
  // and the options only, never of the thread count.
  const std::size_t per_slab = static_cast<std::size_t>(p.grams) * static_cast<std::size_t>(d) *
                               static_cast<std::size_t>(d) * sizeof(T);
  index_t s = p.chunks < 8 ? p.chunks : 8;
  while (s > 1 && static_cast<std::size_t>(s - 1) * per_slab > (std::size_t(64) << 20)) --s;
  p.slabs = s;
  return p;
}

/// Per-thread scratch on the gram path: four chunk x D blocks.
template <class T>
std::size_t gc_thread_bytes(const gc_plan& p) {
  return 4 * array_bytes<T>(static_cast<std::size_t>(p.chunk * p.d));
}

template <class T>
std::size_t gc_forward_bytes(const gc_plan& p) {
  if (p.algorithm == gc_algorithm::naive) return workspace_alignment;
  const int threads = p.threads < p.slabs ? p.threads : static_cast<int>(p.slabs);
  const std::size_t dd = static_cast<std::size_t>(p.d * p.d);
  return static_cast<std::size_t>(p.slabs - 1) *
             array_bytes<T>(dd * static_cast<std::size_t>(p.grams)) +
         static_cast<std::size_t>(threads) * gc_thread_bytes<T>(p) + workspace_alignment;
}

template <class T>
std::size_t gc_backward_bytes(const gc_plan& p) {
  if (p.algorithm == gc_algorithm::naive) return workspace_alignment;
  const int threads = p.threads < p.chunks ? p.threads : static_cast<int>(p.chunks);
  const std::size_t dd = static_cast<std::size_t>(p.d * p.d);
  return 8 * array_bytes<T>(dd) + static_cast<std::size_t>(threads) * gc_thread_bytes<T>(p) +
         workspace_alignment;
}

template <class T>
using gc_map = Eigen::Map<row_major_matrix<T>>;
template <class T>
using gc_cmap = Eigen::Map<const row_major_matrix<T>>;

/// The first bad row a chunk met (row < 0: none).
struct gc_row_flag {
  index_t row = -1;
};

/// One input of the problem with its name (for messages).
template <class T>
struct gc_input {
  matrix_view<const T> view;
  const char* name;
};

/// Copies rows [r0, r0 + c) of x (row-major into dst, c x D) and flags a bad row.
template <class T>
void gc_load(const matrix_view<const T>& x, index_t r0, index_t c, T* dst, gc_row_flag& flag) {
  const index_t d = x.cols(), cs = x.col_stride();
  for (index_t r = 0; r < c; ++r) {
    const T* src = x.row_ptr(r0 + r);
    T* out = dst + r * d;
    double s = 0;
    for (index_t k = 0; k < d; ++k) {
      const T a = src[k * cs];
      out[k] = a;
      s += double(a) * double(a);
    }
    if (CONTRASTIVE_UNLIKELY(!row_norm_ok(s)) && flag.row < 0) flag.row = r0 + r;
  }
}

/// P = X + Y and Q = X - Y for rows [r0, r0 + c), flagging a bad row of X or Y.
template <class T>
void gc_load_pq(const matrix_view<const T>& x, const matrix_view<const T>& y, index_t r0, index_t c,
                T* p, T* q, gc_row_flag& flag) {
  const index_t d = x.cols(), xs = x.col_stride(), ys = y.col_stride();
  for (index_t r = 0; r < c; ++r) {
    const T* xr = x.row_ptr(r0 + r);
    const T* yr = y.row_ptr(r0 + r);
    T* pr = p + r * d;
    T* qr = q + r * d;
    double sx = 0, sy = 0;
    if (xs == 1 && ys == 1) {
      for (index_t k = 0; k < d; ++k) {
        const T a = xr[k], b = yr[k];
        pr[k] = a + b;
        qr[k] = a - b;
        sx += double(a) * double(a);
        sy += double(b) * double(b);
      }
    } else {
      for (index_t k = 0; k < d; ++k) {
        const T a = xr[k * xs], b = yr[k * ys];
        pr[k] = a + b;
        qr[k] = a - b;
        sx += double(a) * double(a);
        sy += double(b) * double(b);
      }
    }
    if (CONTRASTIVE_UNLIKELY(!(row_norm_ok(sx) && row_norm_ok(sy))) && flag.row < 0)
      flag.row = r0 + r;
  }
}

/// After a parallel pass: the first flagged row (in row order) is reported with the inputs'
/// names; a false alarm (a squared norm overflowing double) re-checks the rest of its chunk.
template <class T>
void gc_report_flags(const char* fn, const std::vector<gc_row_flag>& flags, const gc_plan& p,
                     const gc_input<T>* inputs, int count) {
  for (index_t c = 0; c < p.chunks; ++c) {
    if (flags[static_cast<std::size_t>(c)].row < 0) continue;
    const index_t r0 = c * p.chunk;
    const index_t rows = p.n - r0 < p.chunk ? p.n - r0 : p.chunk;
    for (int k = 0; k < count; ++k)
      check_rows(fn, inputs[k].name, inputs[k].view.middle_rows(r0, rows));
  }
}

/// out(rows r0.., :) = (accumulate ? out : 0) + s * buf
template <class T>
void gc_store(const matrix_view<T>& out, index_t r0, index_t c, const T* buf, double s,
              bool accumulate) {
  const index_t d = out.cols();
  const T st = static_cast<T>(s);
  for (index_t r = 0; r < c; ++r) {
    const T* b = buf + r * d;
    if (out.col_stride() == 1) {
      T* o = out.row_ptr(r0 + r);
      if (accumulate) {
        for (index_t k = 0; k < d; ++k) o[k] += st * b[k];
      } else {
        for (index_t k = 0; k < d; ++k) o[k] = st * b[k];
      }
    } else {
      for (index_t k = 0; k < d; ++k) {
        T& o = out(r0 + r, k);
        o = accumulate ? o + st * b[k] : st * b[k];
      }
    }
  }
}

/// out1 = s (X + Y), out2 = s (X - Y) for rows r0.. (either output may be absent).
template <class T>
void gc_store_sum_diff(const matrix_view<T>* out1, const matrix_view<T>* out2, index_t r0,
                       index_t c, index_t d, const T* x, const T* y, double s, bool accumulate) {
  const T st = static_cast<T>(s);
  for (index_t r = 0; r < c; ++r) {
    const T* xr = x + r * d;
    const T* yr = y + r * d;
    for (index_t k = 0; k < d; ++k) {
      const T a = xr[k], b = yr[k];
      if (out1) {
        T& o = (*out1)(r0 + r, k);
        o = accumulate ? o + st * (a + b) : st * (a + b);
      }
      if (out2) {
        T& o = (*out2)(r0 + r, k);
        o = accumulate ? o + st * (a - b) : st * (a - b);
      }
    }
  }
}

/// Zero (or leave, when accumulating) an output.
template <class T>
void gc_clear(const matrix_view<T>& out, bool accumulate) {
  if (accumulate) return;
  for (index_t i = 0; i < out.rows(); ++i)
    for (index_t k = 0; k < out.cols(); ++k) out(i, k) = T(0);
}

/// sum_ij X_ij Y_ij and sum_ij X_ij Y_ji in double.
template <class T>
double gc_frobenius(const T* x, const T* y, index_t d) noexcept {
  double s = 0;
  for (index_t i = 0; i < d * d; ++i) s += double(x[i]) * double(y[i]);
  return s;
}
template <class T>
double gc_trace_product(const T* x, const T* y, index_t d) noexcept {
  double s = 0;
  for (index_t i = 0; i < d; ++i)
    for (index_t j = 0; j < d; ++j) s += double(x[i * d + j]) * double(y[j * d + i]);
  return s;
}

/// Copies the lower triangle onto the upper one.
template <class T>
void gc_symmetrize(T* a, index_t d) noexcept {
  for (index_t i = 0; i < d; ++i)
    for (index_t j = i + 1; j < d; ++j) a[i * d + j] = a[j * d + i];
}

/// Which Grams of a slab are symmetric rank updates (lower triangle only until summed).
inline bool gc_gram_is_symmetric(const gc_plan& p, int g) noexcept {
  if (p.augmented) return g % 3 != 2;
  return p.algorithm == gc_algorithm::gram ? true : g != 2;
}

/// The forward sweep of the gram paths: fills saved.grams (and saved.delta) and returns the loss.
template <class T>
double gc_gram_forward(const char* fn, const gc_plan& p, const gc_input<T>* in, int inputs,
                       const geometric_consistency_options& o,
                       geometric_consistency_saved<T>& saved, workspace ws) {
  const index_t n = p.n, d = p.d, dd = d * d;
  arena ar(ws, gc_forward_bytes<T>(p) - workspace_alignment, fn);
  saved.grams.assign(static_cast<std::size_t>(p.grams * dd), T(0));
  if (p.augmented) saved.delta.assign(static_cast<std::size_t>(n), 0.0);
  std::vector<T*> slab(static_cast<std::size_t>(p.slabs));
  slab[0] = saved.grams.data();
  for (index_t s = 1; s < p.slabs; ++s) {
    slab[static_cast<std::size_t>(s)] = ar.take<T>(static_cast<std::size_t>(p.grams * dd));
    std::fill(slab[static_cast<std::size_t>(s)], slab[static_cast<std::size_t>(s)] + p.grams * dd,
              T(0));
  }
  const int threads = p.threads < p.slabs ? p.threads : static_cast<int>(p.slabs);
  std::vector<T*> scratch(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    scratch[static_cast<std::size_t>(t)] = ar.take<T>(4 * static_cast<std::size_t>(p.chunk * d));
  std::vector<gc_row_flag> flags(static_cast<std::size_t>(p.chunks));

  parallel_for(p.slabs, threads, [&](index_t s, int tid) {
    T* buf0 = scratch[static_cast<std::size_t>(tid)];
    T* buf1 = buf0 + p.chunk * d;
    T* g = slab[static_cast<std::size_t>(s)];
    const index_t c0 = s * p.chunks / p.slabs, c1 = (s + 1) * p.chunks / p.slabs;
    for (index_t ch = c0; ch < c1; ++ch) {
      const index_t r0 = ch * p.chunk;
      const index_t c = n - r0 < p.chunk ? n - r0 : p.chunk;
      gc_row_flag& flag = flags[static_cast<std::size_t>(ch)];
      const gc_cmap<T> m0(buf0, c, d), m1(buf1, c, d);
      const int pairs = p.augmented ? 2 : 1;
      for (int pr = 0; pr < pairs; ++pr) {
        // The pair (X, Y): (V, U), or (V, Va) and (U, Ua) when augmented.
        const matrix_view<const T>& xv = p.augmented ? in[pr].view : in[0].view;
        const matrix_view<const T>& yv = p.augmented ? in[pr + 2].view : in[1].view;
        T* g0 = g + static_cast<index_t>(3 * pr) * dd;
        gc_map<T> G0(g0, d, d), G1(g0 + dd, d, d);
        if (p.algorithm == gc_algorithm::gram) {
          gc_load_pq(xv, yv, r0, c, buf0, buf1, flag);  // buf0 = P, buf1 = Q
        } else {
          gc_load(xv, r0, c, buf0, flag);
          gc_load(yv, r0, c, buf1, flag);
        }
        G0.template selfadjointView<Eigen::Lower>().rankUpdate(m0.transpose());
        G1.template selfadjointView<Eigen::Lower>().rankUpdate(m1.transpose());
        if (p.augmented || p.algorithm == gc_algorithm::gram_split) {
          gc_map<T> G2(g0 + 2 * dd, d, d);
          G2.noalias() += m0.transpose() * m1;
        }
      }
      if (p.augmented) {
        const matrix_view<const T>& v = in[0].view;
        const matrix_view<const T>& u = in[1].view;
        const matrix_view<const T>& va = in[2].view;
        const matrix_view<const T>& ua = in[3].view;
        for (index_t r = r0; r < r0 + c; ++r)
          saved.delta[static_cast<std::size_t>(r)] = dot_rows(v, r, u, r) - dot_rows(va, r, ua, r);
      }
    }
  });
  gc_report_flags(fn, flags, p, in, inputs);

  T* g = saved.grams.data();
  for (index_t s = 1; s < p.slabs; ++s) {
    const T* o2 = slab[static_cast<std::size_t>(s)];
    for (index_t i = 0; i < p.grams * dd; ++i) g[i] += o2[i];
  }
  for (int k = 0; k < p.grams; ++k)
    if (gc_gram_is_symmetric(p, k)) gc_symmetrize(g + k * dd, d);

  const double inv_n = 1.0 / double(n);
  if (!p.augmented) {
    if (p.algorithm == gc_algorithm::gram) {  // w (1/N) tr(A B), A = P^TP, B = Q^TQ
      return o.in_modal_weight * inv_n * gc_frobenius(g, g + dd, d);
    }
    const T* av = g;
    const T* au = g + dd;
    const T* cc = g + 2 * dd;  // V^T U
    const double cross = 2 * gc_frobenius(av, au, d) - 2 * gc_trace_product(cc, cc, d);
    const double inmod =
        gc_frobenius(av, av, d) + gc_frobenius(au, au, d) - 2 * gc_frobenius(cc, cc, d);
    return inv_n * (o.cross_modal_weight * cross + o.in_modal_weight * inmod);
  }
  double f = 0;
  for (int pr = 0; pr < 2; ++pr) {
    const T* a = g + 3 * pr * dd;
    const T* b = a + dd;
    const T* c = a + 2 * dd;
    if (p.algorithm == gc_algorithm::gram) {
      f += 0.5 * (gc_frobenius(a, b, d) + gc_trace_product(c, c, d));
    } else {
      f += gc_frobenius(a, a, d) + gc_frobenius(b, b, d) - 2 * gc_frobenius(c, c, d);
    }
  }
  for (const double dl : saved.delta) f += dl * dl;
  return inv_n * f;
}

/// The backward sweep of the gram paths. out[k] may be null (detached).
template <class T>
void gc_gram_backward(const char* fn, const gc_plan& p, const gc_input<T>* in, int inputs,
                      const geometric_consistency_saved<T>& saved, const matrix_view<T>* const* out,
                      const geometric_consistency_options& o, double upstream, workspace ws) {
  const index_t n = p.n, d = p.d, dd = d * d;
  arena ar(ws, gc_backward_bytes<T>(p) - workspace_alignment, fn);
  const T* g = saved.grams.data();
  // Right-hand D x D factors of the products, combined once.
  T* f[8] = {};
  const auto cm = [d](const T* x) { return gc_cmap<T>(x, d, d); };
  if (!p.augmented && p.algorithm == gc_algorithm::gram) {
    // dV = s (P B + Q A), dU = s (P B - Q A), s = 2 w / N: the factors are B and A themselves.
  } else if (!p.augmented) {
    const double wx = o.cross_modal_weight, wi = o.in_modal_weight;
    for (int k = 0; k < 4; ++k) f[k] = ar.take<T>(static_cast<std::size_t>(dd));
    const auto av = cm(g), au = cm(g + dd), c = cm(g + 2 * dd);   // c = V^T U
    gc_map<T>(f[0], d, d) = (T(wx) * au + T(wi) * av);            // Mv
    gc_map<T>(f[1], d, d) = (T(wx) * c + T(wi) * c.transpose());  // Nv
    gc_map<T>(f[2], d, d) = (T(wx) * av + T(wi) * au);            // Mu
    gc_map<T>(f[3], d, d) = (T(wx) * c.transpose() + T(wi) * c);  // Nu
  } else {
    for (int pr = 0; pr < 2; ++pr) {
      const auto a = cm(g + 3 * pr * dd), b = cm(g + (3 * pr + 1) * dd),
                 c = cm(g + (3 * pr + 2) * dd);
      T* const* fp = f + 4 * pr;
      for (int k = 0; k < 4; ++k) f[4 * pr + k] = ar.take<T>(static_cast<std::size_t>(dd));
      if (p.algorithm == gc_algorithm::gram) {       // c = P^T Q
        gc_map<T>(fp[0], d, d) = b + c.transpose();  // dX = P G1 + Q G2
        gc_map<T>(fp[1], d, d) = c + a;
        gc_map<T>(fp[2], d, d) = b - c.transpose();  // dY = P G3 + Q G4
        gc_map<T>(fp[3], d, d) = c - a;
      } else {  // a = X^TX, b = Y^TY, c = X^TY: dX = 4 (X a - Y c^T), dY = 4 (Y b - X c)
        gc_map<T>(fp[0], d, d) = a;
        gc_map<T>(fp[1], d, d) = -c.transpose();
        gc_map<T>(fp[2], d, d) = b;
        gc_map<T>(fp[3], d, d) = -c;
      }
    }
  }
  const int threads = p.threads < p.chunks ? p.threads : static_cast<int>(p.chunks);
  std::vector<T*> scratch(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    scratch[static_cast<std::size_t>(t)] = ar.take<T>(4 * static_cast<std::size_t>(p.chunk * d));
  std::vector<gc_row_flag> flags(static_cast<std::size_t>(p.chunks));
  const double inv_n = 1.0 / double(n);
  const bool acc = o.accumulate;

  parallel_for(p.chunks, threads, [&](index_t ch, int tid) {
    T* buf0 = scratch[static_cast<std::size_t>(tid)];
    T* buf1 = buf0 + p.chunk * d;
    T* buf2 = buf1 + p.chunk * d;
    T* buf3 = buf2 + p.chunk * d;
    const index_t r0 = ch * p.chunk;
    const index_t c = n - r0 < p.chunk ? n - r0 : p.chunk;
    gc_row_flag& flag = flags[static_cast<std::size_t>(ch)];
    const gc_cmap<T> m0(buf0, c, d), m1(buf1, c, d);
    gc_map<T> x2(buf2, c, d), x3(buf3, c, d);
    if (!p.augmented && p.algorithm == gc_algorithm::gram) {
      gc_load_pq(in[0].view, in[1].view, r0, c, buf0, buf1, flag);
      const double s = 2 * o.in_modal_weight * upstream * inv_n;
      if (!acc && gemm_ready(*out[0]) && gemm_ready(*out[1])) {
        // The products go straight into the outputs, then (x, y) -> s (x + y), s (x - y).
        auto gvm = map_rows_mut(out[0]->middle_rows(r0, c));
        auto gum = map_rows_mut(out[1]->middle_rows(r0, c));
        gvm.noalias() = m0 * cm(g + dd);  // P B
        gum.noalias() = m1 * cm(g);       // Q A
        const T st = static_cast<T>(s);
        for (index_t r = 0; r < c; ++r) {
          T* xr = out[0]->row_ptr(r0 + r);
          T* yr = out[1]->row_ptr(r0 + r);
          for (index_t k = 0; k < d; ++k) {
            const T a = xr[k], b = yr[k];
            xr[k] = st * (a + b);
            yr[k] = st * (a - b);
          }
        }
        return;
      }
      x2.noalias() = m0 * cm(g + dd);  // P B
      x3.noalias() = m1 * cm(g);       // Q A
      gc_store_sum_diff(out[0], out[1], r0, c, d, buf2, buf3, s, acc);
      return;
    }
    if (!p.augmented) {
      gc_load(in[0].view, r0, c, buf0, flag);
      gc_load(in[1].view, r0, c, buf1, flag);
      const double s = 4 * upstream * inv_n;
      x2.noalias() = m0 * cm(f[0]);
      x2.noalias() -= m1 * cm(f[1]);
      gc_store(*out[0], r0, c, buf2, s, acc);
      x3.noalias() = m1 * cm(f[2]);
      x3.noalias() -= m0 * cm(f[3]);
      gc_store(*out[1], r0, c, buf3, s, acc);
      return;
    }
    for (int pr = 0; pr < 2; ++pr) {
      const matrix_view<const T>& xv = in[pr].view;
      const matrix_view<const T>& yv = in[pr + 2].view;
      const matrix_view<T>* ox = out[pr];
      const matrix_view<T>* oy = out[pr + 2];
      T* const* fp = f + 4 * pr;
      if (p.algorithm == gc_algorithm::gram) {
        gc_load_pq(xv, yv, r0, c, buf0, buf1, flag);
      } else {
        gc_load(xv, r0, c, buf0, flag);
        gc_load(yv, r0, c, buf1, flag);
      }
      // gram: dX = P G1 + Q G2, dY = P G3 + Q G4 (scale 1/N);
      // split: dX = X a + Y (-c^T), dY = Y b + X (-c) (scale 4/N).
      const double s = (p.algorithm == gc_algorithm::gram ? 1.0 : 4.0) * upstream * inv_n;
      const bool split = p.algorithm == gc_algorithm::gram_split;
      if (ox) {
        x2.noalias() = m0 * cm(fp[0]);
        x2.noalias() += m1 * cm(fp[1]);
        gc_store(*ox, r0, c, buf2, s, acc);
      }
      if (oy) {
        if (split) {
          x3.noalias() = m1 * cm(fp[2]);
          x3.noalias() += m0 * cm(fp[3]);
        } else {
          x3.noalias() = m0 * cm(fp[2]);
          x3.noalias() += m1 * cm(fp[3]);
        }
        gc_store(*oy, r0, c, buf3, s, acc);
      }
    }
    // Diagonal term: (1/N) sum_j delta_j^2, delta_j = <v_j,u_j> - <va_j,ua_j>.
    const matrix_view<const T>* xs[4] = {&in[0].view, &in[1].view, &in[2].view, &in[3].view};
    for (index_t r = r0; r < r0 + c; ++r) {
      const double dl = 2 * upstream * inv_n * saved.delta[static_cast<std::size_t>(r)];
      // dv += dl u, du += dl v, dva -= dl ua, dua -= dl va
      const int partner[4] = {1, 0, 3, 2};
      const double sign[4] = {1, 1, -1, -1};
      for (int k = 0; k < 4; ++k) {
        if (!out[k]) continue;
        const matrix_view<const T>& w = *xs[partner[k]];
        const T coef = static_cast<T>(sign[k] * dl);
        for (index_t j = 0; j < d; ++j) (*out[k])(r, j) += coef * w(r, j);
      }
    }
  });
  gc_report_flags(fn, flags, p, in, inputs);
}

/// Row-major Eigen copy of a view (naive path).
template <class T>
row_major_matrix<T> gc_dense(const matrix_view<const T>& x) {
  row_major_matrix<T> m(x.rows(), x.cols());
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t k = 0; k < x.cols(); ++k) m(i, k) = x(i, k);
  return m;
}

template <class M>
double gc_squared_norm(const M& m) {
  double s = 0;
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t k = 0; k < m.cols(); ++k) s += double(m(i, k)) * double(m(i, k));
  return s;
}

template <class T>
void gc_store_dense(const matrix_view<T>& out, const row_major_matrix<T>& g, bool accumulate) {
  for (index_t i = 0; i < out.rows(); ++i)
    for (index_t k = 0; k < out.cols(); ++k) out(i, k) = accumulate ? out(i, k) + g(i, k) : g(i, k);
}

/// Naive forward: N x N matrices.
template <class T>
double gc_naive_forward(const gc_plan& p, const gc_input<T>* in,
                        const geometric_consistency_options& o,
                        geometric_consistency_saved<T>& saved) {
  const double inv_n = 1.0 / double(p.n);
  const row_major_matrix<T> v = gc_dense(in[0].view), u = gc_dense(in[1].view);
  if (!p.augmented) {
    const row_major_matrix<T> m = v * u.transpose();
    const row_major_matrix<T> k = m - m.transpose();
    const row_major_matrix<T> e = v * v.transpose() - u * u.transpose();
    return inv_n *
           (o.cross_modal_weight * gc_squared_norm(k) + o.in_modal_weight * gc_squared_norm(e));
  }
  const row_major_matrix<T> va = gc_dense(in[2].view), ua = gc_dense(in[3].view);
  const row_major_matrix<T> ev = v * v.transpose() - va * va.transpose();
  const row_major_matrix<T> eu = u * u.transpose() - ua * ua.transpose();
  double f = gc_squared_norm(ev) + gc_squared_norm(eu);
  saved.delta.assign(static_cast<std::size_t>(p.n), 0.0);
  for (index_t j = 0; j < p.n; ++j) {
    const double dl =
        dot_rows(in[0].view, j, in[1].view, j) - dot_rows(in[2].view, j, in[3].view, j);
    saved.delta[static_cast<std::size_t>(j)] = dl;
    f += dl * dl;
  }
  return inv_n * f;
}

template <class T>
void gc_naive_backward(const gc_plan& p, const gc_input<T>* in,
                       const geometric_consistency_saved<T>& saved,
                       const matrix_view<T>* const* out, const geometric_consistency_options& o,
                       double upstream) {
  const T s = static_cast<T>(4 * upstream / double(p.n));
  const row_major_matrix<T> v = gc_dense(in[0].view), u = gc_dense(in[1].view);
  if (!p.augmented) {
    const row_major_matrix<T> m = v * u.transpose();
    const row_major_matrix<T> k = m - m.transpose();
    const row_major_matrix<T> e = v * v.transpose() - u * u.transpose();
    const T wx = static_cast<T>(o.cross_modal_weight), wi = static_cast<T>(o.in_modal_weight);
    const row_major_matrix<T> gv = s * (wx * (k * u) + wi * (e * v));
    const row_major_matrix<T> gu = -s * (wx * (k * v) + wi * (e * u));
    gc_store_dense(*out[0], gv, o.accumulate);
    gc_store_dense(*out[1], gu, o.accumulate);
    return;
  }
  const row_major_matrix<T> va = gc_dense(in[2].view), ua = gc_dense(in[3].view);
  const row_major_matrix<T> ev = v * v.transpose() - va * va.transpose();
  const row_major_matrix<T> eu = u * u.transpose() - ua * ua.transpose();
  row_major_matrix<T> g[4] = {s * (ev * v), s * (eu * u), -s * (ev * va), -s * (eu * ua)};
  const row_major_matrix<T>* xs[4] = {&v, &u, &va, &ua};
  const int partner[4] = {1, 0, 3, 2};
  const double sign[4] = {1, 1, -1, -1};
  for (index_t j = 0; j < p.n; ++j) {
    const double dl = 2 * upstream / double(p.n) * saved.delta[static_cast<std::size_t>(j)];
    for (int k = 0; k < 4; ++k)
      g[k].row(j) += static_cast<T>(sign[k] * dl) * xs[partner[k]]->row(j);
  }
  for (int k = 0; k < 4; ++k)
    if (out[k]) gc_store_dense(*out[k], g[k], o.accumulate);
}

/// Shapes (all inputs N x D like the first, N > 0, D > 0) and options.
template <class T>
void gc_check_inputs(const char* fn, const gc_input<T>* in, int count,
                     const geometric_consistency_options& o) {
  gc_check_options(fn, o);
  for (int k = 0; k < count; ++k) check_matrix(fn, in[k].name, in[k].view);
  const matrix_view<const T>& a = in[0].view;
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('", in[0].name, "' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": '", in[0].name, "' has 0 columns (D must be > 0)");
  for (int k = 1; k < count; ++k) {
    CONTRASTIVE_CHECK(in[k].view.rows() == a.rows(), fn, ": '", in[k].name, "' has ",
                      in[k].view.rows(), " rows, expected ", a.rows(), " (rows of '", in[0].name,
                      "')");
    CONTRASTIVE_CHECK(in[k].view.cols() == a.cols(), fn, ": '", in[k].name, "' has ",
                      in[k].view.cols(), " columns, expected ", a.cols(), " (columns of '",
                      in[0].name, "')");
  }
}

template <class T>
geometric_consistency_saved<T> gc_forward_impl(const char* fn, const gc_input<T>* in, int count,
                                               const geometric_consistency_options& o,
                                               workspace ws) {
  gc_check_inputs(fn, in, count, o);
  const bool augmented = count == 4;
  const gc_plan p = gc_make_plan<T>(in[0].view.rows(), in[0].view.cols(), augmented, o);
  geometric_consistency_saved<T> saved;
  saved.n = p.n;
  saved.d = p.d;
  saved.augmented = augmented;
  saved.algorithm = p.algorithm;
  saved.cross_modal_weight = o.cross_modal_weight;
  saved.in_modal_weight = o.in_modal_weight;
  double loss;
  if (p.algorithm == gc_algorithm::naive) {
    for (int k = 0; k < count; ++k) check_rows(fn, in[k].name, in[k].view);
    loss = gc_naive_forward(p, in, o, saved);
  } else {
    loss = gc_gram_forward(fn, p, in, count, o, saved, ws);
  }
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)));
  saved.loss = static_cast<T>(loss);
  return saved;
}

template <class T>
void gc_backward_impl(const char* fn, const gc_input<T>* in, int count,
                      const geometric_consistency_saved<T>& saved, const matrix_view<T>* grads,
                      const geometric_consistency_options& o, double upstream, workspace ws) {
  static const char* const grad_names[4] = {"grad_a", "grad_b", "grad_a_aug", "grad_b_aug"};
  gc_check_inputs(fn, in, count, o);
  const bool augmented = count == 4;
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  const index_t n = in[0].view.rows(), d = in[0].view.cols();
  CONTRASTIVE_CHECK(saved.n == n && saved.d == d && saved.augmented == augmented, fn,
                    ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                    saved.augmented ? " augmented" : "", " problem, the inputs are ", n, " x ", d,
                    augmented ? " (augmented)" : "");
  CONTRASTIVE_CHECK(augmented || (saved.cross_modal_weight == o.cross_modal_weight &&
                                  saved.in_modal_weight == o.in_modal_weight),
                    fn, ": 'saved' was computed with other weights (", saved.cross_modal_weight,
                    ", ", saved.in_modal_weight, ") than these (", o.cross_modal_weight, ", ",
                    o.in_modal_weight, ")");
  const int grams = gc_gram_count(saved.algorithm, augmented);
  CONTRASTIVE_CHECK(saved.algorithm != gc_algorithm::automatic &&
                        saved.grams.size() == static_cast<std::size_t>(grams * d * d) &&
                        (!augmented || saved.delta.size() == static_cast<std::size_t>(n)),
                    fn, ": 'saved' is incomplete (not produced by the matching forward)");
  for (int k = 0; k < count; ++k) {
    check_matrix(fn, grad_names[k], grads[k]);
    check_shape(fn, grad_names[k], grads[k], n, d, "the shape of the inputs");
    check_writable_layout(fn, grad_names[k], grads[k]);
    for (int j = 0; j < count; ++j)
      check_no_alias(fn, grad_names[k], grads[k], in[j].name, in[j].view);
    for (int j = 0; j < k; ++j)
      check_no_alias(fn, grad_names[k], grads[k], grad_names[j], grads[j]);
  }
  // Every value and row norm is checked before any output is written (one O(N D) pass, next to
  // the O(N D^2) products), so a throwing call leaves all gradients untouched.
  for (int k = 0; k < count; ++k) check_rows(fn, in[k].name, in[k].view);
  // |dL/dx| <= 8 (w_x + w_i) D max|x|^3 (docs/geometric_consistency.md: K and E entries are at
  // most 2 D max|x|^2, summed over N rows and divided by N); the augmented loss has weights 1 and
  // a diagonal term, 24 D max|x|^3 in all.
  double m = 0, existing = 0;
  for (int k = 0; k < count; ++k) m = std::max(m, max_abs(in[k].view));
  if (o.accumulate)
    for (int k = 0; k < count; ++k) existing = std::max(existing, max_abs(grads[k]));
  const double weights = augmented ? 3.0 : o.cross_modal_weight + o.in_modal_weight;
  const double m1 = at_least_one(m);  // each factor at least 1: partial products are bounded too
  check_output_bound<T>(
      fn, "gradients",
      8.0 * at_least_one(weights) * static_cast<double>(d) * m1 * m1 * m1 * at_least_one(upstream) +
          existing);
  const matrix_view<T>* out[4] = {&grads[0], &grads[1], nullptr, nullptr};
  if (augmented) {
    out[2] = o.detach_a_aug ? nullptr : &grads[2];
    out[3] = o.detach_b_aug ? nullptr : &grads[3];
  }
  // The path follows `saved` (its Grams); the plan gives the chunking.
  geometric_consistency_options po = o;
  po.algorithm = saved.algorithm;
  gc_plan p = gc_make_plan<T>(n, d, augmented, po);
  p.algorithm = saved.algorithm;
  if (p.algorithm == gc_algorithm::naive) {
    gc_naive_backward(p, in, saved, out, o, upstream);
  } else {
    gc_gram_backward(fn, p, in, count, saved, out, o, upstream, ws);
  }
  // Detached outputs are cleared last, once nothing can throw any more.
  if (augmented && o.detach_a_aug) gc_clear(grads[2], o.accumulate);
  if (augmented && o.detach_b_aug) gc_clear(grads[3], o.accumulate);
}

}  // namespace detail

/// Scratch bytes of the gram path for an N x D problem (the naive path allocates its N x N
/// matrices itself). Pass at least this much as `workspace` to make the gram path's calls
/// allocation-free besides `saved`.
template <class T>
std::size_t geometric_consistency_workspace_bytes(index_t n, index_t d,
                                                  const geometric_consistency_options& o = {}) {
  const detail::gc_plan p = detail::gc_make_plan<T>(n, d, false, o);
  const std::size_t f = detail::gc_forward_bytes<T>(p), b = detail::gc_backward_bytes<T>(p);
  return f > b ? f : b;
}

/// The same for these inputs.
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t geometric_consistency_workspace_bytes(const A& a, const B& b,
                                                  const geometric_consistency_options& o = {}) {
  const auto va = detail::input_view(a);
  (void)b;
  using T = typename decltype(va)::value_type;
  return geometric_consistency_workspace_bytes<T>(va.rows(), va.cols(), o);
}

/// Scratch bytes of the augmented variant's gram path.
template <class T>
std::size_t geometric_consistency_augmented_workspace_bytes(
    index_t n, index_t d, const geometric_consistency_options& o = {}) {
  const detail::gc_plan p = detail::gc_make_plan<T>(n, d, true, o);
  const std::size_t f = detail::gc_forward_bytes<T>(p), b = detail::gc_backward_bytes<T>(p);
  return f > b ? f : b;
}

/// The same for these inputs.
template <class A, class B, class AA, class BA,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value &&
                               is_tensor_like<AA>::value && is_tensor_like<BA>::value,
                           int> = 0>
std::size_t geometric_consistency_augmented_workspace_bytes(
    const A& a, const B& b, const AA& a_aug, const BA& b_aug,
    const geometric_consistency_options& o = {}) {
  const auto va = detail::input_view(a);
  (void)b, (void)a_aug, (void)b_aug;
  using T = typename decltype(va)::value_type;
  return geometric_consistency_augmented_workspace_bytes<T>(va.rows(), va.cols(), o);
}

/// L_GC forward. `a` (image) and `b` (text) are N x D; row j of each is pair j.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto geometric_consistency_forward(const A& a, const B& b,
                                   const geometric_consistency_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/geometric_consistency.cuh
    (void)ws;
    return detail::device_backend_of<detail::geometric_consistency_tag, A>::type::forward(
        as_view(a), as_view(b), o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    const detail::gc_input<T> in[2] = {{va, "a"}, {vb, "b"}};
    return detail::gc_forward_impl<T>(detail::gc_fwd_name, in, 2, o, ws);
  }
}

/// Backward of a forward run on device views (cuda/geometric_consistency.cuh).
template <class A, class B, class T, class GA, class GB>
geometric_consistency_parameter_gradients geometric_consistency_backward(
    const A& a, const B& b, const cuda::geometric_consistency_device_saved<T>& saved, GA&& grad_a,
    GB&& grad_b, const geometric_consistency_options& o = {}, double upstream = 1.0,
    workspace = {}) {
  detail::device_backend_of<detail::geometric_consistency_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
  return {};
}

/// L_GC backward: writes (or adds) upstream * dL/da and dL/db. Nothing to return: the loss has
/// no parameters of its own.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
geometric_consistency_parameter_gradients
    geometric_consistency_backward(const A& a, const B& b,
                                   const geometric_consistency_saved<T>& saved, GA&& grad_a,
                                   GB&& grad_b, const geometric_consistency_options& o = {},
                                   double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  const detail::gc_input<T> in[2] = {{va, "a"}, {vb, "b"}};
  const matrix_view<T> grads[2] = {ga, gb};
  detail::gc_backward_impl<T>(detail::gc_bwd_name, in, 2, saved, grads, o, upstream, ws);
  return {};
}

/// L_GC forward and backward in one call; returns the loss.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto geometric_consistency_forward_backward(
    const A& a, const B& b, GA&& grad_a, GB&& grad_b, const geometric_consistency_options& o = {},
    geometric_consistency_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = geometric_consistency_forward(a, b, o, ws);
  const auto pg = geometric_consistency_backward(a, b, saved, std::forward<GA>(grad_a),
                                                 std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

/// L^a_GC forward: `a_aug`, `b_aug` are the augmented views' embeddings (N x D each).
template <class A, class B, class AA, class BA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& tensor_like<BA>)
auto geometric_consistency_augmented_forward(const A& a, const B& b, const AA& a_aug,
                                             const BA& b_aug,
                                             const geometric_consistency_options& o = {},
                                             workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vaa = detail::input_view(a_aug);
  const auto vba = detail::input_view(b_aug);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb), decltype(vaa), decltype(vba)>();
  const detail::gc_input<T> in[4] = {{va, "a"}, {vb, "b"}, {vaa, "a_aug"}, {vba, "b_aug"}};
  return detail::gc_forward_impl<T>(detail::gca_fwd_name, in, 4, o, ws);
}

/// L^a_GC backward: writes (or adds) upstream * the gradients for a, b, a_aug and b_aug (the
/// last two zeroed, or left untouched with `accumulate`, when detached).
template <class A, class B, class AA, class BA, class T, class GA, class GB, class GAA, class GBA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& tensor_like<BA>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAA&&>&& writable_tensor<GBA&&>)
geometric_consistency_parameter_gradients
    geometric_consistency_augmented_backward(const A& a, const B& b, const AA& a_aug,
                                             const BA& b_aug,
                                             const geometric_consistency_saved<T>& saved,
                                             GA&& grad_a, GB&& grad_b, GAA&& grad_a_aug,
                                             GBA&& grad_b_aug,
                                             const geometric_consistency_options& o = {},
                                             double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vaa = detail::input_view(a_aug);
  const auto vba = detail::input_view(b_aug);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  const auto gaa = detail::output_view(std::forward<GAA>(grad_a_aug));
  const auto gba = detail::output_view(std::forward<GBA>(grad_b_aug));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(vaa), decltype(vba),
                                  decltype(ga), decltype(gb), decltype(gaa), decltype(gba)>();
  const detail::gc_input<T> in[4] = {{va, "a"}, {vb, "b"}, {vaa, "a_aug"}, {vba, "b_aug"}};
  const matrix_view<T> grads[4] = {ga, gb, gaa, gba};
  detail::gc_backward_impl<T>(detail::gca_bwd_name, in, 4, saved, grads, o, upstream, ws);
  return {};
}

/// L^a_GC forward and backward in one call; returns the loss.
template <class A, class B, class AA, class BA, class GA, class GB, class GAA, class GBA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& tensor_like<BA>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAA&&>&& writable_tensor<GBA&&>)
auto geometric_consistency_augmented_forward_backward(
    const A& a, const B& b, const AA& a_aug, const BA& b_aug, GA&& grad_a, GB&& grad_b,
    GAA&& grad_a_aug, GBA&& grad_b_aug, const geometric_consistency_options& o = {},
    geometric_consistency_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = geometric_consistency_augmented_forward(a, b, a_aug, b_aug, o, ws);
  const auto pg = geometric_consistency_augmented_backward(
      a, b, a_aug, b_aug, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b),
      std::forward<GAA>(grad_a_aug), std::forward<GBA>(grad_b_aug), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_HPP
