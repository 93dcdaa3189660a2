#ifndef CONTRASTIVE_CORE_BLOCK_SWEEP_HPP
#define CONTRASTIVE_CORE_BLOCK_SWEEP_HPP

// The plan of the GPU block sweep (cuda/detail/block_sweep.cuh): the pairwise losses' logit matrix
// S = scale X Y^T cut into large blocks (about 4096 x 4096, shrunk to a memory budget), each
// computed by one GEMM into a buffer and consumed by memory-bound epilogues. This header is the
// host side that needs no GPU: the blocks and their order, the workspace layout and its size,
// the description of each loss on the sweep, and the driver loop that both executors run (the
// CUDA one, and the host emulator of core/block_sweep_emulator.hpp that the CPU tests check
// against the CPU losses). Host-only, Eigen-free, CUDA-free. The per-entry epilogue math is in
// core/math.hpp (pairwise_*), compiled for host and device.
//
// Forward: for each block in order, S_IJ -> per-chunk (row, column) partials (pairwise_partial
// over `chunk` candidates) -> merged chunk by chunk, block by block, into the O(N) statistics:
// a fixed order, no atomics, so results are deterministic. Backward: S_IJ again -> G_IJ (the
// logit gradient, scaled by 2^k against fp16 subnormals) -> dX_I += G Y_J and dY_J += G^T X_I by
// GEMMs accumulating in fp32, each accumulator written by one stream in plan order.
//
// Self mode (NT-Xent, X = Y = [A; B]): only blocks J >= I are visited; an off-diagonal block
// serves the rows of I through its rows and those of J through its columns; diagonal blocks
// (I == J) only through their rows.

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/losses/feature_separation_options.hpp"
#include "contrastive/losses/gamma_nce_options.hpp"
#include "contrastive/losses/info_nce_options.hpp"
#include "contrastive/losses/nt_xent_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// How the block sweep may use memory. The defaults keep the extra device memory of an
/// N = 32768, D = 512 CLIP call (bf16 or fp32) under 0.25 GiB.
struct block_sweep_options {
  index_t block_rows = 4096;  // target block extents; halved (the larger first) to fit the
  index_t block_cols = 4096;  // budget, down to min_block
  index_t min_block = 256;
  index_t chunk = 64;  // candidates per epilogue partial (rows of a column partial, and so on)
  std::size_t memory_budget = std::size_t(1) << 28;  // bytes of workspace
  int slots = 2;  // logit / gradient block buffers in flight (GEMM of block k+1 || epilogue of k)
  std::size_t gemm_workspace = std::size_t(8) << 20;  // per GEMM stream (cuBLASLt), bytes
};

/// Byte sizes of the elements the workspace holds.
struct block_element_sizes {
  std::size_t logit = 4;  // S blocks (fp32 on the GPU)
  std::size_t grad = 4;   // G blocks (input precision for bf16 / fp16, fp32 for fp32 / tf32)
  std::size_t stat = 4;   // one field of pairwise_partial and of the backward coefficients
  std::size_t acc = 4;    // gradient accumulators (fp32)
};

/// One row block of the virtual X (or Y); never straddles the segment boundary `split`.
struct block_range {
  index_t first = 0, rows = 0;
};

/// One block of the logit matrix, in visiting order.
struct sweep_block {
  index_t bi = 0, bj = 0;      // row band and column band
  index_t row0 = 0, rows = 0;  // global rows of X
  index_t col0 = 0, cols = 0;  // global rows of Y (columns of S)
  bool diag = false;           // self mode, I == J: rows only, G used once
  bool has_diagonal = false;   // holds some (i, i) (masked when the problem masks it)
  bool band_end = false;       // the last block of its row band
};

/// A byte range of the workspace (offsets from its 256-byte aligned start).
struct ws_region {
  std::size_t offset = 0, bytes = 0;
};

constexpr std::size_t block_ws_align = 256;
constexpr std::size_t block_ws_round(std::size_t b) noexcept {
  return (b + block_ws_align - 1) / block_ws_align * block_ws_align;
}

