#ifndef CONTRASTIVE_CUDA_GEOMETRIC_CONSISTENCY_CUH
#define CONTRASTIVE_CUDA_GEOMETRIC_CONSISTENCY_CUH

// L_GC (losses/geometric_consistency.hpp) on the GPU through cuBLAS: the Gram path only, O(N D^2)
// time, D x D Grams, never an N x N matrix (nvcc only; never in the umbrella).
//
//   equal weights w (the paper's L_GC):   P = V + U, Q = V - U,  A = P^T P, B = Q^T Q
//       L = (w / N) <A, B>,   dV = s (P B + Q A),  dU = s (P B - Q A),  s = 2 w upstream / N
//   unequal weights, or algorithm == gram_split:  Av = V^T V, Au = U^T U, C = V^T U
//       L = (1/N) [w_x (2 <Av, Au> - 2 tr(C C)) + w_i (<Av, Av> + <Au, Au> - 2 <C, C>)]
//       dV = s (V Mv - U Nv),  dU = s (U Mu - V Nu),  s = 4 upstream / N,
//       Mv = w_x Au + w_i Av,  Nv = w_x C + w_i C^T,  Mu = w_x Av + w_i Au,  Nu = w_x C^T + w_i C
//
// The Grams are what the CPU keeps in geometric_consistency_saved::grams: (A, B) or (Av, Au, C),
// row-major D x D each. Rows go through in chunks (packed to row-major, any input strides); the
// chunk is the GPU's own (about 128 MiB of scratch; `tile_rows` is checked but not used).
// `automatic` and `naive` mean the Gram path here; the augmented variant stays on the CPU.
// Products in T (cuBLAS S/Dgemm, fp32 or fp64 accumulation; a handle set to TF32 math gives TF32),
// the loss reduced in double with a fixed order (deterministic).
//
// Entry points:
//   cuda::geometric_consistency_workspace_bytes<T>(n, d, o)   device scratch of the _async calls
//   geometric_consistency_gram_elements(d, o)           T elements of the Gram array
//   geometric_consistency_forward_async(v, u, loss, grams, o, ws, bytes, handle, stream)
//   geometric_consistency_backward_async(v, u, grams, grad_v, grad_u, o, upstream, ws, bytes,
//                                        handle, stream)
//   geometric_consistency_forward / _backward / _forward_backward: checked (invalid_argument with
//   the CPU's messages; non-finite values and zero-norm rows found on the device), synchronised,
//   handle created when none is given; cuda::cuda_error on a CUDA or cuBLAS failure.
// The _async functions never throw: bad arguments give cudaErrorInvalidValue before any launch;
// a cuBLAS failure maps to the closest cudaError_t. They set the handle's stream and pointer mode
// for the call and restore them after.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/cuda/detail/checks.cuh"
#include "contrastive/cuda/error.cuh"
#include "contrastive/losses/geometric_consistency_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

/// What the throwing forward keeps for the backward: the loss, the form that ran and its Grams.
template <class T>
struct geometric_consistency_device_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  gc_algorithm algorithm = gc_algorithm::gram;  // gram (P/Q form) or gram_split
  double cross_modal_weight = 1, in_modal_weight = 1;
  device_buffer grams;  // geometric_consistency_gram_elements(d, o) elements of T
};

