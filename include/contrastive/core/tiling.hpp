#ifndef CONTRASTIVE_CORE_TILING_HPP
#define CONTRASTIVE_CORE_TILING_HPP

// The row-tile x column-tile sweep shared by the pairwise losses. S = scale * X Y^T is never
// stored whole: each Tr x Tc tile is computed, folded into O(N) statistics and dropped
// (forward), or recomputed and turned into gradient products (backward).
//
// X and Y are "virtual" matrices made of row segments (InfoNCE: X = A, Y = B; NT-Xent: X = Y =
// [A; B], which is `self` mode: the diagonal is masked and only tiles J >= I are visited, each
// serving the rows of I through its rows and the rows of J through its columns).
//
// Threads (OpenMP, when the target is built with it): row blocks I are visited in order; the
// column blocks of one row block are cut into `sweep_chunks` fixed chunks that run in parallel.
// Column statistics and dY_J have one writer per I and are merged in I order; row statistics and
// dX_I get one partial per chunk, merged in chunk order. Chunks do not depend on the thread
// count, so results are bitwise identical for any number of threads.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "contrastive/core/config.hpp"
#include "contrastive/core/gemm.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/parallel.hpp"
#include "contrastive/core/workspace.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// One tile-sized block of rows of a virtual matrix.
struct row_block {
  int segment;     // which segment it lies in
  index_t first;   // first row inside that segment
  index_t rows;    // number of rows
  index_t global;  // index of its first row in the virtual matrix
};

/// Cuts segments of the given row counts into blocks of at most `tile` rows (never straddling).
inline std::vector<row_block> make_blocks(const index_t* segment_rows, int segments, index_t tile) {
  std::vector<row_block> blocks;
  index_t global = 0;
  for (int s = 0; s < segments; ++s) {
    for (index_t r = 0; r < segment_rows[s]; r += tile) {
      const index_t n = segment_rows[s] - r < tile ? segment_rows[s] - r : tile;
      blocks.push_back(row_block{s, r, n, global + r});
    }
    global += segment_rows[s];
  }
  return blocks;
}

template <class T>
struct pairwise_problem {
  const matrix_view<const T>* x = nullptr;  // segments of X, each gemm_ready
  int x_segments = 0;
  const matrix_view<const T>* y = nullptr;  // segments of Y (== x in self mode)
  int y_segments = 0;
  bool self = false;
  // Exclude s_ii (global row == global column) from every statistic and gradient. Implied by
  // `self`; on its own it gives negatives-only normalisers for two-tower losses.
  bool mask_diagonal = false;
  // Also exclude each row's partner: in self mode over [A; B] with partner_offset = N, global row
  // g < N loses column g + N and row g >= N loses column g - N (the other view of the same
  // sample). Used by the losses whose denominators hold negatives only (DCL, debiased NT-Xent).
  index_t partner_offset = 0;
  T scale = 1;  // lambda = 1 / temperature
  // Extra statistics at scaled logits: besides the row/column softmax of s, the forward can keep
  // the online softmax of gamma_k s (k < extra_scales, gamma_k > 0; moments stay in units of s)
  // and the backward add w_k exp(gamma_k s - lse_k) terms (the hard-negative loss).
  int extra_scales = 0;
  T gamma[2] = {T(1), T(1)};
  index_t tile_rows = 256, tile_cols = 256;
  int threads = 1;  // resolved thread count (see resolve_threads in core/parallel.hpp)
  // Optional logit cache (cached mode): one slot of tile_shape() per visited tile, written by
  // the forward and read by the backward instead of recomputing the tile.
  T* cache = nullptr;
  // Optional labels per virtual row: s_ij is a positive when label_x[i] == label_y[j] (i != j
  // in self mode). Without labels the targets are handled outside the sweep in O(N D).
  const std::int64_t* label_x = nullptr;
  const std::int64_t* label_y = nullptr;
  // With labels: leave the label-matched entries out of the forward's softmax statistics
  // (negatives-only normalisers, the pair convention of supcon.hpp). The forward sets them to
  // -inf in its tile, so not with `cache`.
  bool exclude_label_matches = false;

  index_t x_rows() const noexcept { return total(x, x_segments); }
  index_t y_rows() const noexcept { return total(y, y_segments); }
  index_t dim() const noexcept { return x_segments > 0 ? x[0].cols() : 0; }

 private:
  static index_t total(const matrix_view<const T>* s, int k) noexcept {
    index_t n = 0;
    for (int i = 0; i < k; ++i) n += s[i].rows();
    return n;
  }
};