/// A pairwise loss as the block sweep sees it: virtual X (nx rows, segment boundary `split`,
/// 0 for none) and Y, the mask, the positives, the statistics it needs, the targets.
struct block_problem {
  index_t nx = 0, ny = 0, d = 0, split = 0;
  bool self = false;           // X == Y, blocks J >= I (NT-Xent)
  bool mask_diagonal = false;  // s_ii is no candidate
  bool columns = false;        // column statistics and column anchors (CLIP's b -> a)
  index_t positive_shift = 0;  // without labels: positive of row i is column (i + shift) % ny
  bool labelled = false;
  index_t label_period = 0;
  double scale = 1;             // 1 / temperature
  double eps = 0;               // label smoothing
  double row_candidates = 0;    // candidates of a row anchor (for the smoothing mean)
  double col_candidates = 0;    // of a column anchor
  double direction_weight = 1;  // 1/2 for CLIP's two directions
  loss_reduction reduction = loss_reduction::mean;
};

inline block_problem info_nce_block_problem(index_t n, index_t d, const info_nce_options& o) {
  block_problem p;
  p.nx = p.ny = n;
  p.d = d;
  p.columns = o.symmetric;
  p.labelled = !o.labels_a.empty();
  p.scale = 1.0 / o.temperature;
  p.eps = o.label_smoothing;
  p.row_candidates = p.col_candidates = static_cast<double>(n);
  p.direction_weight = o.symmetric ? 0.5 : 1.0;
  p.reduction = o.reduction;
  return p;
}

/// NT-Xent: X = Y = [a; b] (2n rows, boundary n), positive of view i is view i +- n.
inline block_problem nt_xent_block_problem(index_t n, index_t d, const nt_xent_options& o) {
  block_problem p;
  p.nx = p.ny = 2 * n;
  p.d = d;
  p.split = n;
  p.self = p.mask_diagonal = true;
  p.positive_shift = n;
  p.labelled = !o.labels.empty();
  p.label_period = n;
  p.scale = 1.0 / o.temperature;
  p.eps = o.label_smoothing;
  p.row_candidates = p.col_candidates = static_cast<double>(2 * n - 1);
  p.reduction = o.reduction;
  return p;
}

/// The gamma loss (losses/gamma_nce.hpp): the sweep gives the log-normalisers over N_i (the
/// negatives, diagonal masked; all of the batch with positive_in_normaliser) of the rows and,
/// symmetric, the columns. The weights r_i enter the backward as per-anchor coefficients
/// (row_w_i = c w r_i, no positive targets); the -s_ii terms are O(N D) work outside the sweep.
inline block_problem gamma_nce_block_problem(index_t n, index_t d, const gamma_nce_options& o) {
  block_problem p;
  p.nx = p.ny = n;
  p.d = d;
  p.columns = o.symmetric;
  p.mask_diagonal = !o.positive_in_normaliser;
  p.scale = 1.0 / o.temperature;
  p.row_candidates = p.col_candidates = static_cast<double>(o.positive_in_normaliser ? n : n - 1);
  p.direction_weight = o.symmetric ? 0.5 : 1.0;
  p.reduction = o.reduction;
  return p;
}

/// One modality's uniformity term (losses/feature_separation.hpp), self mode over its n rows:
/// s_jk = 2t <x_j, x_k> - t |x_j|^2 - t |x_k|^2 = -t |x_j - x_k|^2, the last two terms being the
/// per-row and per-column offsets -t |x|^2; the diagonal masked for wang_isola. One anchor's
/// log-normaliser is the log of its row of sum_k G_t; the term's normaliser is their log-sum.
inline block_problem uniformity_block_problem(index_t n, index_t d,
                                              const feature_separation_options& o) {
  block_problem p;
  p.nx = p.ny = n;
  p.d = d;
  p.self = true;
  p.mask_diagonal = o.uniformity == uniformity_form::wang_isola;
  p.scale = 2 * o.uniformity_t;
  p.row_candidates = p.col_candidates = static_cast<double>(p.mask_diagonal ? n - 1 : n);
  p.reduction = loss_reduction::sum;
  return p;
}

/// The epilogue's view of a problem: its masks and positives (labels in the executor's memory).
/// Each executor adds what is its own: offsets, and for the backward the coefficients.
template <class T>
pairwise_epilogue_args<T> block_epilogue_base(const block_problem& q, const std::int64_t* label_x,
                                              const std::int64_t* label_y) {
  pairwise_epilogue_args<T> a;
  a.ny = q.ny;
  a.mask_diagonal = q.mask_diagonal;
  a.positive_shift = q.positive_shift;
  if (q.labelled) {
    a.label_x = label_x;
    a.label_y = label_y;
    a.label_period = q.label_period;
  }
  return a;
}