namespace detail {

namespace cd = ::contrastive::detail;

template <class T>
struct gc_nondeduced {
  using type = T;
};
template <class T>
using gc_view_t = typename gc_nondeduced<matrix_view<const T, device_memory>>::type;

/// gram (P/Q) for equal weights unless gram_split is asked for; gram_split otherwise.
inline gc_algorithm gc_cuda_form(const geometric_consistency_options& o) noexcept {
  return (o.algorithm == gc_algorithm::gram_split || !cd::gc_equal_weights(o))
             ? gc_algorithm::gram_split
             : gc_algorithm::gram;
}

inline int gc_cuda_gram_count(gc_algorithm form) noexcept {
  return form == gc_algorithm::gram ? 2 : 3;
}

constexpr std::size_t gc_align = 256;
inline std::size_t gc_round(std::size_t b) noexcept {
  return (b + gc_align - 1) / gc_align * gc_align;
}

/// Rows per chunk: four chunk x D buffers within 128 MiB, at least 256 rows, at most N.
template <class T>
index_t gc_cuda_chunk_rows(index_t n, index_t d) noexcept {
  const std::size_t per_row = 4 * static_cast<std::size_t>(d) * sizeof(T);
  std::size_t c = (std::size_t(128) << 20) / (per_row > 0 ? per_row : 1);
  if (c < 256) c = 256;
  if (c > (std::size_t(1) << 30)) c = std::size_t(1) << 30;  // cuBLAS dimensions are int
  return static_cast<index_t>(c) < n ? static_cast<index_t>(c) : n;
}

/// Scratch for a given chunk: four chunk x D buffers, four D x D factors.
template <class T>
std::size_t gc_cuda_bytes(index_t d, index_t chunk) noexcept {
  const std::size_t cd_ = static_cast<std::size_t>(chunk) * static_cast<std::size_t>(d) * sizeof(T);
  const std::size_t dd = static_cast<std::size_t>(d) * static_cast<std::size_t>(d) * sizeof(T);
  return 4 * gc_round(cd_) + 4 * gc_round(dd);
}

struct gc_scratch {
  void* buf[4];
  void* fac[4];
};

template <class T>
gc_scratch gc_carve(void* ws, index_t d, index_t chunk) noexcept {
  char* p = static_cast<char*>(ws);
  const std::size_t cd_ =
      gc_round(static_cast<std::size_t>(chunk) * static_cast<std::size_t>(d) * sizeof(T));
  const std::size_t dd =
      gc_round(static_cast<std::size_t>(d) * static_cast<std::size_t>(d) * sizeof(T));
  gc_scratch s;
  for (int k = 0; k < 4; ++k) s.buf[k] = p + k * cd_;
  for (int k = 0; k < 4; ++k) s.fac[k] = p + 4 * cd_ + k * dd;
  return s;
}

// ---- cuBLAS ----

inline cublasStatus_t gc_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, float alpha, const float* a, int lda, const float* b,
                              int ldb, float beta, float* c, int ldc) noexcept {
  return cublasSgemm(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc);
}
inline cublasStatus_t gc_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, double alpha, const double* a, int lda, const double* b,
                              int ldb, double beta, double* c, int ldc) noexcept {
  return cublasDgemm(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc);
}

inline cudaError_t from_cublas(cublasStatus_t s) noexcept {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return cudaSuccess;
    case CUBLAS_STATUS_ALLOC_FAILED:
      return cudaErrorMemoryAllocation;
    case CUBLAS_STATUS_INVALID_VALUE:
      return cudaErrorInvalidValue;
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return cudaErrorInitializationError;
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return cudaErrorNotSupported;
    case CUBLAS_STATUS_EXECUTION_FAILED: {
      const cudaError_t e = cudaGetLastError();
      return e != cudaSuccess ? e : cudaErrorLaunchFailure;
    }
    default:
      return cudaErrorUnknown;
  }
}

/// Sets the handle's stream and host pointer mode for one call; restores them on exit.
class cublas_call_scope {
 public:
  cublas_call_scope(cublasHandle_t h, cudaStream_t stream) noexcept : h_(h) {
    cublasStatus_t s = cublasGetStream(h_, &old_stream_);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasGetPointerMode(h_, &old_mode_);
    if (s == CUBLAS_STATUS_SUCCESS) {
      saved_ = true;
      s = cublasSetStream(h_, stream);
    }
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetPointerMode(h_, CUBLAS_POINTER_MODE_HOST);
    status_ = from_cublas(s);
  }
  ~cublas_call_scope() {
    if (saved_) {
      cublasSetStream(h_, old_stream_);
      cublasSetPointerMode(h_, old_mode_);
    }
  }
  cublas_call_scope(const cublas_call_scope&) = delete;
  cublas_call_scope& operator=(const cublas_call_scope&) = delete;
  cudaError_t status() const noexcept { return status_; }

 private:
  cublasHandle_t h_;
  cudaStream_t old_stream_ = nullptr;
  cublasPointerMode_t old_mode_ = CUBLAS_POINTER_MODE_HOST;
  bool saved_ = false;
  cudaError_t status_ = cudaSuccess;
};

