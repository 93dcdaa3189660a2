#ifndef CONTRASTIVE_CORE_TILING_HPP
#define CONTRASTIVE_CORE_TILING_HPP

// The row-tile x column-tile sweep shared by the pairwise losses. S = scale * X Y^T is never
// stored whole: each Tr x Tc tile is computed, folded into O(N) statistics and dropped
// (forward), or recomputed and turned into gradient products (backward).
//
// X and Y are "virtual" matrices made of row segments (InfoNCE: X = A, Y = B; NT-Xent: X = Y =
// [A; B], which is `self` mode: the diagonal is masked and only tiles J >= I are visited, each
// serving the rows of I through its rows and the rows of J through its columns).

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "contrastive/core/config.hpp"
#include "contrastive/core/gemm.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/workspace.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// One tile-sized block of rows of a virtual matrix.
struct row_block {
  int segment;        // which segment it lies in
  index_t first;      // first row inside that segment
  index_t rows;       // number of rows
  index_t global;     // index of its first row in the virtual matrix
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
  T scale = 1;  // lambda = 1 / temperature
  index_t tile_rows = 256, tile_cols = 256;
  // Optional labels per virtual row: s_ij is a positive when label_x[i] == label_y[j] (i != j
  // in self mode). Without labels the targets are handled outside the sweep in O(N D).
  const std::int64_t* label_x = nullptr;
  const std::int64_t* label_y = nullptr;

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

/// Row blocks of X and of Y. In self mode one blocking serves both sides (square tiles of
/// min(tile_rows, tile_cols)), so that diagonal tiles are exactly the pairs I == J.
template <class T>
std::pair<std::vector<row_block>, std::vector<row_block>> make_tiling(const pairwise_problem<T>& p) {
  std::vector<index_t> xr(p.x_segments), yr(p.y_segments);
  for (int s = 0; s < p.x_segments; ++s) xr[s] = p.x[s].rows();
  for (int s = 0; s < p.y_segments; ++s) yr[s] = p.y[s].rows();
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
                                              index_t max_x_segment, index_t max_y_segment) noexcept {
  auto lo = [](index_t a, index_t b) { return a < b ? a : b; };
  if (self) {
    const index_t t = lo(lo(tile_rows, tile_cols), max_x_segment);
    return {t, t};
  }
  return {lo(tile_rows, max_x_segment), lo(tile_cols, max_y_segment)};
}

/// Scratch for one sweep: the logit tile plus four tile-length vectors.
template <class T>
constexpr std::size_t pairwise_workspace_bytes(std::pair<index_t, index_t> tile) noexcept {
  const auto tr = static_cast<std::size_t>(tile.first), tc = static_cast<std::size_t>(tile.second);
  return array_bytes<T>(tr * tc) + 4 * array_bytes<T>(tc);
}

template <class T>
std::pair<index_t, index_t> tile_shape(const pairwise_problem<T>& p) noexcept {
  index_t mx = 0, my = 0;
  for (int s = 0; s < p.x_segments; ++s) mx = p.x[s].rows() > mx ? p.x[s].rows() : mx;
  for (int s = 0; s < p.y_segments; ++s) my = p.y[s].rows() > my ? p.y[s].rows() : my;
  return tile_shape(p.tile_rows, p.tile_cols, p.self, mx, my);
}

template <class T>
struct pairwise_scratch {
  using tile_map = Eigen::Map<row_major_matrix<T>, Eigen::Aligned16, Eigen::OuterStride<>>;
  using vec = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>, Eigen::Aligned16>;
  T* tile;
  T* v0;
  T* v1;
  T* v2;
  T* v3;
  index_t tile_cols;

  pairwise_scratch(arena& ar, index_t tr, index_t tc)
      : tile(ar.take<T>(static_cast<std::size_t>(tr * tc))),
        v0(ar.take<T>(static_cast<std::size_t>(tc))),
        v1(ar.take<T>(static_cast<std::size_t>(tc))),
        v2(ar.take<T>(static_cast<std::size_t>(tc))),
        v3(ar.take<T>(static_cast<std::size_t>(tc))),
        tile_cols(tc) {}

