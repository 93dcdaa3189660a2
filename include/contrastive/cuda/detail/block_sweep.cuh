#ifndef CONTRASTIVE_CUDA_DETAIL_BLOCK_SWEEP_CUH
#define CONTRASTIVE_CUDA_DETAIL_BLOCK_SWEEP_CUH

// The blocked pairwise sweep on the GPU (nvcc only; never in the umbrella): logit blocks through
// cuBLASLt, memory-bound epilogue kernels, gradient products through cuBLASLt. The plan (blocks,
// order, workspace) is core/block_sweep.hpp's; the per-entry epilogue math is core/math.hpp's
// pairwise_* functions; the host emulator (core/block_sweep_emulator.hpp) runs the same plan with
// the same driver and is checked against the CPU losses on every CI run.
//
// STATUS: compiled for sm_80 / sm_90, NOT YET RUN ON A GPU. sweep_mode::automatic therefore
// still resolves to the fused kernels (see resolve_sweep_mode); the blocked path runs only when
// asked for with sweep_mode::blocked. tests/cuda/test_block_sweep.cpp checks it against the CPU.
//
// Streams: the caller's stream forks into four (logit GEMMs, epilogues, dX products, dY
// products) joined back before the call returns; every accumulator is written by one stream in
// plan order, and the cuBLASLt algorithm is chosen once per shape with reductions restricted to
// non-atomic schemes, so results are bitwise repeatable. The launch sequence has no host
// synchronisation and can be captured in a CUDA graph by the caller.

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "contrastive/core/block_sweep.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/cuda/detail/elements.cuh"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

/// Which implementation a pairwise loss uses on the GPU.
///  - automatic: the blocked sweep where cuBLASLt can serve (D and row strides multiples of 8
///    elements, 16-byte aligned rows), else the fused kernels;
///  - blocked: the blocked sweep (cudaErrorNotSupported where cuBLASLt cannot serve);
///  - fused: the fused streaming kernels (cuda/detail/fused_kernels.cuh), the minimal-memory mode.
enum class sweep_mode { automatic, blocked, fused };

namespace detail {

// The one line to flip once the blocked path has passed tests/cuda on a GPU: until then
// sweep_mode::automatic keeps the fused kernels.
constexpr bool blocked_by_default = false;

using contrastive::detail::block_plan;
using contrastive::detail::block_problem;
using contrastive::detail::sweep_block;

/// The block sweep's element sizes for input type T (G in the input precision for 16-bit
/// inputs, fp32 for fp32 / tf32).
template <class T>
contrastive::detail::block_element_sizes block_sizes() {
  contrastive::detail::block_element_sizes z;
  z.grad = sizeof(T) == 2 ? 2 : 4;
  return z;
}

/// cuBLASLt can serve rows of d elements at this address and stride: 16-byte aligned rows.
template <class T>
bool lt_rows_ok(const void* p, index_t ld, index_t rows, index_t d) {
  constexpr index_t v = 16 / static_cast<index_t>(sizeof(T));
  return d % v == 0 && reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && (rows <= 1 || ld % v == 0);
}

inline bool blocked_wanted(sweep_mode m, bool servable) {
  if (m == sweep_mode::fused) return false;
  if (m == sweep_mode::blocked) return true;
  return blocked_by_default && servable;
}

// ---- cuBLASLt --------------------------------------------------------------------------------

template <class T>
struct lt_type;
template <>
struct lt_type<float> {
  static constexpr cudaDataType_t value = CUDA_R_32F;
};
template <>
struct lt_type<__half> {
  static constexpr cudaDataType_t value = CUDA_R_16F;
};
template <>
struct lt_type<__nv_bfloat16> {
  static constexpr cudaDataType_t value = CUDA_R_16BF;
};

inline cudaError_t lt_status(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS         ? cudaSuccess
         : s == CUBLAS_STATUS_NOT_SUPPORTED ? cudaErrorNotSupported
         : s == CUBLAS_STATUS_ALLOC_FAILED  ? cudaErrorMemoryAllocation
                                            : cudaErrorUnknown;
}

/// One thread's cuBLASLt handle, created on first use (the handle serves any stream).
inline cublasLtHandle_t lt_handle(cudaError_t& e) {
  thread_local cublasLtHandle_t h = nullptr;
  if (h == nullptr) e = lt_status(cublasLtCreate(&h));
  return h;
}

/// D (column-major m x n, ldd, fp32) = alpha op(A) op(B) + beta D, A and B of types ta / tb,
/// fp32 accumulation (tf32 tensor cores when asked). The shape of one product.
struct lt_gemm {
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  int m = 0, n = 0, k = 0;
  cudaDataType_t ta = CUDA_R_32F, tb = CUDA_R_32F;
  std::int64_t lda = 0, ldb = 0, ldd = 0;
  bool tf32 = false;