/// A cuBLAS handle owned by a throwing wrapper that was given none.
class cublas_handle {
 public:
  explicit cublas_handle(cublasHandle_t given) : h_(given) {
    if (h_ == nullptr) {
      const cublasStatus_t s = cublasCreate(&h_);
      if (s != CUBLAS_STATUS_SUCCESS) {
        h_ = nullptr;
        throw_on_error(from_cublas(s) == cudaSuccess ? cudaErrorUnknown : from_cublas(s),
                       "cublasCreate");
      }
      owned_ = true;
    }
  }
  ~cublas_handle() {
    if (owned_) cublasDestroy(h_);
  }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  cublasHandle_t get() const noexcept { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
  bool owned_ = false;
};

// ---- kernels ----

/// Rows [r0, r0 + c) packed row-major: (V + U, V - U) when `pq`, else (V, U).
template <class T>
__global__ void gc_pack_kernel(matrix_view<const T, device_memory> v,
                               matrix_view<const T, device_memory> u, index_t r0, index_t c, T* b0,
                               T* b1, bool pq) {
  const index_t d = v.cols(), count = c * d;
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t r = e / d, k = e - (e / d) * d;
    const T a = v(r0 + r, k), b = u(r0 + r, k);
    b0[e] = pq ? a + b : a;
    b1[e] = pq ? a - b : b;
  }
}

/// Backward factors of the three-Gram form (row-major, as the CPU's f[0..3]).
template <class T>
__global__ void gc_factor_kernel(const T* g, index_t d, T wx, T wi, T* f0, T* f1, T* f2, T* f3) {
  const index_t dd = d * d;
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < dd;
       e += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t i = e / d, j = e - (e / d) * d;
    const T av = g[e], au = g[dd + e], c = g[2 * dd + e], ct = g[2 * dd + j * d + i];
    f0[e] = wx * au + wi * av;  // Mv
    f1[e] = wx * c + wi * ct;   // Nv
    f2[e] = wx * av + wi * au;  // Mu
    f3[e] = wx * ct + wi * c;   // Nu
  }
}

/// Rows [r0, r0 + c) of the gradients from the row-major products x2, x3:
/// (s (x2 + x3), s (x2 - x3)) when `sum_diff`, else (s x2, s x3); added with `accumulate`.
template <class T>
__global__ void gc_store_kernel(matrix_view<T, device_memory> gv, matrix_view<T, device_memory> gu,
                                index_t r0, index_t c, const T* x2, const T* x3, T s, bool sum_diff,
                                bool accumulate) {
  const index_t d = gv.cols(), count = c * d;
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t r = e / d, k = e - (e / d) * d;
    const T a = x2[e], b = x3[e];
    const T ov = sum_diff ? s * (a + b) : s * a;
    const T ou = sum_diff ? s * (a - b) : s * b;
    T& pv = gv(r0 + r, k);
    T& pu = gu(r0 + r, k);
    pv = accumulate ? pv + ov : ov;
    pu = accumulate ? pu + ou : ou;
  }
}

constexpr int gc_loss_threads = 256;

/// The loss from the Grams, as gc_gram_forward: double sums in a fixed order (one block).
template <class T>
__global__ void gc_loss_kernel(const T* g, index_t d, bool split, double wx, double wi,
                               double inv_n, T* loss) {
  __shared__ double sh[5][gc_loss_threads];
  const index_t dd = d * d;
  double s[5] = {0, 0, 0, 0, 0};
  for (index_t e = threadIdx.x; e < dd; e += gc_loss_threads) {
    if (!split) {
      s[0] += double(g[e]) * double(g[dd + e]);
    } else {
      const index_t i = e / d, j = e - (e / d) * d;
      const double av = double(g[e]), au = double(g[dd + e]), c = double(g[2 * dd + e]);
      const double ct = double(g[2 * dd + j * d + i]);
      s[0] += av * au;  // <Av, Au>
      s[1] += c * ct;   // tr(C C)
      s[2] += av * av;
      s[3] += au * au;
      s[4] += c * c;
    }
  }
  for (int q = 0; q < 5; ++q) sh[q][threadIdx.x] = s[q];
  __syncthreads();
  for (int w = gc_loss_threads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w)
      for (int q = 0; q < 5; ++q) sh[q][threadIdx.x] += sh[q][threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double l;
    if (!split) {
      l = wi * inv_n * sh[0][0];
    } else {
      const double cross = 2 * sh[0][0] - 2 * sh[1][0];
      const double inmod = sh[2][0] + sh[3][0] - 2 * sh[4][0];
      l = inv_n * (wx * cross + wi * inmod);
    }
    *loss = static_cast<T>(l);
  }
}

// ---- argument predicates ----