/// c w upstream: the gamma loss's weight of one direction's anchor terms (c = 1/2 when symmetric, w = 1/N for
/// the mean).
inline double gamma_block_weight(const block_problem& q, double upstream) {
  const double w = q.reduction == loss_reduction::mean ? 1.0 / static_cast<double>(q.nx) : 1.0;
  return q.direction_weight * w * upstream;
}

/// The plan: blocks, their order and the workspace layout of both passes (one workspace of
/// `bytes` serves both; each pass carves its regions from the start).
struct block_plan {
  block_problem problem;
  index_t br = 0, bc = 0;  // block extents (the largest block)
  index_t ld = 0;          // row stride of the S and G block buffers: bc rounded up to 8, so
                           // that every buffer row starts 16-byte aligned (cuBLASLt)
  index_t chunk = 64;
  int slots = 2;
  std::size_t gemm_workspace = 0;  // bytes per GEMM stream
  std::vector<block_range> xb, yb;
  std::vector<sweep_block> blocks;  // visiting order: row bands in order, columns ascending
  block_element_sizes sizes;

  // Forward regions.
  ws_region f_logits;     // slots x br x ld logits
  ws_region f_row_part;   // row partials of one block: row_chunks() x br (5 fields each)
  ws_region f_col_part;   // column partials: col_chunks() x bc
  ws_region f_row_stats;  // nx merged row statistics (self mode: every anchor)
  ws_region f_col_stats;  // ny column statistics (columns && !self)
  ws_region f_terms;      // nx + ny doubles (per-anchor loss terms) and 2 doubles of counts
  ws_region f_gemm;       // the logit GEMMs' workspace
  // Backward regions.
  ws_region b_logits;  // slots x br x ld logits
  ws_region b_grad;    // slots x br x ld G entries
  ws_region b_coef;    // row_w, row_lse, row_q (nx each), col_* (ny each), 2 valid counts
  ws_region b_dx;      // br x d fp32: dX of the current band (two-tower)
  ws_region b_dy;      // ny x d fp32: dY (self mode: dZ, every row)
  ws_region b_moment;  // br doubles of one block's moment partials, the running sum, and G's
                       // scale 2^k and its inverse (two floats in one double's room)
  ws_region b_gemm;    // three GEMM streams' workspaces (logits, dX, dY)
  std::size_t forward_bytes = 0, backward_bytes = 0, bytes = 0;

  index_t row_chunks() const noexcept { return (bc + chunk - 1) / chunk; }
  index_t col_chunks() const noexcept { return (br + chunk - 1) / chunk; }
  std::size_t partial_bytes() const noexcept { return 5 * sizes.stat; }
};

/// Cuts [0, n) into blocks of at most `tile` rows, never straddling `split` (0: none).
inline std::vector<block_range> block_ranges(index_t n, index_t split, index_t tile) {
  std::vector<block_range> out;
  auto cut = [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; r += tile) out.push_back({r, hi - r < tile ? hi - r : tile});
  };
  if (split > 0 && split < n) {
    cut(0, split);
    cut(split, n);
  } else {
    cut(0, n);
  }
  return out;
}

/// Lays out the workspace of a plan whose blocks are already chosen.
inline void block_layout(block_plan& p) {
  const block_problem& q = p.problem;
  const block_element_sizes& z = p.sizes;
  p.ld = (p.bc + 7) / 8 * 8;
  const auto br = static_cast<std::size_t>(p.br), bc = static_cast<std::size_t>(p.bc);
  const auto ld = static_cast<std::size_t>(p.ld);
  const auto nx = static_cast<std::size_t>(q.nx), ny = static_cast<std::size_t>(q.ny);
  const auto d = static_cast<std::size_t>(q.d);
  const auto slots = static_cast<std::size_t>(p.slots);
  const bool cols = q.columns || q.self;  // column partials (self: into the row statistics)
  std::size_t at = 0;
  auto take = [&](ws_region& r, std::size_t bytes) {
    r.offset = at;
    r.bytes = block_ws_round(bytes);
    at += r.bytes;
  };
  take(p.f_logits, slots * br * ld * z.logit);
  take(p.f_row_part, static_cast<std::size_t>(p.row_chunks()) * br * p.partial_bytes());
  take(p.f_col_part, cols ? static_cast<std::size_t>(p.col_chunks()) * bc * p.partial_bytes() : 0);
  take(p.f_row_stats, nx * p.partial_bytes());
  take(p.f_col_stats, q.columns && !q.self ? ny * p.partial_bytes() : 0);
  take(p.f_terms, (nx + ny + 2) * sizeof(double));
  take(p.f_gemm, p.gemm_workspace);
  p.forward_bytes = at + block_ws_align;
  at = 0;
  take(p.b_logits, slots * br * ld * z.logit);
  take(p.b_grad, slots * br * ld * z.grad);
  take(p.b_coef, (3 * (nx + ny) + 2) * z.stat);
  take(p.b_dx, q.self ? 0 : br * d * z.acc);
  take(p.b_dy, ny * d * z.acc);
  take(p.b_moment, (br + 2) * sizeof(double));
  take(p.b_gemm, 3 * p.gemm_workspace);
  p.backward_bytes = at + block_ws_align;
  p.bytes = p.forward_bytes > p.backward_bytes ? p.forward_bytes : p.backward_bytes;
}