  bool operator==(const lt_gemm& o) const noexcept {
    return transa == o.transa && transb == o.transb && m == o.m && n == o.n && k == o.k &&
           ta == o.ta && tb == o.tb && lda == o.lda && ldb == o.ldb && ldd == o.ldd &&
           tf32 == o.tf32;
  }
};

/// The descriptors and the pinned algorithm of each product shape of one call: the heuristic is
/// asked once per shape (a sweep has at most a few, from its ragged edges), for its first
/// algorithm with a non-atomic reduction scheme, so every block of a shape runs the same kernel
/// and the host cost per GEMM is one cublasLtMatmul.
class lt_cache {
 public:
  lt_cache(cublasLtHandle_t h, std::size_t ws_bytes) : h_(h), ws_bytes_(ws_bytes) {}
  lt_cache(const lt_cache&) = delete;
  lt_cache& operator=(const lt_cache&) = delete;
  ~lt_cache() {
    for (int i = 0; i < used_; ++i) release(e_[i]);
  }

  cudaError_t run(const lt_gemm& g, float alpha, const void* a, const void* b, float beta, float* d,
                  void* ws, cudaStream_t s) {
    if (g.m == 0 || g.n == 0) return cudaSuccess;
    entry* e = nullptr;
    for (int i = 0; i < used_ && e == nullptr; ++i)
      if (e_[i].key == g) e = &e_[i];
    if (e == nullptr) {
      if (used_ == kMax) return cudaErrorNotSupported;  // never: a plan has at most 4 widths
      e = &e_[used_];
      const cublasStatus_t st = prepare(g, *e);
      if (st != CUBLAS_STATUS_SUCCESS) {
        release(*e);
        *e = entry{};
        return lt_status(st);
      }
      ++used_;
    }
    return lt_status(cublasLtMatmul(h_, e->op, &alpha, a, e->la, b, e->lb, &beta, d, e->ld, d,
                                    e->ld, &e->algo, ws, ws_bytes_, s));
  }

 private:
  struct entry {
    lt_gemm key;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  static constexpr int kMax = 24;

  cublasStatus_t prepare(const lt_gemm& g, entry& e) {
    e.key = g;
    cublasStatus_t st = cublasLtMatmulDescCreate(
        &e.op, g.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulDescSetAttribute(e.op, CUBLASLT_MATMUL_DESC_TRANSA, &g.transa,
                                          sizeof(g.transa));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulDescSetAttribute(e.op, CUBLASLT_MATMUL_DESC_TRANSB, &g.transb,
                                          sizeof(g.transb));
    const bool na = g.transa == CUBLAS_OP_N, nb = g.transb == CUBLAS_OP_N;
    const std::uint64_t ar = na ? g.m : g.k, ac = na ? g.k : g.m;
    const std::uint64_t br = nb ? g.k : g.n, bc = nb ? g.n : g.k;
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&e.la, g.ta, ar, ac, g.lda);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&e.lb, g.tb, br, bc, g.ldb);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutCreate(&e.ld, CUDA_R_32F, g.m, g.n, g.ldd);
    cublasLtMatmulPreference_t pref = nullptr;
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ws_bytes_, sizeof(ws_bytes_));
    // Deterministic: no split-K scheme that reduces in place with atomics.
    const std::uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE |
                                  CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE |
                                  CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                &schemes, sizeof(schemes));
    cublasLtMatmulHeuristicResult_t heur{};
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulAlgoGetHeuristic(h_, e.op, e.la, e.lb, e.ld, e.ld, pref, 1, &heur, &found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && found == 0) st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (st == CUBLAS_STATUS_SUCCESS) e.algo = heur.algo;
    return st;
  }
  static void release(entry& e) {
    if (e.ld) cublasLtMatrixLayoutDestroy(e.ld);
    if (e.lb) cublasLtMatrixLayoutDestroy(e.lb);
    if (e.la) cublasLtMatrixLayoutDestroy(e.la);
    if (e.op) cublasLtMatmulDescDestroy(e.op);
  }

  cublasLtHandle_t h_;
  std::size_t ws_bytes_;
  entry e_[kMax];
  int used_ = 0;
};

// ---- epilogue kernels ------------------------------------------------------------------------

using stat_t = float;
using partial_t = pairwise_partial<stat_t>;

/// Row partials of one block: thread (r, cc) folds columns [cc chunk, (cc + 1) chunk) of row r.
template <int = 0>
__global__ void block_row_partials_kernel(pairwise_epilogue_args<stat_t> a, const float* s,
                                          index_t ld, index_t row0, index_t rows, index_t col0,
                                          index_t cols, index_t chunk, index_t br,
                                          partial_t* part) {
  const index_t chunks = (cols + chunk - 1) / chunk;
  for (index_t t = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; t < rows * chunks;
       t += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = t / chunks, cc = t % chunks;
    const index_t c0 = cc * chunk, n = cols - c0 < chunk ? cols - c0 : chunk;
    part[cc * br + r] =
        pairwise_segment_partial(a, s + r * ld + c0, index_t(1), row0 + r, col0 + c0, n, false);
  }
}

/// Column partials: thread (c, rc) folds rows [rc chunk, (rc + 1) chunk) of column c
/// (consecutive threads read consecutive columns).
template <int = 0>
__global__ void block_col_partials_kernel(pairwise_epilogue_args<stat_t> a, const float* s,
                                          index_t ld, index_t row0, index_t rows, index_t col0,
                                          index_t cols, index_t chunk, index_t bc,
                                          partial_t* part) {
  const index_t chunks = (rows + chunk - 1) / chunk;
  for (index_t t = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; t < cols * chunks;
       t += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t rc = t / cols, c = t % cols;
    const index_t r0 = rc * chunk, n = rows - r0 < chunk ? rows - r0 : chunk;
    part[rc * bc + c] =
        pairwise_segment_partial(a, s + r0 * ld + c, ld, row0 + r0, col0 + c, n, true);
  }
}