inline bool gc_options_ok(const geometric_consistency_options& o) noexcept {
  return std::isfinite(o.cross_modal_weight) && o.cross_modal_weight >= 0 &&
         std::isfinite(o.in_modal_weight) && o.in_modal_weight >= 0 && o.tile_rows > 0;
}

template <class T>
bool gc_inputs_ok(const matrix_view<const T, device_memory>& v,
                  const matrix_view<const T, device_memory>& u) noexcept {
  return matrix_ok(v) && matrix_ok(u) && v.rows() > 0 && v.cols() > 0 && v.cols() <= INT_MAX &&
         u.rows() == v.rows() && u.cols() == v.cols();
}

inline bool gc_workspace_ok(void* ws, std::size_t bytes, std::size_t need) noexcept {
  return ws != nullptr && bytes >= need && reinterpret_cast<std::uintptr_t>(ws) % 16 == 0;
}

// ---- the two sweeps (chunk given, so that tests can force several chunks) ----

template <class T>
cudaError_t gc_forward_run(const matrix_view<const T, device_memory>& v,
                           const matrix_view<const T, device_memory>& u, T* loss, T* grams,
                           const geometric_consistency_options& o, void* ws, std::size_t bytes,
                           cublasHandle_t handle, cudaStream_t stream, index_t chunk) noexcept {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "contrastive: geometric consistency on the GPU needs float or double");
  if (!gc_options_ok(o) || !gc_inputs_ok(v, u) || loss == nullptr || grams == nullptr ||
      handle == nullptr || chunk <= 0 || chunk > (index_t(1) << 30))
    return cudaErrorInvalidValue;
  const index_t n = v.rows(), d = v.cols();
  if (!gc_workspace_ok(ws, bytes, gc_cuda_bytes<T>(d, chunk))) return cudaErrorInvalidValue;
  const gc_algorithm form = gc_cuda_form(o);
  const bool pq = form == gc_algorithm::gram;
  const gc_scratch sc = gc_carve<T>(ws, d, chunk);
  T* b0 = static_cast<T*>(sc.buf[0]);
  T* b1 = static_cast<T*>(sc.buf[1]);
  const index_t dd = d * d;
  const int di = static_cast<int>(d);
  cublas_call_scope scope(handle, stream);
  if (scope.status() != cudaSuccess) return scope.status();
  for (index_t r0 = 0; r0 < n; r0 += chunk) {
    const index_t c = n - r0 < chunk ? n - r0 : chunk;
    gc_pack_kernel<T><<<grid_for(c * d), sampler_block, 0, stream>>>(v, u, r0, c, b0, b1, pq);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    // A row-major c x D buffer is the column-major D x c matrix X^T, so X^T X = gemm(N, T).
    const T beta = r0 == 0 ? T(0) : T(1);
    const int ci = static_cast<int>(c);
    cublasStatus_t s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, di, di, ci, T(1), b0, di, b0, di,
                               beta, grams, di);
    if (s == CUBLAS_STATUS_SUCCESS)
      s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, di, di, ci, T(1), b1, di, b1, di, beta,
                  grams + dd, di);
    // C = V^T U row-major is C^T = U^T V column-major.
    if (s == CUBLAS_STATUS_SUCCESS && !pq)
      s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, di, di, ci, T(1), b1, di, b0, di, beta,
                  grams + 2 * dd, di);
    if (s != CUBLAS_STATUS_SUCCESS) return from_cublas(s);
  }
  gc_loss_kernel<T><<<1, gc_loss_threads, 0, stream>>>(grams, d, !pq, o.cross_modal_weight,
                                                       o.in_modal_weight, 1.0 / double(n), loss);
  return cudaGetLastError();
}