/// Fills the block list of a plan whose extents are chosen.
inline void block_order(block_plan& p) {
  const block_problem& q = p.problem;
  p.xb = block_ranges(q.nx, q.split, p.br);
  p.yb = q.self ? p.xb : block_ranges(q.ny, 0, p.bc);
  p.blocks.clear();
  for (std::size_t i = 0; i < p.xb.size(); ++i) {
    const std::size_t j0 = q.self ? i : 0;
    for (std::size_t j = j0; j < p.yb.size(); ++j) {
      sweep_block b;
      b.bi = static_cast<index_t>(i);
      b.bj = static_cast<index_t>(j);
      b.row0 = p.xb[i].first;
      b.rows = p.xb[i].rows;
      b.col0 = p.yb[j].first;
      b.cols = p.yb[j].rows;
      b.diag = q.self && i == j;
      b.has_diagonal = b.row0 < b.col0 + b.cols && b.col0 < b.row0 + b.rows;
      b.band_end = j + 1 == p.yb.size();
      p.blocks.push_back(b);
    }
  }
}

/// The plan of a problem: blocks of at most o.block_rows x o.block_cols (square in self mode),
/// no larger than the matrix, halved (the larger side first) while the workspace exceeds
/// o.memory_budget, a side exceeds o.min_block and the block buffers take more than half the
/// budget. Memory is O((nx + ny) d + br bc), never O(nx ny): past the budget's reach (N D so
/// large that the fp32 accumulators alone exceed it) the plan reports its true size in `bytes`.
inline block_plan make_block_plan(const block_problem& q, const block_element_sizes& sizes,
                                  const block_sweep_options& o = {}) {
  block_plan p;
  p.problem = q;
  p.sizes = sizes;
  p.chunk = o.chunk > 0 ? o.chunk : 64;
  p.slots = o.slots > 0 ? o.slots : 1;
  p.gemm_workspace = o.gemm_workspace;
  auto lo = [](index_t a, index_t b) { return a < b ? a : b; };
  const index_t min_block = o.min_block > 0 ? o.min_block : 1;
  const index_t xmax =
      q.split > 0 && q.split < q.nx ? (q.split > q.nx - q.split ? q.split : q.nx - q.split) : q.nx;
  index_t br = lo(o.block_rows > 0 ? o.block_rows : 1, xmax > 0 ? xmax : 1);
  index_t bc = lo(o.block_cols > 0 ? o.block_cols : 1, q.ny > 0 ? q.ny : 1);
  if (q.self) br = bc = lo(br, lo(o.block_cols > 0 ? o.block_cols : 1, xmax > 0 ? xmax : 1));
  for (;;) {
    p.br = br;
    p.bc = bc;
    block_layout(p);
    if (p.bytes <= o.memory_budget) break;
    // Past the budget's reach (the O((nx + ny) d) accumulators alone fill it) smaller blocks
    // would only add launches: stop once the block buffers take at most half the budget.
    const std::size_t blocks_bytes = p.f_logits.bytes > p.b_logits.bytes + p.b_grad.bytes
                                         ? p.f_logits.bytes
                                         : p.b_logits.bytes + p.b_grad.bytes;
    if (blocks_bytes <= o.memory_budget / 2) break;
    if (q.self) {
      if (br <= min_block) break;
      br = bc = br / 2 > min_block ? br / 2 : min_block;
    } else if (bc >= br && bc > min_block) {
      bc = bc / 2 > min_block ? bc / 2 : min_block;
    } else if (br > min_block) {
      br = br / 2 > min_block ? br / 2 : min_block;
    } else {
      break;
    }
  }
  block_order(p);
  return p;
}