/// stats[first + i] merges part[0 * stride + i], part[1 * stride + i], ... in that order.
template <int = 0>
__global__ void block_merge_kernel(const partial_t* part, index_t stride, index_t chunks,
                                   index_t count, partial_t* stats) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    partial_t p = stats[i];
    for (index_t k = 0; k < chunks; ++k) p.merge(part[k * stride + i]);
    stats[i] = p;
  }
}

template <int = 0>
__global__ void block_init_stats_kernel(partial_t* stats, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    stats[i] = partial_t();
}

constexpr int kBlockThreads = 256;

/// A fixed-shape block reduction (the same tree every run).
__device__ inline double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int h = kBlockThreads / 2; h > 0; h /= 2) {
    if (static_cast<int>(threadIdx.x) < h) red[threadIdx.x] += red[threadIdx.x + h];
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();
  return r;
}

/// The same for the maximum; a NaN wins (as in coefficient_bound).
__device__ inline double block_max(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int h = kBlockThreads / 2; h > 0; h /= 2) {
    if (static_cast<int>(threadIdx.x) < h) {
      const double o = red[threadIdx.x + h];
      if (o > red[threadIdx.x] || o != o) red[threadIdx.x] = o;
    }
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();
  return r;
}

/// G's scale 2^k and its inverse into scales[0], scales[1], from the coefficients' bound
/// (core/block_sweep.hpp coefficient_bound, gradient_scale_exponent). One CTA.
template <int = 0>
__global__ void block_scale_kernel(pairwise_epilogue_args<stat_t> a, index_t nx, index_t ny,
                                   float* scales) {
  __shared__ double red[kBlockThreads];
  double rows = 0, cols = 0;
  for (index_t i = threadIdx.x; i < nx; i += kBlockThreads) {
    const double m = contrastive::detail::coefficient_magnitude(a.row_w, a.row_q, i);
    if (m > rows || m != m) rows = m;
  }
  for (index_t j = threadIdx.x; j < ny; j += kBlockThreads) {
    const double m = contrastive::detail::coefficient_magnitude(a.col_w, a.col_q, j);
    if (m > cols || m != m) cols = m;
  }
  rows = block_max(rows, red);
  cols = block_max(cols, red);
  if (threadIdx.x == 0) {
    const int k = contrastive::detail::gradient_scale_exponent(rows + cols);
    scales[0] = ::ldexpf(1.f, k);
    scales[1] = ::ldexpf(1.f, -k);
  }
}

/// G of one block, one CTA per row: G_rc = 2^k pairwise_gradient(...) in type Gt (2^k from
/// block_scale_kernel, on the device), and the row's moment sum_c G_rc raw_rc (unscaled) into
/// moment[r].
template <class Gt>
__global__ void block_gradient_kernel(pairwise_epilogue_args<stat_t> a, const float* s, index_t ld,
                                      index_t row0, index_t col0, index_t cols, const float* scales,
                                      Gt* g, double* moment) {
  __shared__ double red[kBlockThreads];
  const index_t r = blockIdx.x;
  const float g_scale = scales[0];
  double m = 0;
  for (index_t c = threadIdx.x; c < cols; c += kBlockThreads) {
    const float raw = s[r * ld + c];
    const float v = pairwise_logit(a, raw, row0 + r, col0 + c);
    const float gv = pairwise_gradient(a, v, row0 + r, col0 + c);
    g[r * ld + c] = from_float<Gt>(gv * g_scale);
    m += static_cast<double>(gv) * static_cast<double>(raw);
  }
  m = block_sum(m, red);
  if (threadIdx.x == 0) moment[r] = m;
}

/// total += weight * sum(moment[0, rows)), one CTA, fixed order.
template <int = 0>
__global__ void block_moment_kernel(const double* moment, index_t rows, double weight,
                                    double* total) {
  __shared__ double red[kBlockThreads];
  double m = 0;
  for (index_t r = threadIdx.x; r < rows; r += kBlockThreads) m += moment[r];
  m = block_sum(m, red);
  if (threadIdx.x == 0) *total += weight * m;
}

/// Positives per anchor (stat_t), the anchor direction's valid count into *valid (one CTA).
template <int = 0>
__global__ void block_count_kernel(pairwise_epilogue_args<stat_t> a, index_t anchors,
                                   index_t candidates, bool column, stat_t* count) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < anchors;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    count[i] = pairwise_positive_count(a, i, candidates, column);
}

/// w, q (in place of the counts) and lse per anchor; weight = direction weight * upstream, over
/// the valid anchors for the mean. One CTA.
template <int = 0>
__global__ void block_coefficients_kernel(const float* lse_in, index_t anchors, double weight,
                                          bool mean, double eps, stat_t* w, stat_t* lse,
                                          stat_t* count_then_q) {
  __shared__ double red[kBlockThreads];
  double v = 0;
  for (index_t i = threadIdx.x; i < anchors; i += kBlockThreads) v += count_then_q[i] > 0 ? 1 : 0;
  v = block_sum(v, red);
  const double wv = v > 0 ? (mean ? weight / v : weight) : 0.0;
  for (index_t i = threadIdx.x; i < anchors; i += kBlockThreads) {
    stat_t wi = 0, qi = 0;
    pairwise_anchor_coefficients(count_then_q[i], wv, eps, &wi, &qi);
    w[i] = wi;
    count_then_q[i] = qi;
    lse[i] = lse_in[i];
  }
}