template <class T>
cudaError_t gc_backward_run(const matrix_view<const T, device_memory>& v,
                            const matrix_view<const T, device_memory>& u, const T* grams,
                            const matrix_view<T, device_memory>& gv,
                            const matrix_view<T, device_memory>& gu,
                            const geometric_consistency_options& o, double upstream, void* ws,
                            std::size_t bytes, cublasHandle_t handle, cudaStream_t stream,
                            index_t chunk) noexcept {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "contrastive: geometric consistency on the GPU needs float or double");
  if (!gc_options_ok(o) || !gc_inputs_ok(v, u) || grams == nullptr || handle == nullptr ||
      !std::isfinite(upstream) || chunk <= 0 || chunk > (index_t(1) << 30))
    return cudaErrorInvalidValue;
  const index_t n = v.rows(), d = v.cols();
  if (!matrix_ok(gv) || !matrix_ok(gu) || gv.rows() != n || gv.cols() != d || gu.rows() != n ||
      gu.cols() != d || !writable_ok(gv) || !writable_ok(gu) || cd::views_overlap(gv, gu) ||
      cd::views_overlap(gv, v) || cd::views_overlap(gv, u) || cd::views_overlap(gu, v) ||
      cd::views_overlap(gu, u))
    return cudaErrorInvalidValue;
  if (!gc_workspace_ok(ws, bytes, gc_cuda_bytes<T>(d, chunk))) return cudaErrorInvalidValue;
  const gc_algorithm form = gc_cuda_form(o);
  const bool pq = form == gc_algorithm::gram;
  const gc_scratch sc = gc_carve<T>(ws, d, chunk);
  T* b[4];
  T* f[4];
  for (int k = 0; k < 4; ++k) {
    b[k] = static_cast<T*>(sc.buf[k]);
    f[k] = static_cast<T*>(sc.fac[k]);
  }
  const index_t dd = d * d;
  const int di = static_cast<int>(d);
  const double inv_n = 1.0 / double(n);
  const double scale = pq ? 2 * o.in_modal_weight * upstream * inv_n : 4 * upstream * inv_n;
  cublas_call_scope scope(handle, stream);
  if (scope.status() != cudaSuccess) return scope.status();
  if (!pq) {
    gc_factor_kernel<T><<<grid_for(dd), sampler_block, 0, stream>>>(
        grams, d, static_cast<T>(o.cross_modal_weight), static_cast<T>(o.in_modal_weight), f[0],
        f[1], f[2], f[3]);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  for (index_t r0 = 0; r0 < n; r0 += chunk) {
    const index_t c = n - r0 < chunk ? n - r0 : chunk;
    const int ci = static_cast<int>(c);
    gc_pack_kernel<T><<<grid_for(c * d), sampler_block, 0, stream>>>(v, u, r0, c, b[0], b[1], pq);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    // Row-major X M (c x D) is column-major M_rm^T-as-stored times X^T: gemm(N, N) of the
    // row-major factor buffer (read column-major: M^T) and the packed rows (X^T).
    cublasStatus_t s;
    if (pq) {
      // b2 = P B, b3 = Q A (A = grams, B = grams + dd)
      s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, di, ci, di, T(1), grams + dd, di, b[0], di,
                  T(0), b[2], di);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, di, ci, di, T(1), grams, di, b[1], di, T(0),
                    b[3], di);
    } else {
      // b2 = V Mv - U Nv, b3 = U Mu - V Nu
      s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, di, ci, di, T(1), f[0], di, b[0], di, T(0),
                  b[2], di);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, di, ci, di, T(-1), f[1], di, b[1], di, T(1),
                    b[2], di);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, di, ci, di, T(1), f[2], di, b[1], di, T(0),
                    b[3], di);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = gc_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, di, ci, di, T(-1), f[3], di, b[0], di, T(1),
                    b[3], di);
    }
    if (s != CUBLAS_STATUS_SUCCESS) return from_cublas(s);
    gc_store_kernel<T><<<grid_for(c * d), sampler_block, 0, stream>>>(
        gv, gu, r0, c, b[2], b[3], static_cast<T>(scale), pq, o.accumulate);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// ---- host checks (the CPU's messages) ----

template <class T>
void gc_check_inputs(const char* fn, const matrix_view<const T, device_memory>& v,
                     const matrix_view<const T, device_memory>& u,
                     const geometric_consistency_options& o) {
  cd::gc_check_options(fn, o);
  check_matrix(fn, "a", v);
  check_matrix(fn, "b", u);
  check_pair_shape(fn, v, u);
  CONTRASTIVE_CHECK(v.cols() <= INT_MAX, fn, ": D = ", v.cols(), " exceeds cuBLAS's int range");
}

}  // namespace detail

/// Bytes of device scratch the _async calls need for an N x D problem.
template <class T>
std::size_t geometric_consistency_workspace_bytes(
    index_t n, index_t d, const geometric_consistency_options& o = {}) noexcept {
  (void)o;
  if (n <= 0 || d <= 0) return 0;
  return detail::gc_cuda_bytes<T>(d, detail::gc_cuda_chunk_rows<T>(n, d));
}