/// The setup every loss's sweep shares: X and Y as segments, the scale 1/temperature, the tiles
/// and the resolved thread count of the loss's tiling_options. The caller adds what is its own
/// (self mode, the diagonal mask, labels, the logit cache).
template <class T>
pairwise_problem<T> make_pairwise_problem(const matrix_view<const T>* x, int x_segments,
                                          const matrix_view<const T>* y, int y_segments,
                                          double temperature, const tiling_options& o) {
  pairwise_problem<T> p;
  p.x = x;
  p.x_segments = x_segments;
  p.y = y;
  p.y_segments = y_segments;
  p.scale = static_cast<T>(1.0 / temperature);
  p.tile_rows = o.tile_rows;
  p.tile_cols = o.tile_cols;
  p.threads = resolve_threads(o.num_threads);
  return p;
}

/// Row blocks of X and of Y. In self mode one blocking serves both sides (square tiles of
/// min(tile_rows, tile_cols)), so that diagonal tiles are exactly the pairs I == J.
template <class T>
std::pair<std::vector<row_block>, std::vector<row_block>> make_tiling(
    const pairwise_problem<T>& p) {
  std::vector<index_t> xr(uz(p.x_segments)), yr(uz(p.y_segments));
  for (std::size_t s = 0; s < xr.size(); ++s) xr[s] = p.x[s].rows();
  for (std::size_t s = 0; s < yr.size(); ++s) yr[s] = p.y[s].rows();
  if (p.self) {
    const index_t t = p.tile_rows < p.tile_cols ? p.tile_rows : p.tile_cols;
    auto b = make_blocks(xr.data(), p.x_segments, t);
    return {b, b};
  }
  return {make_blocks(xr.data(), p.x_segments, p.tile_rows),
          make_blocks(yr.data(), p.y_segments, p.tile_cols)};
}

/// The largest tile a sweep visits, given the largest segment of X and of Y.
inline std::pair<index_t, index_t> tile_shape(index_t tile_rows, index_t tile_cols, bool self,
                                              index_t max_x_segment,
                                              index_t max_y_segment) noexcept {
  auto lo = [](index_t a, index_t b) { return a < b ? a : b; };
  if (self) {
    const index_t t = lo(lo(tile_rows, tile_cols), max_x_segment);
    return {t, t};
  }
  return {lo(tile_rows, max_x_segment), lo(tile_cols, max_y_segment)};
}

template <class T>
std::pair<index_t, index_t> tile_shape(const pairwise_problem<T>& p) noexcept {
  index_t mx = 0, my = 0;
  for (int s = 0; s < p.x_segments; ++s) mx = p.x[s].rows() > mx ? p.x[s].rows() : mx;
  for (int s = 0; s < p.y_segments; ++s) my = p.y[s].rows() > my ? p.y[s].rows() : my;
  return tile_shape(p.tile_rows, p.tile_cols, p.self, mx, my);
}

/// Fixed number of column chunks per row block (independent of the thread count).
constexpr int sweep_chunks = 8;

/// Everything the scratch size of a sweep depends on.
struct sweep_shape {
  index_t tr = 0, tc = 0;  // largest tile
  index_t d = 0;
  int threads = 1;
};

/// The sweep shape of a loss's tiling_options for segments of at most the given rows.
inline sweep_shape make_sweep_shape(const tiling_options& o, bool self, index_t max_x_segment,
                                    index_t max_y_segment, index_t d) noexcept {
  const auto t = tile_shape(o.tile_rows, o.tile_cols, self, max_x_segment, max_y_segment);
  return sweep_shape{t.first, t.second, d, resolve_threads(o.num_threads)};
}

/// Per-thread scratch: one logit tile, four tile-length vectors and the GEMM packing buffers.
template <class T>
std::size_t thread_scratch_bytes(const sweep_shape& s) {
  return array_bytes<T>(
             checked_product(static_cast<std::size_t>(s.tr), static_cast<std::size_t>(s.tc))) +
         4 * array_bytes<T>(static_cast<std::size_t>(s.tc)) +
         array_bytes<T>(tile_gemm<T>::elements(s.tr, s.tc, s.d));
}

/// Forward scratch; `extra_scales` adds the chunk partials of the scaled-logit statistics.
template <class T>
std::size_t pairwise_forward_bytes(const sweep_shape& s, int extra_scales = 0) {
  const auto tr = static_cast<std::size_t>(s.tr);
  return checked_product(static_cast<std::size_t>(s.threads), thread_scratch_bytes<T>(s)) +
         sweep_chunks * (array_bytes<online_softmax<double>>(tr) + array_bytes<double>(tr)) +
         static_cast<std::size_t>(extra_scales) *
             array_bytes<online_softmax<double>>(sweep_chunks * tr);
}