/// The loss from the statistics: lse out (stride 1) and *loss (+)= weight-of-direction * sum of
/// the per-anchor terms over the valid anchors. One CTA, fixed order.
template <int = 0>
__global__ void block_loss_kernel(const partial_t* stats, index_t anchors, double eps,
                                  double candidates, double direction_weight, bool mean,
                                  float* lse_out, double* loss, bool add) {
  __shared__ double red[kBlockThreads];
  double sum = 0, valid = 0;
  for (index_t i = threadIdx.x; i < anchors; i += kBlockThreads) {
    bool ok = false;
    sum += pairwise_anchor_term(stats[i], eps, candidates, &ok);
    valid += ok ? 1 : 0;
    lse_out[i] = stats[i].lse();
  }
  sum = block_sum(sum, red);
  valid = block_sum(valid, red);
  if (threadIdx.x == 0) {
    const double w = valid > 0 ? (mean ? direction_weight / valid : direction_weight) : 0.0;
    *loss = (add ? *loss : 0.0) + w * sum;
  }
}

/// Row terms added at the stores: c_i = diagonal + per_row[i] (per_row may be null) times row i
/// of a source matrix (the gamma loss's -s_ii terms; the uniformity's offset terms).
struct block_row_terms {
  float diagonal = 0.f;
  const float* per_row = nullptr;
  __host__ __device__ bool any() const { return diagonal != 0.f || per_row != nullptr; }
  __device__ float at(index_t i) const {
    return diagonal + (per_row != nullptr ? per_row[i] : 0.f);
  }
};

/// out rows [first, first + rows) (+)= 2^-k acc (fp32, row-major, ld d; 2^-k = scales[1]) plus
/// c_i times the same rows of `src`.
template <class Out>
__global__ void block_store_kernel(rows2<Out> out, index_t first, const float* acc, index_t rows,
                                   index_t d, bool accumulate, const float* scales,
                                   rows2<const Out> src, block_row_terms terms) {
  const float unscale = scales[1];
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < rows * d;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = e / d, c = e % d;
    Out* o = out.row(first + r) + c;
    float v = acc[e] * unscale;
    if (terms.any()) v += terms.at(first + r) * to_float(src.row(first + r)[c]);
    *o = from_float<Out>(accumulate ? to_float(*o) + v : v);
  }
}

template <int = 0>
__global__ void block_temperature_kernel(const double* moment, double scale, double* out) {
  *out = -scale * *moment;  // dL/dtau = -dL/dtheta / tau
}

inline unsigned block_grid(index_t work) {
  index_t b = (work + kBlockThreads - 1) / kBlockThreads;
  if (b < 1) b = 1;
  return b > 65535 * 4 ? 65535u * 4 : static_cast<unsigned>(b);
}

// ---- the executor ----------------------------------------------------------------------------

/// Inputs of one blocked call: X and Y as row segments (NT-Xent: the two views).
template <class T>
struct block_inputs {
  rows2<const T> x, y;
  const std::int64_t* label_x = nullptr;
  const std::int64_t* label_y = nullptr;
};

/// Streams forked from the caller's and joined back; events for the slot dependencies.
struct block_streams {
  static constexpr int kStreams = 4;  // 0 GEMM (logits), 1 epilogue, 2 dX, 3 dY
  static constexpr int kMaxSlots = 4;
  cudaStream_t caller = nullptr;
  cudaStream_t s[kStreams] = {};
  cudaEvent_t fork = nullptr, join[kStreams] = {};
  cudaEvent_t s_ready[kMaxSlots] = {}, s_free[kMaxSlots] = {}, g_ready[kMaxSlots] = {},
              g_free_dx[kMaxSlots] = {}, g_free_dy[kMaxSlots] = {};
  cudaError_t status = cudaSuccess;

  explicit block_streams(cudaStream_t c) : caller(c) {
    auto ok = [&](cudaError_t e) {
      if (status == cudaSuccess) status = e;
    };
    for (auto& x : s) ok(cudaStreamCreateWithFlags(&x, cudaStreamNonBlocking));
    auto ev = [&](cudaEvent_t& e) { ok(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); };
    ev(fork);
    for (auto& e : join) ev(e);
    for (int k = 0; k < kMaxSlots; ++k) {
      ev(s_ready[k]);
      ev(s_free[k]);
      ev(g_ready[k]);
      ev(g_free_dx[k]);
      ev(g_free_dy[k]);
      // Recorded once so that the first wait on a free-slot event has something to wait for.
    }
    if (status != cudaSuccess) return;
    ok(cudaEventRecord(fork, caller));
    for (auto& x : s) ok(cudaStreamWaitEvent(x, fork, 0));
    for (int k = 0; k < kMaxSlots; ++k) {
      ok(cudaEventRecord(s_free[k], s[1]));
      ok(cudaEventRecord(g_free_dx[k], s[2]));
      ok(cudaEventRecord(g_free_dy[k], s[3]));
    }
  }
  /// The caller's stream waits for all forked work.
  cudaError_t join_all() {
    for (int i = 0; i < kStreams; ++i) {
      cudaError_t e = cudaEventRecord(join[i], s[i]);
      if (e == cudaSuccess) e = cudaStreamWaitEvent(caller, join[i], 0);
      if (e != cudaSuccess && status == cudaSuccess) status = e;
    }
    return status;
  }
  ~block_streams() {
    // Destroying streams and events with work pending is safe: resources go when it completes.
    for (auto& x : s)
      if (x) cudaStreamDestroy(x);
    auto d = [](cudaEvent_t e) {
      if (e) cudaEventDestroy(e);
    };
    d(fork);
    for (auto e : join) d(e);
    for (int k = 0; k < kMaxSlots; ++k) {
      d(s_ready[k]);
      d(s_free[k]);
      d(g_ready[k]);
      d(g_free_dx[k]);
      d(g_free_dy[k]);
    }
  }
};