/// The power of two 2^k that scales the G entries of a backward whose |G| is at most `bound`
/// so that the largest lands in [2^14, 2^15): below fp16's maximum (65504) with room, and the
/// typical entries (about bound / N) far above its subnormals. 0 for a bound of 0 or non-finite;
/// within [-100, 100], so that 2^k and 2^-k are normal floats. The accumulators of G's products
/// hold 2^k times the gradients; their stores undo it.
CONTRASTIVE_HOST_DEVICE inline int gradient_scale_exponent(double bound) noexcept {
  if (!(bound > 0) || !(bound < infinity<double>())) return 0;
  int e = 0;
  (void)::frexp(bound, &e);  // bound = m 2^e, m in [0.5, 1)
  const int k = 15 - e;
  return k > 100 ? 100 : (k < -100 ? -100 : k);
}

/// One anchor's share of the bound on |G|: an entry is at most row_w_i + col_w_j + row_q_i +
/// col_q_j in magnitude (softmax probabilities and targets lie in [0, 1]).
template <class T>
CONTRASTIVE_HOST_DEVICE inline double coefficient_magnitude(const T* w, const T* q,
                                                            index_t i) noexcept {
  const double a = w != nullptr ? static_cast<double>(w[i]) : 0.0;
  const double b = q != nullptr ? static_cast<double>(q[i]) : 0.0;
  return (a < 0 ? -a : a) + (b < 0 ? -b : b);
}

/// The bound on |G| of a backward: the largest row share plus the largest column share (self
/// mode: the column coefficients are the rows', which doubles it, as G_ij = Gfull_ij + Gfull_ji).
/// Both executors take it from the coefficients themselves (the device in one max reduction,
/// exact in any order), so weights that live on the device, like the gamma loss's r_i, need no
/// host copy. NaN coefficients give a NaN bound, hence no scaling.
template <class T>
double coefficient_bound(const pairwise_epilogue_args<T>& ep, index_t nx, index_t ny) {
  double rows = 0, cols = 0;
  for (index_t i = 0; i < nx; ++i) {
    const double m = coefficient_magnitude(ep.row_w, ep.row_q, i);
    rows = m > rows || m != m ? m : rows;
  }
  for (index_t j = 0; j < ny; ++j) {
    const double m = coefficient_magnitude(ep.col_w, ep.col_q, j);
    cols = m > cols || m != m ? m : cols;
  }
  return rows + cols;
}

/// The per-anchor weight of the valid anchors of one direction: the direction weight (1/2 for
/// CLIP) times upstream, over the valid anchors for the mean.
inline double block_anchor_weight(const block_problem& q, double valid, double upstream) {
  if (!(valid > 0)) return 0;
  const double w = q.direction_weight * upstream;
  return q.reduction == loss_reduction::mean ? w / valid : w;
}

/// The driver both executors run. Exec provides
///   logits(block, slot)           S of the block into its slot buffer
///   forward_epilogue(block, slot) per-chunk row (and column) partials of the block
///   merge(block)                  those partials into the statistics, in chunk order
/// and, for the backward,
///   gradient_epilogue(block, slot)  G of the block (and its temperature-moment partials)
///   products(block, slot)           dX_I += G Y_J, dY_J += G^T X_I (not dY for diagonal blocks)
///   finish_band(block)              the band's dX is complete
template <class Exec>
void run_block_forward(const block_plan& p, Exec& ex) {
  for (std::size_t k = 0; k < p.blocks.size(); ++k) {
    const int slot = static_cast<int>(k % static_cast<std::size_t>(p.slots));
    ex.logits(p.blocks[k], slot);
    ex.forward_epilogue(p.blocks[k], slot);
    ex.merge(p.blocks[k]);
  }
}

template <class Exec>
void run_block_backward(const block_plan& p, Exec& ex) {
  for (std::size_t k = 0; k < p.blocks.size(); ++k) {
    const int slot = static_cast<int>(k % static_cast<std::size_t>(p.slots));
    ex.logits(p.blocks[k], slot);
    ex.gradient_epilogue(p.blocks[k], slot);
    ex.products(p.blocks[k], slot);
    if (p.blocks[k].band_end) ex.finish_band(p.blocks[k]);
  }
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_BLOCK_SWEEP_HPP