/// Elements of the Gram array (2 D^2 for the P/Q form, 3 D^2 for the three-Gram form).
inline std::size_t geometric_consistency_gram_elements(
    index_t d, const geometric_consistency_options& o = {}) noexcept {
  return static_cast<std::size_t>(detail::gc_cuda_gram_count(detail::gc_cuda_form(o))) *
         static_cast<std::size_t>(d) * static_cast<std::size_t>(d);
}

// ---- asynchronous, noexcept ----

/// L_GC forward: writes the loss (one T, device memory) and the Grams the backward needs
/// (`grams`: geometric_consistency_gram_elements(D, o) elements of device memory).
template <class T>
cudaError_t geometric_consistency_forward_async(detail::gc_view_t<T> v, detail::gc_view_t<T> u,
                                                T* loss, T* grams,
                                                const geometric_consistency_options& o,
                                                workspace ws, cublasHandle_t handle,
                                                cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  const std::size_t scratch_bytes = ws.bytes;
  if (!detail::gc_inputs_ok(v, u)) return cudaErrorInvalidValue;
  return detail::gc_forward_run<T>(v, u, loss, grams, o, scratch, scratch_bytes, handle, stream,
                                   detail::gc_cuda_chunk_rows<T>(v.rows(), v.cols()));
}

/// L_GC backward: writes (or, with o.accumulate, adds) upstream * dL/dv and dL/du, from the Grams
/// of a forward with the same options.
template <class T>
cudaError_t geometric_consistency_backward_async(
    detail::gc_view_t<T> v, detail::gc_view_t<T> u, const T* grams,
    matrix_view<T, device_memory> grad_v, matrix_view<T, device_memory> grad_u,
    const geometric_consistency_options& o, double upstream, workspace ws, cublasHandle_t handle,
    cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  const std::size_t scratch_bytes = ws.bytes;
  if (!detail::gc_inputs_ok(v, u)) return cudaErrorInvalidValue;
  return detail::gc_backward_run<T>(v, u, grams, grad_v, grad_u, o, upstream, scratch,
                                    scratch_bytes, handle, stream,
                                    detail::gc_cuda_chunk_rows<T>(v.rows(), v.cols()));
}

// ---- checked and synchronised ----