/// Executes core/block_sweep.hpp's driver on the device.
template <class T, bool Tf32>
class block_device_exec {
 public:
  using Gt = std::conditional_t<sizeof(T) == 2, T, float>;

  block_device_exec(const block_plan& p, const block_inputs<T>& in,
                    const pairwise_epilogue_args<stat_t>& ep, unsigned char* base, bool backward,
                    block_streams& st, cublasLtHandle_t h)
      : p_(p), in_(in), ep_(ep), st_(st), lt_(h, p.gemm_workspace) {
    const auto& r = backward ? p.b_logits : p.f_logits;
    s_ = reinterpret_cast<float*>(base + r.offset);
    if (backward) {
      g_ = reinterpret_cast<Gt*>(base + p.b_grad.offset);
      dx_ = reinterpret_cast<float*>(base + p.b_dx.offset);
      dy_ = reinterpret_cast<float*>(base + p.b_dy.offset);
      moment_ = reinterpret_cast<double*>(base + p.b_moment.offset);
      scales_ = reinterpret_cast<float*>(moment_ + p.br + 1);
      gemm_ws_ = base + p.b_gemm.offset;
    } else {
      row_part_ = reinterpret_cast<partial_t*>(base + p.f_row_part.offset);
      col_part_ = reinterpret_cast<partial_t*>(base + p.f_col_part.offset);
      row_stats_ = reinterpret_cast<partial_t*>(base + p.f_row_stats.offset);
      col_stats_ =
          p.problem.self ? row_stats_ : reinterpret_cast<partial_t*>(base + p.f_col_stats.offset);
      gemm_ws_ = base + p.f_gemm.offset;
    }
  }

  cudaError_t status() const noexcept { return e_; }

  partial_t* row_stats() const noexcept { return row_stats_; }
  partial_t* col_stats() const noexcept { return col_stats_; }
  double* moment_total() const noexcept { return moment_ + p_.br; }
  /// G's scale 2^k and its inverse (two device floats, written by block_scale_kernel).
  float* scales() const noexcept { return scales_; }

  void logits(const sweep_block& b, int slot) {
    cudaStream_t s = st_.s[0];
    ok(cudaStreamWaitEvent(s, st_.s_free[slot], 0));
    // Column-major view: S^T (cols x rows, stride ld) = Y_J X_I^T: A = Y_J (op T), B = X_I (op N).
    lt_gemm g;
    g.transa = CUBLAS_OP_T;
    g.transb = CUBLAS_OP_N;
    g.m = static_cast<int>(b.cols);
    g.n = static_cast<int>(b.rows);
    g.k = static_cast<int>(p_.problem.d);
    g.ta = g.tb = lt_type<T>::value;
    g.lda = ld_of(in_.y, b.col0);
    g.ldb = ld_of(in_.x, b.row0);
    g.ldd = p_.ld;
    g.tf32 = Tf32;
    ok(lt_.run(g, static_cast<float>(p_.problem.scale), row_ptr(in_.y, b.col0),
               row_ptr(in_.x, b.row0), 0.f, slot_s(slot), gemm_ws(0), s));
    ok(cudaEventRecord(st_.s_ready[slot], s));
  }

  void forward_epilogue(const sweep_block& b, int slot) {
    cudaStream_t s = st_.s[1];
    ok(cudaStreamWaitEvent(s, st_.s_ready[slot], 0));
    const index_t ch = p_.chunk;
    block_row_partials_kernel<>
        <<<block_grid(b.rows * ((b.cols + ch - 1) / ch)), kBlockThreads, 0, s>>>(
            ep_, slot_s(slot), p_.ld, b.row0, b.rows, b.col0, b.cols, ch, p_.br, row_part_);
    if (column_partials(b))
      block_col_partials_kernel<>
          <<<block_grid(b.cols * ((b.rows + ch - 1) / ch)), kBlockThreads, 0, s>>>(
              ep_, slot_s(slot), p_.ld, b.row0, b.rows, b.col0, b.cols, ch, p_.bc, col_part_);
    ok(cudaGetLastError());
    ok(cudaEventRecord(st_.s_free[slot], s));
  }