template <class T>
std::size_t pairwise_backward_bytes(const sweep_shape& s) {
  return checked_product(static_cast<std::size_t>(s.threads), thread_scratch_bytes<T>(s)) +
         sweep_chunks * array_bytes<T>(checked_product(static_cast<std::size_t>(s.tr),
                                                       static_cast<std::size_t>(s.d)));
}

template <class T>
sweep_shape sweep_shape_of(const pairwise_problem<T>& p) noexcept {
  const auto t = tile_shape(p);
  return sweep_shape{t.first, t.second, p.dim(), p.threads < 1 ? 1 : p.threads};
}

/// Number of tiles a sweep visits (the slots of the logit cache).
inline std::size_t tile_count(index_t nx_blocks, index_t ny_blocks, bool self) noexcept {
  const auto a = static_cast<std::size_t>(nx_blocks), b = static_cast<std::size_t>(ny_blocks);
  return self ? a * (a + 1) / 2 : a * b;
}

/// Cache elements for an n_x x n_y problem of single segments (self: one segment of n_x rows
/// split in two equal halves is bounded by the same count).
inline std::size_t cache_elements(index_t tile_rows, index_t tile_cols, bool self, index_t nx,
                                  index_t ny, index_t max_x_segment, index_t max_y_segment) {
  const auto t = tile_shape(tile_rows, tile_cols, self, max_x_segment, max_y_segment);
  if (t.first <= 0 || t.second <= 0) return 0;  // no rows, or tile sizes the call will reject
  auto blocks = [](index_t n, index_t seg, index_t tile) {
    // Blocks never straddle segments: ceil per segment; equal segments of `seg` rows.
    const index_t segs = seg > 0 ? (n + seg - 1) / seg : 0;
    return segs * ((seg + tile - 1) / tile);
  };
  const index_t bx = blocks(nx, max_x_segment, t.first);
  const index_t by = self ? bx : blocks(ny, max_y_segment, t.second);
  return checked_product(
      tile_count(bx, by, self),
      checked_product(static_cast<std::size_t>(t.first), static_cast<std::size_t>(t.second)));
}

template <class T>
using tile_map = Eigen::Map<row_major_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using tile_vec = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>, Eigen::Aligned16>;

template <class T>
struct thread_scratch {
  T* tile;
  T* v[4];
  tile_gemm<T> gemm;
};

template <class T>
std::vector<thread_scratch<T>> carve_thread_scratch(arena& ar, const sweep_shape& s) {
  std::vector<thread_scratch<T>> out(static_cast<std::size_t>(s.threads));
  for (auto& t : out) {
    t.tile = ar.take<T>(static_cast<std::size_t>(s.tr * s.tc));
    for (auto& v : t.v) v = ar.take<T>(static_cast<std::size_t>(s.tc));
    t.gemm = tile_gemm<T>(s.tr, s.tc, s.d, ar.take<T>(tile_gemm<T>::elements(s.tr, s.tc, s.d)));
  }
  return out;
}

/// One band of masked entries of a tile: local (r, r + offset) for r in [first, last).
struct mask_band {
  index_t first = 0, last = 0, offset = 0;
  /// Masked column of local row r, or -1.
  index_t col(index_t r) const noexcept { return r >= first && r < last ? r + offset : -1; }
};

/// The masked entries of tile (I, J): the diagonal band and up to two partner bands. A row meets
/// at most one partner band, and partner columns never fall on the diagonal.
struct tile_mask {
  mask_band band[3];
  int bands = 0;
  index_t first = 0, last = 0;  // hull of the rows of all bands
  /// The first masked column of local row r, or -1.
  index_t col(index_t r) const noexcept {
    for (int k = 0; k < bands; ++k)
      if (band[k].col(r) >= 0) return band[k].col(r);
    return -1;
  }
  /// Is local entry (r, c) masked?
  bool masked(index_t r, index_t c) const noexcept {
    for (int k = 0; k < bands; ++k)
      if (band[k].col(r) == c) return true;
    return false;
  }
  /// Zeroes the masked entries of row r in e (indexed by column); true when there were any.
  template <class V>
  bool zero_row(index_t r, V& e) const noexcept {
    bool any = false;
    for (int k = 0; k < bands; ++k) {
      const index_t c = band[k].col(r);
      if (c >= 0) {
        e(c) = 0;
        any = true;
      }
    }
    return any;
  }
  /// Applies f(r, c) to every masked entry.
  template <class F>
  void for_each(F&& f) const {
    for (int k = 0; k < bands; ++k)
      for (index_t r = band[k].first; r < band[k].last; ++r) f(r, r + band[k].offset);
  }
};