/// L_GC forward; `handle`: a cuBLAS handle to use (one is created for the call when null).
template <class TV>
geometric_consistency_device_saved<std::remove_const_t<TV>> geometric_consistency_forward(
    matrix_view<TV, device_memory> v, detail::gc_view_t<std::remove_const_t<TV>> u,
    const geometric_consistency_options& o = {}, cublasHandle_t handle = nullptr,
    cudaStream_t stream = 0) {
  using T = std::remove_const_t<TV>;
  constexpr const char* fn = "cuda::geometric_consistency_forward";
  const matrix_view<const T, device_memory> vv = v;
  detail::gc_check_inputs<T>(fn, vv, u, o);
  if (o.scan_inputs) {
    detail::check_rows(fn, "a", vv, stream);
    detail::check_rows(fn, "b", u, stream);
  }
  const index_t n = vv.rows(), d = vv.cols();
  geometric_consistency_device_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.algorithm = detail::gc_cuda_form(o);
  saved.cross_modal_weight = o.cross_modal_weight;
  saved.in_modal_weight = o.in_modal_weight;
  saved.grams = device_buffer(geometric_consistency_gram_elements(d, o) * sizeof(T));
  device_buffer loss(sizeof(T));
  device_buffer ws(cuda::geometric_consistency_workspace_bytes<T>(n, d, o));
  detail::cublas_handle h(handle);
  throw_on_error(
      geometric_consistency_forward_async<T>(vv, u, loss.as<T>(), saved.grams.template as<T>(), o,
                                             workspace{ws.data(), ws.bytes()}, h.get(), stream),
      "cuda::geometric_consistency_forward_async");
  throw_on_error(
      cudaMemcpyAsync(&saved.loss, loss.data(), sizeof(T), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return saved;
}

/// L_GC backward: writes (or adds) upstream * dL/dv and dL/du.
template <class T>
void geometric_consistency_backward(detail::gc_view_t<T> v, detail::gc_view_t<T> u,
                                    const geometric_consistency_device_saved<T>& saved,
                                    matrix_view<T, device_memory> grad_v,
                                    matrix_view<T, device_memory> grad_u,
                                    const geometric_consistency_options& o = {},
                                    double upstream = 1.0, cublasHandle_t handle = nullptr,
                                    cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::geometric_consistency_backward";
  detail::gc_check_inputs<T>(fn, v, u, o);
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  const index_t n = v.rows(), d = v.cols();
  CONTRASTIVE_CHECK(saved.n == n && saved.d == d, fn, ": 'saved' belongs to a ", saved.n, " x ",
                    saved.d, " problem, the inputs are ", n, " x ", d);
  CONTRASTIVE_CHECK(saved.cross_modal_weight == o.cross_modal_weight &&
                        saved.in_modal_weight == o.in_modal_weight,
                    fn, ": 'saved' was computed with other weights (", saved.cross_modal_weight,
                    ", ", saved.in_modal_weight, ") than these (", o.cross_modal_weight, ", ",
                    o.in_modal_weight, ")");
  // The form follows `saved` (its Grams).
  geometric_consistency_options po = o;
  po.algorithm = saved.algorithm;
  CONTRASTIVE_CHECK(
      (saved.algorithm == gc_algorithm::gram || saved.algorithm == gc_algorithm::gram_split) &&
          detail::gc_cuda_form(po) == saved.algorithm && saved.grams.data() != nullptr &&
          saved.grams.bytes() == geometric_consistency_gram_elements(d, po) * sizeof(T),
      fn, ": 'saved' is incomplete (not produced by the matching forward)");
  detail::check_matrix(fn, "grad_a", grad_v);
  detail::check_matrix(fn, "grad_b", grad_u);
  detail::check_shape(fn, "grad_a", grad_v, n, d, "the shape of the inputs");
  detail::check_shape(fn, "grad_b", grad_u, n, d, "the shape of the inputs");
  detail::check_writable_layout(fn, "grad_a", grad_v);
  detail::check_writable_layout(fn, "grad_b", grad_u);
  detail::check_no_alias(fn, "grad_a", grad_v, "a", v);
  detail::check_no_alias(fn, "grad_a", grad_v, "b", u);
  detail::check_no_alias(fn, "grad_b", grad_u, "a", v);
  detail::check_no_alias(fn, "grad_b", grad_u, "b", u);
  detail::check_no_alias(fn, "grad_b", grad_u, "grad_a", grad_v);
  if (o.scan_inputs) {
    detail::check_rows(fn, "a", v, stream);
    detail::check_rows(fn, "b", u, stream);
  }
  device_buffer ws(cuda::geometric_consistency_workspace_bytes<T>(n, d, po));
  detail::cublas_handle h(handle);
  throw_on_error(geometric_consistency_backward_async<T>(
                     v, u, saved.grams.template as<const T>(), grad_v, grad_u, po, upstream,
                     workspace{ws.data(), ws.bytes()}, h.get(), stream),
                 "cuda::geometric_consistency_backward_async");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

/// Forward and backward in one call; returns the loss.
template <class T>
T geometric_consistency_forward_backward(detail::gc_view_t<T> v, detail::gc_view_t<T> u,
                                         matrix_view<T, device_memory> grad_v,
                                         matrix_view<T, device_memory> grad_u,
                                         const geometric_consistency_options& o = {},
                                         cublasHandle_t handle = nullptr, cudaStream_t stream = 0) {
  detail::cublas_handle h(handle);
  const geometric_consistency_device_saved<T> saved =
      geometric_consistency_forward<const T>(v, u, o, h.get(), stream);
  geometric_consistency_backward<T>(v, u, saved, grad_v, grad_u, o, 1.0, h.get(), stream);
  return saved.loss;
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::geometric_consistency_* functions land here for device views.
template <class V>
struct device_backend<geometric_consistency_tag, V> {
  static constexpr bool available = true;
  static cuda::geometric_consistency_device_saved<V> forward(
      const matrix_view<const V, device_memory>& a, const matrix_view<const V, device_memory>& b,
      const geometric_consistency_options& o) {
    return cuda::geometric_consistency_forward<const V>(a, b, o);
  }
  static void backward(const matrix_view<const V, device_memory>& a,
                       const matrix_view<const V, device_memory>& b,
                       const cuda::geometric_consistency_device_saved<V>& saved,
                       const matrix_view<V, device_memory>& ga,
                       const matrix_view<V, device_memory>& gb,
                       const geometric_consistency_options& o, double upstream) {
    cuda::geometric_consistency_backward<V>(a, b, saved, ga, gb, o, upstream);
  }
};
}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_GEOMETRIC_CONSISTENCY_CUH