  void merge(const sweep_block& b) {
    cudaStream_t s = st_.s[1];  // after the epilogue, in plan order
    const index_t ch = p_.chunk;
    block_merge_kernel<><<<block_grid(b.rows), kBlockThreads, 0, s>>>(
        row_part_, p_.br, (b.cols + ch - 1) / ch, b.rows, row_stats_ + b.row0);
    if (column_partials(b))
      block_merge_kernel<><<<block_grid(b.cols), kBlockThreads, 0, s>>>(
          col_part_, p_.bc, (b.rows + ch - 1) / ch, b.cols, col_stats_ + b.col0);
    ok(cudaGetLastError());
  }

  void gradient_epilogue(const sweep_block& b, int slot) {
    cudaStream_t s = st_.s[1];
    ok(cudaStreamWaitEvent(s, st_.s_ready[slot], 0));
    ok(cudaStreamWaitEvent(s, st_.g_free_dx[slot], 0));
    ok(cudaStreamWaitEvent(s, st_.g_free_dy[slot], 0));
    if (b.rows > 0)
      block_gradient_kernel<Gt><<<static_cast<unsigned>(b.rows), kBlockThreads, 0, s>>>(
          ep_, slot_s(slot), p_.ld, b.row0, b.col0, b.cols, scales_, slot_g(slot), moment_);
    block_moment_kernel<>
        <<<1, kBlockThreads, 0, s>>>(moment_, b.rows, b.diag ? 0.5 : 1.0, moment_total());
    ok(cudaGetLastError());
    ok(cudaEventRecord(st_.s_free[slot], s));
    ok(cudaEventRecord(st_.g_ready[slot], s));
  }

  void products(const sweep_block& b, int slot) {
    const bool self = p_.problem.self;
    const index_t d = p_.problem.d;
    // The accumulators hold 2^k dX and 2^k dY; the stores undo the scaling.
    const float alpha = static_cast<float>(p_.problem.scale);
    // dX_I (+)= alpha G Y_J. Column-major: dX^T (d x rows) = Y_J^T G^T: A = Y_J (op N, d x cols),
    // B = G (op N, cols x rows, stride ld).
    {
      cudaStream_t s = st_.s[2];
      ok(cudaStreamWaitEvent(s, st_.g_ready[slot], 0));
      lt_gemm g;
      g.m = static_cast<int>(d);
      g.n = static_cast<int>(b.rows);
      g.k = static_cast<int>(b.cols);
      g.ta = lt_type<T>::value;
      g.tb = lt_type<Gt>::value;
      g.lda = ld_of(in_.y, b.col0);
      g.ldb = p_.ld;
      g.ldd = d;
      g.tf32 = Tf32;
      float* out = self ? dy_ + b.row0 * d : dx_;
      const float beta = self || b.bj > 0 ? 1.f : 0.f;  // the band's first block starts dX_I
      ok(lt_.run(g, alpha, row_ptr(in_.y, b.col0), slot_g(slot), beta, out, gemm_ws(1), s));
      ok(cudaEventRecord(st_.g_free_dx[slot], s));
    }
    if (b.diag) return;
    // dY_J += alpha G^T X_I. Column-major: dY^T (d x cols) = X_I^T G: A = X_I (op N, d x rows),
    // B = G^T viewed (cols x rows, stride ld), op T. Self mode: on the dX stream (one accumulator).
    cudaStream_t s = self ? st_.s[2] : st_.s[3];
    ok(cudaStreamWaitEvent(s, st_.g_ready[slot], 0));
    lt_gemm g;
    g.transb = CUBLAS_OP_T;
    g.m = static_cast<int>(d);
    g.n = static_cast<int>(b.cols);
    g.k = static_cast<int>(b.rows);
    g.ta = lt_type<T>::value;
    g.tb = lt_type<Gt>::value;
    g.lda = ld_of(in_.x, b.row0);
    g.ldb = p_.ld;
    g.ldd = d;
    g.tf32 = Tf32;
    ok(lt_.run(g, alpha, row_ptr(in_.x, b.row0), slot_g(slot), 1.f, dy_ + b.col0 * d,
               gemm_ws(self ? 1 : 2), s));
    ok(cudaEventRecord(st_.g_free_dy[slot], s));
  }

  /// dX of band I is complete: store it (two-tower), on the dX stream.
  void finish_band(const sweep_block& b) {
    if (p_.problem.self) return;
    block_store_kernel<T><<<block_grid(b.rows * p_.problem.d), kBlockThreads, 0, st_.s[2]>>>(
        out_x_, b.row0, dx_, b.rows, p_.problem.d, accumulate_, scales_, in_.y, terms_);
    ok(cudaGetLastError());
  }

  void set_outputs(rows2<T> out_x, bool accumulate, block_row_terms terms) {
    out_x_ = out_x;
    accumulate_ = accumulate;
    terms_ = terms;
  }
  float* dy_acc() const noexcept { return dy_; }