namespace tiling_detail {
/// Adds the band of global entries (g, g + shift) for g in [row_lo, row_hi) that falls in (I, J).
inline void add_band(tile_mask& m, const row_block& I, const row_block& J, index_t shift,
                     index_t row_lo, index_t row_hi) noexcept {
  // Rows g with g in I, g + shift in J and g in [row_lo, row_hi).
  auto mx = [](index_t a, index_t b) { return a > b ? a : b; };
  auto mn = [](index_t a, index_t b) { return a < b ? a : b; };
  const index_t lo = mx(mx(I.global, J.global - shift), row_lo);
  const index_t hi = mn(mn(I.global + I.rows, J.global + J.rows - shift), row_hi);
  if (hi <= lo) return;
  mask_band& b = m.band[m.bands];
  b.first = lo - I.global;
  b.last = hi - I.global;
  b.offset = I.global + shift - J.global;
  if (m.bands == 0 || b.first < m.first) m.first = b.first;
  if (m.bands == 0 || b.last > m.last) m.last = b.last;
  ++m.bands;
}
}  // namespace tiling_detail

template <class T>
tile_mask diagonal_mask(const pairwise_problem<T>& p, const row_block& I,
                        const row_block& J) noexcept {
  tile_mask m;
  constexpr index_t any = std::numeric_limits<index_t>::max();
  // Global row g is masked in column g: local row r = g - I.global, column g - J.global.
  if (p.self || p.mask_diagonal) tiling_detail::add_band(m, I, J, 0, -any, any);
  if (p.partner_offset > 0) {
    const index_t off = p.partner_offset;
    tiling_detail::add_band(m, I, J, off, 0, off);
    tiling_detail::add_band(m, I, J, -off, off, 2 * off);
  }
  return m;
}

/// S_IJ = scale X_I Y_J^T into `s`, with masked entries set to -inf.
template <class T>
void compute_logits(const pairwise_problem<T>& p, const row_block& bi, const row_block& bj,
                    const tile_mask& mask, tile_gemm<T>& gemm, tile_map<T>& s) {
  const matrix_view<const T> xi = p.x[bi.segment].middle_rows(bi.first, bi.rows);
  const matrix_view<const T> yj = p.y[bj.segment].middle_rows(bj.first, bj.rows);
  gemm.abt(bi.rows, bj.rows, p.dim(), p.scale, xi.data(), leading_dim(xi), yj.data(),
           leading_dim(yj), s.data(), s.outerStride());
  mask.for_each([&](index_t r, index_t c) { s(r, c) = -infinity<T>(); });
}

/// The visiting order: row blocks in order; for each, its column blocks [lo, hi) cut into
/// sweep_chunks contiguous chunks.
struct sweep_plan {
  std::vector<row_block> xb, yb;
  bool self = false;
  std::size_t first_col(std::size_t bi) const noexcept { return self ? bi : 0; }
  std::size_t chunk_begin(std::size_t bi, int c) const noexcept {
    const std::size_t lo = first_col(bi), n = yb.size() - lo;
    return lo + n * static_cast<std::size_t>(c) / sweep_chunks;
  }
  /// Cache slot of tile (bi, bj).
  std::size_t slot(std::size_t bi, std::size_t bj) const noexcept {
    const std::size_t ny = yb.size();
    return self ? bi * ny - bi * (bi - 1) / 2 + (bj - bi) : bi * ny + bj;
  }
};

template <class T>
sweep_plan make_plan(const pairwise_problem<T>& p) {
  auto b = make_tiling(p);
  sweep_plan plan;
  plan.xb = std::move(b.first);
  plan.yb = std::move(b.second);
  plan.self = p.self;
  return plan;
}

/// Threads worth starting for this sweep (core/parallel.hpp: one thread below parallel_min_work
/// multiply-adds; results are the same for any count, so this is only about speed).
template <class T>
int sweep_threads(const pairwise_problem<T>& p) noexcept {
  const double work = double(p.x_rows()) * double(p.y_rows()) * double(p.dim());
  return work < parallel_min_work ? 1 : p.threads;
}