  tile_map logits(index_t r, index_t c) const noexcept {
    return tile_map(tile, r, c, Eigen::OuterStride<>(tile_cols));
  }
};

/// The masked entries of tile (I, J): local (r, r + offset) for r in [first, last).
struct tile_mask {
  index_t first = 0, last = 0, offset = 0;
  bool any() const noexcept { return last > first; }
  /// Masked column of local row r, or -1.
  index_t col(index_t r) const noexcept { return r >= first && r < last ? r + offset : -1; }
};

template <class T>
tile_mask diagonal_mask(const pairwise_problem<T>& p, const row_block& I, const row_block& J) noexcept {
  tile_mask m;
  if (!(p.self || p.mask_diagonal)) return m;
  // Global row g is masked in column g: local row r = g - I.global, column g - J.global.
  const index_t lo = I.global > J.global ? I.global : J.global;
  const index_t hi = I.global + I.rows < J.global + J.rows ? I.global + I.rows : J.global + J.rows;
  if (hi <= lo) return m;
  m.first = lo - I.global;
  m.last = hi - I.global;
  m.offset = I.global - J.global;
  return m;
}

/// S_IJ = scale X_I Y_J^T into the scratch tile, with masked entries set to -inf.
template <class T>
void compute_logits(const pairwise_problem<T>& p, const row_block& bi, const row_block& bj,
                    const tile_mask& mask, const pairwise_scratch<T>& ws) {
  auto s = ws.logits(bi.rows, bj.rows);
  const auto xi = map_rows<T>(p.x[bi.segment].middle_rows(bi.first, bi.rows));
  const auto yj = map_rows<T>(p.y[bj.segment].middle_rows(bj.first, bj.rows));
  s.noalias() = p.scale * (xi * yj.transpose());
  for (index_t r = mask.first; r < mask.last; ++r) s(r, r + mask.offset) = -infinity<T>();
}

/// Output of the forward sweep. `row`/`col` may be null (direction not needed); in self mode
/// they are the same array. `row_target`/`col_target` receive the label-matched logit sums.
template <class T>
struct pairwise_stats {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
};

template <class T>
void pairwise_forward(const pairwise_problem<T>& p, const pairwise_stats<T>& out, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const auto blocks = make_tiling(p);
  const auto& xb = blocks.first;
  const auto& yb = blocks.second;
  const auto shape = tile_shape(p);
  pairwise_scratch<T> ws(ar, shape.first, shape.second);
  constexpr T lowest = std::numeric_limits<T>::lowest();

  for (std::size_t bi = 0; bi < xb.size(); ++bi) {
    for (std::size_t bj = p.self ? bi : 0; bj < yb.size(); ++bj) {
      const row_block& I = xb[bi];
      const row_block& J = yb[bj];
      const bool diag = p.self && bi == bj;  // serves its rows only (S_II is symmetric)
      const tile_mask mask = diagonal_mask(p, I, J);
      compute_logits(p, I, J, mask, ws);
      const auto s = ws.logits(I.rows, J.rows);
      typename pairwise_scratch<T>::vec e(ws.v0, J.rows);

      if (out.row) {
        for (index_t r = 0; r < I.rows; ++r) {
          const auto sr = s.row(r).array();
          const T m = sr.maxCoeff();
          if (m == -infinity<T>()) continue;  // a 1-column tile whose entry is masked
          e = (sr - m).exp();
          // Eigen's vectorised exp clamps its argument, so exp(-inf) is tiny, not 0: zero the
          // masked entry explicitly, and clamp its -inf so that 0 * s stays 0.
          const index_t mc = mask.col(r);
          if (mc >= 0) e(mc) = 0;
          const T mom = mc >= 0 ? (e * sr.max(lowest)).sum() : (e * sr).sum();
          online_softmax<double> t;
          t.max = m;
          t.sum = e.sum();
          t.moment = mom;
          out.row[I.global + r].merge(t);
        }
      }
      if (out.col && !diag) {
        typename pairwise_scratch<T>::vec cmax(ws.v1, J.rows), csum(ws.v2, J.rows),
            cmom(ws.v3, J.rows);
        cmax = s.row(0).array();
        for (index_t r = 1; r < I.rows; ++r) cmax = cmax.max(s.row(r).array());
        csum.setZero();
        cmom.setZero();
        for (index_t r = 0; r < I.rows; ++r) {
          const auto sr = s.row(r).array();
          e = (sr - cmax).exp();
          const index_t mc = mask.col(r);
          if (mc >= 0) {
            e(mc) = 0;
            csum += e;
            cmom += e * sr.max(lowest);
          } else {
            csum += e;
            cmom += e * sr;
          }
        }
        for (index_t c = 0; c < J.rows; ++c) {
          if (cmax(c) == -infinity<T>()) continue;  // a 1-row tile whose entry is masked
          online_softmax<double> t;
          t.max = cmax(c);
          t.sum = csum(c);
          t.moment = cmom(c);
          out.col[J.global + c].merge(t);
        }
      }
      if (p.label_x) {
        for (index_t r = 0; r < I.rows; ++r) {
          const std::int64_t li = p.label_x[I.global + r];
          for (index_t c = 0; c < J.rows; ++c) {
            if (p.label_y[J.global + c] != li || mask.col(r) == c) continue;
            if (out.row_target) out.row_target[I.global + r] += s(r, c);
            if (out.col_target && !diag) out.col_target[J.global + c] += s(r, c);
          }
        }
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
};

/// Adds scale * G Y into the segments of dX and scale * G^T X into those of dY (in self mode
/// dY == dX and G is symmetrised on the fly). The outputs must be gemm_ready.
template <class T>
void pairwise_backward(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                       const matrix_view<T>* dx, const matrix_view<T>* dy, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const auto blocks = make_tiling(p);
  const auto& xb = blocks.first;
  const auto& yb = blocks.second;
  const auto shape = tile_shape(p);
  pairwise_scratch<T> ws(ar, shape.first, shape.second);
  using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

  for (std::size_t bi = 0; bi < xb.size(); ++bi) {
    for (std::size_t bj = p.self ? bi : 0; bj < yb.size(); ++bj) {
      const row_block& I = xb[bi];
      const row_block& J = yb[bj];
      const bool diag = p.self && bi == bj;
      const tile_mask mask = diagonal_mask(p, I, J);
      compute_logits(p, I, J, mask, ws);
      auto g = ws.logits(I.rows, J.rows);  // overwritten in place by G
      const bool has_row = k.row_w != nullptr, has_col = k.col_w != nullptr;
      for (index_t r = 0; r < I.rows; ++r) {
        auto gr = g.row(r).array();
        const T wr = has_row ? k.row_w[I.global + r] : T(0);
        const T lr = has_row ? k.row_lse[I.global + r] : T(0);
        if (has_col) {
          const cvec wc(k.col_w + J.global, J.rows), lc(k.col_lse + J.global, J.rows);
          if (has_row)
            gr = wr * (gr - lr).exp() + wc * (gr - lc).exp();
          else
            gr = wc * (gr - lc).exp();
        } else {
          gr = wr * (gr - lr).exp();
        }
      }
      // exp(-inf) is not exactly 0 in Eigen's exp.
      for (index_t r = mask.first; r < mask.last; ++r) g(r, r + mask.offset) = 0;
      if (p.label_x) {
        for (index_t r = 0; r < I.rows; ++r) {
          const std::int64_t li = p.label_x[I.global + r];
          const T qr = k.row_q ? k.row_q[I.global + r] : T(0);
          for (index_t c = 0; c < J.rows; ++c) {
            if (p.label_y[J.global + c] != li || mask.col(r) == c) continue;
            g(r, c) -= qr + (k.col_q ? k.col_q[J.global + c] : T(0));
          }
        }
      }
      const auto xi = map_rows<T>(p.x[I.segment].middle_rows(I.first, I.rows));
      const auto yj = map_rows<T>(p.y[J.segment].middle_rows(J.first, J.rows));
      auto dxi = map_rows_mut<T>(dx[I.segment].middle_rows(I.first, I.rows));
      dxi.noalias() += p.scale * (g * yj);
      if (!diag) {
        auto dyj = map_rows_mut<T>(dy[J.segment].middle_rows(J.first, J.rows));
        dyj.noalias() += p.scale * (g.transpose() * xi);
      }
    }
  }
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_TILING_HPP