 private:
  void ok(cudaError_t e) {
    if (e_ == cudaSuccess) e_ = e;
  }
  bool column_partials(const sweep_block& b) const noexcept {
    return (p_.problem.columns || p_.problem.self) && !b.diag;
  }
  float* slot_s(int slot) const noexcept {
    return s_ + static_cast<std::size_t>(slot) * p_.br * p_.ld;
  }
  Gt* slot_g(int slot) const noexcept {
    return g_ + static_cast<std::size_t>(slot) * p_.br * p_.ld;
  }
  static const T* row_ptr(const rows2<const T>& r, index_t i) {
    return i < r.n0 ? r.p0 + i * r.ld0 : r.p1 + (i - r.n0) * r.ld1;
  }
  static std::int64_t ld_of(const rows2<const T>& r, index_t i) { return i < r.n0 ? r.ld0 : r.ld1; }
  void* gemm_ws(int k) const noexcept {
    return gemm_ws_ + static_cast<std::size_t>(k) * gemm_ws_bytes();
  }
  std::size_t gemm_ws_bytes() const noexcept { return p_.gemm_workspace; }

  const block_plan& p_;
  block_inputs<T> in_;
  pairwise_epilogue_args<stat_t> ep_;
  block_streams& st_;
  lt_cache lt_;  // each GEMM stream has its own workspace (gemm_ws(0..2))
  cudaError_t e_ = cudaSuccess;
  float* s_ = nullptr;
  Gt* g_ = nullptr;
  float *dx_ = nullptr, *dy_ = nullptr;
  double* moment_ = nullptr;
  float* scales_ = nullptr;
  unsigned char* gemm_ws_ = nullptr;
  partial_t *row_part_ = nullptr, *col_part_ = nullptr, *row_stats_ = nullptr,
            *col_stats_ = nullptr;
  rows2<T> out_x_{};
  bool accumulate_ = false;
  block_row_terms terms_;
};

/// The base of a block workspace (aligned like the plan's offsets).
inline unsigned char* block_base(workspace ws) {
  const auto addr = reinterpret_cast<std::uintptr_t>(ws.data);
  const std::size_t a = contrastive::detail::block_ws_align;
  return static_cast<unsigned char*>(ws.data) + (a - addr % a) % a;
}

template <class T>
pairwise_epilogue_args<stat_t> block_device_args(const block_problem& q,
                                                 const block_inputs<T>& in) {
  return contrastive::detail::block_epilogue_base<stat_t>(q, in.label_x, in.label_y);
}

/// The merged statistics of a forward sweep, in the workspace (self mode: every anchor's in
/// the row statistics).
inline partial_t* block_row_stats(const block_plan& p, workspace ws) {
  return reinterpret_cast<partial_t*>(block_base(ws) + p.f_row_stats.offset);
}
inline partial_t* block_col_stats(const block_plan& p, workspace ws) {
  return p.problem.self ? block_row_stats(p, ws)
                        : reinterpret_cast<partial_t*>(block_base(ws) + p.f_col_stats.offset);
}

/// The forward sweep every pairwise loss shares: the statistics (block_row_stats,
/// block_col_stats) of the logits with the masks and offsets of `ep`, complete on the caller's
/// stream when it returns.
template <class T, bool Tf32>
cudaError_t block_statistics_run(const block_plan& p, const block_inputs<T>& in,
                                 const pairwise_epilogue_args<stat_t>& ep, workspace ws,
                                 cudaStream_t caller) {
  const block_problem& q = p.problem;
  cudaError_t e = cudaSuccess;
  cublasLtHandle_t h = lt_handle(e);
  if (e != cudaSuccess) return e;
  block_streams st(caller);
  if (st.status != cudaSuccess) return st.status;
  block_device_exec<T, Tf32> ex(p, in, ep, block_base(ws), false, st, h);
  // Statistics start empty (on the epilogue stream, before its first merge).
  block_init_stats_kernel<><<<block_grid(q.nx), kBlockThreads, 0, st.s[1]>>>(ex.row_stats(), q.nx);
  if (q.columns && !q.self)
    block_init_stats_kernel<>
        <<<block_grid(q.ny), kBlockThreads, 0, st.s[1]>>>(ex.col_stats(), q.ny);
  contrastive::detail::run_block_forward(p, ex);
  e = ex.status();
  if (e == cudaSuccess) e = st.join_all();
  return e;
}

/// The forward of an InfoNCE-family loss on the block sweep: writes row_lse (n_x floats; self
/// mode every anchor) and col_lse (columns && !self) and *loss.
template <class T, bool Tf32>
cudaError_t block_forward_run(const block_plan& p, const block_inputs<T>& in, float* row_lse,
                              float* col_lse, double* loss, workspace ws, cudaStream_t caller) {
  const block_problem& q = p.problem;
  cudaError_t e = block_statistics_run<T, Tf32>(p, in, block_device_args(q, in), ws, caller);
  if (e != cudaSuccess) return e;
  const bool mean = q.reduction == loss_reduction::mean;
  block_loss_kernel<><<<1, kBlockThreads, 0, caller>>>(block_row_stats(p, ws), q.nx, q.eps,
                                                       q.row_candidates, q.direction_weight, mean,
                                                       row_lse, loss, false);
  if (q.columns && !q.self)
    block_loss_kernel<><<<1, kBlockThreads, 0, caller>>>(block_col_stats(p, ws), q.ny, q.eps,
                                                         q.col_candidates, q.direction_weight, mean,
                                                         col_lse, loss, true);
  return cudaGetLastError();
}