/// Output of the forward sweep. `row`/`col` may be null (direction not needed); in self mode
/// they are the same array. `row_target`/`col_target` receive the label-matched logit sums.
template <class T>
struct pairwise_stats {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
  // With p.extra_scales: the statistics of gamma_k s per row and per column (null: not needed;
  // in self mode the same arrays). Their max is in units of gamma_k s, their moment in units of s.
  online_softmax<double>* row_scaled[2] = {nullptr, nullptr};
  online_softmax<double>* col_scaled[2] = {nullptr, nullptr};
};

/// Folds one logit tile into statistics: rows into row_part (this chunk's partial for block I),
/// columns straight into out.col (one writer per column block and row block).
template <class T>
void forward_tile(const pairwise_problem<T>& p, const pairwise_stats<T>& out, const row_block& I,
                  const row_block& J, const tile_mask& mask, bool diag, const tile_map<T>& s,
                  const thread_scratch<T>& ws, online_softmax<double>* row_part,
                  double* row_target_part, online_softmax<double>* const* row_scaled_part) {
  constexpr T lowest = std::numeric_limits<T>::lowest();
  tile_vec<T> e(ws.v[0], J.rows);
  if (out.row) {
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      const T m = sr.maxCoeff();
      if (m == -infinity<T>()) continue;  // a 1-column tile whose entry is masked
      e = (sr - m).exp();
      // Eigen's vectorised exp clamps its argument, so exp(-inf) is tiny, not 0: zero the
      // masked entries explicitly, and clamp their -inf so that 0 * s stays 0.
      bool masked = mask.zero_row(r, e);
      if (p.exclude_label_matches) {
        e = (sr == -infinity<T>()).select(T(0), e);
        masked = true;
      }
      const T mom = masked ? (e * sr.max(lowest)).sum() : (e * sr).sum();
      online_softmax<double> t;
      t.max = m;
      t.sum = e.sum();
      t.moment = mom;
      row_part[r].merge(t);
    }
  }
  for (int k = 0; k < p.extra_scales; ++k) {
    if (!out.row_scaled[k]) continue;
    const T gk = p.gamma[k];
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      const T m = sr.maxCoeff();
      if (m == -infinity<T>()) continue;
      e = (gk * sr - gk * m).exp();
      mask.zero_row(r, e);
      online_softmax<double> t;
      t.max = gk * m;
      t.sum = e.sum();
      t.moment = (e * sr.max(lowest)).sum();
      row_scaled_part[k][r].merge(t);
    }
  }
  if (out.col && !diag) {
    tile_vec<T> cmax(ws.v[1], J.rows), csum(ws.v[2], J.rows), cmom(ws.v[3], J.rows);
    cmax = s.row(0).array();
    for (index_t r = 1; r < I.rows; ++r) cmax = cmax.max(s.row(r).array());
    csum.setZero();
    cmom.setZero();
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      e = (sr - cmax).exp();
      if (p.exclude_label_matches) e = (sr == -infinity<T>()).select(T(0), e);
      if (mask.zero_row(r, e) || p.exclude_label_matches) {
        csum += e;
        cmom += e * sr.max(lowest);
      } else {
        csum += e;
        cmom += e * sr;
      }
    }
    for (index_t c = 0; c < J.rows; ++c) {
      if (cmax(c) == -infinity<T>()) continue;  // a 1-row tile whose entries are masked
      online_softmax<double> t;
      t.max = cmax(c);
      t.sum = csum(c);
      t.moment = cmom(c);
      out.col[J.global + c].merge(t);
    }
  }
  for (int k = 0; k < p.extra_scales; ++k) {
    if (!out.col_scaled[k] || diag) continue;
    const T gk = p.gamma[k];
    tile_vec<T> cmax(ws.v[1], J.rows), csum(ws.v[2], J.rows), cmom(ws.v[3], J.rows);
    cmax = s.row(0).array();
    for (index_t r = 1; r < I.rows; ++r) cmax = cmax.max(s.row(r).array());
    csum.setZero();
    cmom.setZero();
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      e = (gk * sr - gk * cmax).exp();
      mask.zero_row(r, e);
      csum += e;
      cmom += e * sr.max(lowest);
    }
    for (index_t c = 0; c < J.rows; ++c) {
      if (cmax(c) == -infinity<T>()) continue;
      online_softmax<double> t;
      t.max = gk * cmax(c);
      t.sum = csum(c);
      t.moment = cmom(c);
      out.col_scaled[k][J.global + c].merge(t);
    }
  }
  if (p.label_x && (out.row_target || out.col_target)) {
    for (index_t r = 0; r < I.rows; ++r) {
      const std::int64_t li = p.label_x[I.global + r];
      for (index_t c = 0; c < J.rows; ++c) {
        if (p.label_y[J.global + c] != li || mask.masked(r, c)) continue;
        if (out.row_target) row_target_part[r] += s(r, c);
        if (out.col_target && !diag) out.col_target[J.global + c] += s(r, c);
      }
    }
  }
}

/// Sets the label-matched entries of a tile to -inf (p.exclude_label_matches).
template <class T>
void mask_label_matches(const pairwise_problem<T>& p, const row_block& I, const row_block& J,
                        tile_map<T>& s) {
  for (index_t r = 0; r < I.rows; ++r) {
    const std::int64_t li = p.label_x[I.global + r];
    for (index_t c = 0; c < J.rows; ++c)
      if (p.label_y[J.global + c] == li) s(r, c) = -infinity<T>();
  }
}

template <class T>
void pairwise_forward(const pairwise_problem<T>& p, const pairwise_stats<T>& out, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const sweep_plan plan = make_plan(p);
  const sweep_shape shape = sweep_shape_of(p);
  auto scratch = carve_thread_scratch<T>(ar, shape);
  auto* row_part =
      ar.take<online_softmax<double>>(sweep_chunks * static_cast<std::size_t>(shape.tr));
  auto* target_part = ar.take<double>(sweep_chunks * static_cast<std::size_t>(shape.tr));
  online_softmax<double>* scaled_part[2] = {nullptr, nullptr};
  for (int k = 0; k < p.extra_scales; ++k)
    scaled_part[k] =
        ar.take<online_softmax<double>>(sweep_chunks * static_cast<std::size_t>(shape.tr));
  const std::size_t slot_elems = static_cast<std::size_t>(shape.tr * shape.tc);
  const int threads = sweep_threads(p);

  for (std::size_t bi = 0; bi < plan.xb.size(); ++bi) {
    const row_block& I = plan.xb[bi];
    parallel_for(sweep_chunks, threads, [&](index_t ci, int t) {
      const int c = static_cast<int>(ci);
      online_softmax<double>* rp = row_part + uz(c * shape.tr);
      double* tp = target_part + uz(c * shape.tr);
      online_softmax<double>* sp[2] = {nullptr, nullptr};
      for (int k = 0; k < p.extra_scales; ++k) sp[k] = scaled_part[k] + uz(c * shape.tr);
      for (index_t r = 0; r < I.rows; ++r) {
        rp[r] = online_softmax<double>();
        tp[r] = 0;
        for (int k = 0; k < p.extra_scales; ++k) sp[k][r] = online_softmax<double>();
      }
      for (std::size_t bj = plan.chunk_begin(bi, c); bj < plan.chunk_begin(bi, c + 1); ++bj) {
        const row_block& J = plan.yb[bj];
        const tile_mask mask = diagonal_mask(p, I, J);
        T* buf = p.cache ? p.cache + plan.slot(bi, bj) * slot_elems : scratch[uz(t)].tile;
        tile_map<T> s(buf, I.rows, J.rows, Eigen::OuterStride<>(shape.tc));
        compute_logits(p, I, J, mask, scratch[uz(t)].gemm, s);
        if (p.exclude_label_matches) mask_label_matches(p, I, J, s);
        forward_tile(p, out, I, J, mask, p.self && bi == bj, s, scratch[uz(t)], rp, tp, sp);
      }
    });
    for (int c = 0; c < sweep_chunks; ++c) {  // fixed merge order
      if (plan.chunk_begin(bi, c) == plan.chunk_begin(bi, c + 1)) continue;
      for (index_t r = 0; r < I.rows; ++r) {
        if (out.row) out.row[I.global + r].merge(row_part[uz(c * shape.tr + r)]);
        if (out.row_target) out.row_target[I.global + r] += target_part[uz(c * shape.tr + r)];
        for (int k = 0; k < p.extra_scales; ++k)
          if (out.row_scaled[k])
            out.row_scaled[k][I.global + r].merge(scaled_part[k][uz(c * shape.tr + r)]);
      }
    }
  }
}