/// The backward sweep every pairwise loss shares, with the caller's coefficients in `ep` (device
/// arrays row_w, row_lse, row_q and the column ones): (accumulate ? += : =) dL/dX into out_x and
/// dL/dY into out_y (self mode: dL/dZ into out_x), plus the row terms c_i y_i into dX_i and c_i
/// x_i into dY_i (self mode: into dZ_i). G is scaled by 2^k for the coefficients' bound, found
/// on the device. Leaves sum G o S_raw (the temperature moment, before any row term) in
/// *block_moment(p, ws).
template <class T, bool Tf32>
cudaError_t block_gradient_run(const block_plan& p, const block_inputs<T>& in,
                               const pairwise_epilogue_args<stat_t>& ep, rows2<T> out_x,
                               rows2<T> out_y, bool accumulate, block_row_terms terms, workspace ws,
                               cudaStream_t caller) {
  const block_problem& q = p.problem;
  cudaError_t e = cudaSuccess;
  cublasLtHandle_t h = lt_handle(e);
  if (e != cudaSuccess) return e;
  unsigned char* base = block_base(ws);
  float* dy = reinterpret_cast<float*>(base + p.b_dy.offset);
  double* moment = reinterpret_cast<double*>(base + p.b_moment.offset);
  float* scales = reinterpret_cast<float*>(moment + p.br + 1);
  e = cudaMemsetAsync(dy, 0, sizeof(float) * static_cast<std::size_t>(q.ny * q.d), caller);
  if (e == cudaSuccess) e = cudaMemsetAsync(moment + p.br, 0, sizeof(double), caller);
  if (e != cudaSuccess) return e;
  block_scale_kernel<><<<1, kBlockThreads, 0, caller>>>(ep, q.nx, q.ny, scales);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;

  block_streams st(caller);  // forks after the coefficients, the zeroing and the scale
  if (st.status != cudaSuccess) return st.status;
  block_device_exec<T, Tf32> ex(p, in, ep, base, true, st, h);
  ex.set_outputs(out_x, accumulate, terms);
  contrastive::detail::run_block_backward(p, ex);
  e = ex.status();
  if (e == cudaSuccess) e = st.join_all();
  if (e != cudaSuccess) return e;
  // dY (self mode: dZ) out.
  block_store_kernel<T><<<block_grid(q.ny * q.d), kBlockThreads, 0, caller>>>(
      q.self ? out_x : out_y, 0, dy, q.ny, q.d, accumulate, scales, in.x, terms);
  return cudaGetLastError();
}

/// The temperature moment sum G o S_raw that block_gradient_run leaves in the workspace.
inline double* block_moment(const block_plan& p, workspace ws) {
  return reinterpret_cast<double*>(block_base(ws) + p.b_moment.offset) + p.br;
}

/// The backward of an InfoNCE-family loss: (accumulate ? += : =) upstream dL/dX into out_x and
/// dL/dY into out_y (self mode: dL/dZ into out_x, out_y unused) and, when given, upstream
/// dL/dtau into *grad_temperature.
template <class T, bool Tf32>
cudaError_t block_backward_run(const block_plan& p, const block_inputs<T>& in, const float* row_lse,
                               const float* col_lse, rows2<T> out_x, rows2<T> out_y,
                               bool accumulate, double upstream, double* grad_temperature,
                               workspace ws, cudaStream_t caller) {
  const block_problem& q = p.problem;
  unsigned char* base = block_base(ws);
  // Coefficients: row_w, row_lse, row_q (nx), col_w, col_lse, col_q (ny).
  auto* coef = reinterpret_cast<stat_t*>(base + p.b_coef.offset);
  stat_t *rw = coef, *rl = coef + q.nx, *rq = coef + 2 * q.nx;
  stat_t *cw = coef + 3 * q.nx, *cl = cw + q.ny, *cq = cw + 2 * q.ny;
  pairwise_epilogue_args<stat_t> ep = block_device_args(q, in);
  const bool mean = q.reduction == loss_reduction::mean;
  const double wdir = q.direction_weight * upstream;
  block_count_kernel<><<<block_grid(q.nx), kBlockThreads, 0, caller>>>(ep, q.nx, q.ny, false, rq);
  block_coefficients_kernel<>
      <<<1, kBlockThreads, 0, caller>>>(row_lse, q.nx, wdir, mean, q.eps, rw, rl, rq);
  ep.row_w = rw;
  ep.row_lse = rl;
  ep.row_q = rq;
  if (q.self) {
    ep.col_w = rw;
    ep.col_lse = rl;
    ep.col_q = rq;
  } else if (q.columns) {
    block_count_kernel<><<<block_grid(q.ny), kBlockThreads, 0, caller>>>(ep, q.ny, q.nx, true, cq);
    block_coefficients_kernel<>
        <<<1, kBlockThreads, 0, caller>>>(col_lse, q.ny, wdir, mean, q.eps, cw, cl, cq);
    ep.col_w = cw;
    ep.col_lse = cl;
    ep.col_q = cq;
  }
  ep.off_target = static_cast<stat_t>(q.eps / q.row_candidates);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess)
    e = block_gradient_run<T, Tf32>(p, in, ep, out_x, out_y, accumulate, block_row_terms{}, ws,
                                    caller);
  if (e != cudaSuccess) return e;
  if (grad_temperature != nullptr)
    block_temperature_kernel<><<<1, 1, 0, caller>>>(block_moment(p, ws), q.scale, grad_temperature);
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_DETAIL_BLOCK_SWEEP_CUH