/// Per-anchor coefficients of the backward sweep, all of length rows(X) (row_*) or rows(Y)
/// (col_*); a null row_w/col_w drops that direction. The logit gradient of a tile is
///   G_ij = row_w_i exp(s_ij - row_lse_i) + col_w_j exp(s_ij - col_lse_j)
///          - [label_i == label_j] (row_q_i + col_q_j)
/// which already folds in the mean/sum weights, the 1/2 of the symmetric loss and the upstream.
template <class T>
struct pairwise_coefficients {
  const T* row_lse = nullptr;
  const T* row_w = nullptr;
  const T* col_lse = nullptr;
  const T* col_w = nullptr;
  const T* row_q = nullptr;  // label targets only (with labels)
  const T* col_q = nullptr;
  // With p.extra_scales == 2 and no plain term (row_w and col_w null) the logit gradient is
  // sum_k row_scaled_w_k,i exp(gamma_k s_ij - row_scaled_lse_k,i) + the same per column (null:
  // that term is absent).
  const T* row_scaled_w[2] = {nullptr, nullptr};
  const T* row_scaled_lse[2] = {nullptr, nullptr};
  const T* col_scaled_w[2] = {nullptr, nullptr};
  const T* col_scaled_lse[2] = {nullptr, nullptr};
};

/// The scaled terms of one gradient row (p.extra_scales == 2, no plain row/column term):
///   sum_k row_scaled_w_k,i exp(gamma_k s_ij - row_scaled_lse_k,i) + the same per column,
/// written in one expression, so that `gr` may be the memory of `sr`.
template <class T, class SR, class GR>
void scaled_gradient_row(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                         const row_block& I, const row_block& J, index_t r, const SR& sr, GR& gr) {
  using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
  if (p.extra_scales != 2) {
    gr.setZero();
    return;
  }
  const T g0 = p.gamma[0], g1 = p.gamma[1];
  const index_t i = I.global + r;
  const T w0 = k.row_scaled_w[0] ? k.row_scaled_w[0][i] : T(0);
  const T w1 = k.row_scaled_w[1] ? k.row_scaled_w[1][i] : T(0);
  const T l0 = k.row_scaled_w[0] ? k.row_scaled_lse[0][i] : T(0);
  const T l1 = k.row_scaled_w[1] ? k.row_scaled_lse[1][i] : T(0);
  if (k.col_scaled_w[0] && k.col_scaled_w[1]) {
    const cvec wc0(k.col_scaled_w[0] + J.global, J.rows),
        lc0(k.col_scaled_lse[0] + J.global, J.rows);
    const cvec wc1(k.col_scaled_w[1] + J.global, J.rows),
        lc1(k.col_scaled_lse[1] + J.global, J.rows);
    gr = w0 * (g0 * sr - l0).exp() + w1 * (g1 * sr - l1).exp() + wc0 * (g0 * sr - lc0).exp() +
         wc1 * (g1 * sr - lc1).exp();
  } else {
    gr = w0 * (g0 * sr - l0).exp() + w1 * (g1 * sr - l1).exp();
  }
}

/// G for one tile, from the logits `s` into `g` (which may be the same memory).
template <class T>
void gradient_tile(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                   const row_block& I, const row_block& J, const tile_mask& mask,
                   const tile_map<T>& s, tile_map<T>& g) {
  using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
  const bool has_row = k.row_w != nullptr, has_col = k.col_w != nullptr;
  for (index_t r = 0; r < I.rows; ++r) {
    const auto sr = s.row(r).array();
    auto gr = g.row(r).array();
    const T wr = has_row ? k.row_w[I.global + r] : T(0);
    const T lr = has_row ? k.row_lse[I.global + r] : T(0);
    if (has_col) {
      const cvec wc(k.col_w + J.global, J.rows), lc(k.col_lse + J.global, J.rows);
      if (has_row)
        gr = wr * (sr - lr).exp() + wc * (sr - lc).exp();
      else
        gr = wc * (sr - lc).exp();
    } else if (has_row) {
      gr = wr * (sr - lr).exp();
    } else {
      scaled_gradient_row(p, k, I, J, r, sr, gr);  // g may alias s: one expression per row
    }
  }
  // exp(-inf) is not exactly 0 in Eigen's exp.
  mask.for_each([&](index_t r, index_t c) { g(r, c) = 0; });
  if (p.label_x) {
    for (index_t r = 0; r < I.rows; ++r) {
      const std::int64_t li = p.label_x[I.global + r];
      const T qr = k.row_q ? k.row_q[I.global + r] : T(0);
      for (index_t c = 0; c < J.rows; ++c) {
        if (p.label_y[J.global + c] != li || mask.masked(r, c)) continue;
        g(r, c) -= qr + (k.col_q ? k.col_q[J.global + c] : T(0));
      }
    }
  }
}

/// The backward sweep with any gradient kernel: for every visited tile (the logits recomputed, or
/// read from p.cache) kernel(I, J, mask, s, g, chunk) writes the logit gradient G_IJ into g (which
/// is the memory of s when not cached; the kernel must read s[r, c] before writing g[r, c]);
/// `chunk` in [0, sweep_chunks) is the column chunk, owned by one thread at a time and visited in
/// the same order for any thread count, so per-chunk accumulators are deterministic. Then adds
/// scale * G Y into the segments of dX and scale * G^T X into those of dY (in self mode dY == dX
/// and G is symmetrised on the fly); with dx null no product is formed (a forward that only
/// folds tiles), and a dY segment with a null data pointer (or dy null) gets no product (an input
/// that is not differentiated, e.g. a queue of negatives). The outputs must be gemm_ready.
template <class T, class Kernel>
void pairwise_sweep_tiles(const pairwise_problem<T>& p, Kernel&& kernel, const matrix_view<T>* dx,
                          const matrix_view<T>* dy, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const sweep_plan plan = make_plan(p);
  const sweep_shape shape = sweep_shape_of(p);
  auto scratch = carve_thread_scratch<T>(ar, shape);
  T* dx_part = ar.take<T>(sweep_chunks * static_cast<std::size_t>(shape.tr * shape.d));
  const std::size_t slot_elems = static_cast<std::size_t>(shape.tr * shape.tc);
  const index_t d = shape.d;
  const int threads = sweep_threads(p);
  const bool products = dx != nullptr;

  for (std::size_t bi = 0; bi < plan.xb.size(); ++bi) {
    const row_block& I = plan.xb[bi];
    const matrix_view<const T> xi = p.x[I.segment].middle_rows(I.first, I.rows);
    parallel_for(sweep_chunks, threads, [&](index_t ci, int t) {
      const int c = static_cast<int>(ci);
      if (plan.chunk_begin(bi, c) == plan.chunk_begin(bi, c + 1)) return;
      T* part = dx_part + uz(c * shape.tr * d);
      if (products) std::fill(part, part + I.rows * d, T(0));
      tile_gemm<T>& gemm = scratch[uz(t)].gemm;
      for (std::size_t bj = plan.chunk_begin(bi, c); bj < plan.chunk_begin(bi, c + 1); ++bj) {
        const row_block& J = plan.yb[bj];
        const bool diag = p.self && bi == bj;
        const tile_mask mask = diagonal_mask(p, I, J);
        tile_map<T> g(scratch[uz(t)].tile, I.rows, J.rows, Eigen::OuterStride<>(shape.tc));
        if (p.cache) {
          const tile_map<T> s(p.cache + plan.slot(bi, bj) * slot_elems, I.rows, J.rows,
                              Eigen::OuterStride<>(shape.tc));
          kernel(I, J, mask, s, g, c);
        } else {
          compute_logits(p, I, J, mask, gemm, g);
          kernel(I, J, mask, g, g, c);  // in place: coefficient-wise
        }
        if (!products) continue;
        const matrix_view<const T> yj = p.y[J.segment].middle_rows(J.first, J.rows);
        gemm.ab_add(I.rows, d, J.rows, p.scale, g.data(), g.outerStride(), yj.data(),
                    leading_dim(yj), part, d);
        if (!diag && dy != nullptr && dy[J.segment].data() != nullptr) {  // null: no dY
          const matrix_view<T> dyj = dy[J.segment].middle_rows(J.first, J.rows);
          gemm.atb_add(J.rows, d, I.rows, p.scale, g.data(), g.outerStride(), xi.data(),
                       leading_dim(xi), dyj.data(), leading_dim(dyj));
        }
      }
    });
    if (!products) continue;
    auto dxi = map_rows_mut<T>(dx[I.segment].middle_rows(I.first, I.rows));
    for (int c = 0; c < sweep_chunks; ++c) {  // fixed reduction order
      if (plan.chunk_begin(bi, c) == plan.chunk_begin(bi, c + 1)) continue;
      dxi += row_map<T>(dx_part + uz(c * shape.tr * d), I.rows, d, Eigen::OuterStride<>(d));
    }
  }
}

/// Adds scale * G Y into the segments of dX and scale * G^T X into those of dY (in self mode
/// dY == dX and G is symmetrised on the fly), G from the softmax coefficients k (gradient_tile).
/// The outputs must be gemm_ready. With p.cache set, the tiles written by pairwise_forward are
/// read instead of recomputed.
template <class T>
void pairwise_backward(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                       const matrix_view<T>* dx, const matrix_view<T>* dy, arena& ar) {
  pairwise_sweep_tiles(
      p,
      [&](const row_block& I, const row_block& J, const tile_mask& mask, const tile_map<T>& s,
          tile_map<T>& g, int) { gradient_tile(p, k, I, J, mask, s, g); },
      dx, dy, ar);
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_TILING_HPP
