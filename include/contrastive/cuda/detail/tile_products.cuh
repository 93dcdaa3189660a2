#ifndef CONTRASTIVE_CUDA_DETAIL_TILE_PRODUCTS_CUH
#define CONTRASTIVE_CUDA_DETAIL_TILE_PRODUCTS_CUH

// The tile products of the fused kernels (nvcc only; internal): shared-memory tile layouts, the
// WMMA (bf16 / fp16 / tf32) and SIMT (fp32) policies that multiply them, and the staging of
// global rows into shared memory.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "contrastive/core/config.hpp"
#include "contrastive/cuda/detail/elements.cuh"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

constexpr int kThreads = 256;  // 8 warps
constexpr int kBM = 64;        // rows of X per CTA
constexpr int kBN = 64;        // rows of Y per tile
constexpr int kBK = 32;        // D chunk of the logit product
constexpr int kBD = 64;        // D chunk of the gradient product

// ---- tile products -------------------------------------------------------------------------
// A policy multiplies shared-memory tiles. E is the shared-memory element type. Layouts (row
// major, leading dimensions in elements, all multiples of 16 bytes):
//   xs[BM][kLdK], ys[BN][kLdK]        D chunk of X and Y rows
//   sf[BM][kLdS] (float)              the logit tile (raw dot products)
//   gs[BM][kLdG], yd[BN][kLdG]        the gradient tile and a D chunk of Y rows
//   acc[BM][ld_acc] (float)           the gradient accumulator (shared or global memory)

template <class E>
struct tile_layout {
  static constexpr int pad = 16 / sizeof(E);  // one 16-byte vector per row against bank conflicts
  static constexpr int ld_k = kBK + pad;
  static constexpr int ld_s = kBN + 4;
  static constexpr int ld_g = kBD + pad;  // kBN == kBD, so gs and yd share it
  static_assert(kBN == kBD, "gs and yd share one leading dimension");
};

/// Tensor cores through WMMA. Warp w owns fragment row w/2 and fragment columns 2(w%2)+{0,1} of a
/// 64 x 64 output, for both products.
template <class E, class FragE, int K>
struct wmma_policy {
  using L = tile_layout<E>;
  using acc_frag = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, K, float>;
  using a_row =
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, K, FragE, nvcuda::wmma::row_major>;
  using b_col =
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, K, FragE, nvcuda::wmma::col_major>;
  using b_row =
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, K, FragE, nvcuda::wmma::row_major>;

  struct state {
    acc_frag c[2];
  };

  template <class F>
  __device__ static void round(F& f) {
    if constexpr (std::is_same<FragE, nvcuda::wmma::precision::tf32>::value) {
#pragma unroll
      for (int t = 0; t < f.num_elements; ++t) f.x[t] = nvcuda::wmma::__float_to_tf32(f.x[t]);
    }
  }

  __device__ static void zero(state& st) {
    nvcuda::wmma::fill_fragment(st.c[0], 0.0f);
    nvcuda::wmma::fill_fragment(st.c[1], 0.0f);
  }

  /// st += xs ys^T over one kBK chunk.
  __device__ static void logits(state& st, const E* xs, const E* ys) {
    const int w = threadIdx.x / 32, fr = w / 2, fc = (w % 2) * 2;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += K) {
      a_row a;
      nvcuda::wmma::load_matrix_sync(a, xs + 16 * fr * L::ld_k + kk, L::ld_k);
      round(a);
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        b_col b;
        nvcuda::wmma::load_matrix_sync(b, ys + 16 * (fc + c) * L::ld_k + kk, L::ld_k);
        round(b);
        nvcuda::wmma::mma_sync(st.c[c], a, b, st.c[c]);
      }
    }
  }

  __device__ static void store_logits(const state& st, float* sf) {
    const int w = threadIdx.x / 32, fr = w / 2, fc = (w % 2) * 2;
#pragma unroll
    for (int c = 0; c < 2; ++c)
      nvcuda::wmma::store_matrix_sync(sf + 16 * fr * L::ld_s + 16 * (fc + c), st.c[c], L::ld_s,
                                      nvcuda::wmma::mem_row_major);
  }

  /// acc[:, 0:kBD] += gs yd (acc points at the chunk's first column).
  __device__ static void gradient(float* acc, int ld_acc, const E* gs, const E* yd) {
    const int w = threadIdx.x / 32, fr = w / 2, fc = (w % 2) * 2;
    acc_frag c[2];
#pragma unroll
    for (int j = 0; j < 2; ++j)
      nvcuda::wmma::load_matrix_sync(c[j], acc + 16 * fr * ld_acc + 16 * (fc + j), ld_acc,
                                     nvcuda::wmma::mem_row_major);
#pragma unroll
    for (int kk = 0; kk < kBN; kk += K) {
      a_row a;
      nvcuda::wmma::load_matrix_sync(a, gs + 16 * fr * L::ld_g + kk, L::ld_g);
      round(a);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        b_row b;
        nvcuda::wmma::load_matrix_sync(b, yd + kk * L::ld_g + 16 * (fc + j), L::ld_g);
        round(b);
        nvcuda::wmma::mma_sync(c[j], a, b, c[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j)
      nvcuda::wmma::store_matrix_sync(acc + 16 * fr * ld_acc + 16 * (fc + j), c[j], ld_acc,
                                      nvcuda::wmma::mem_row_major);
  }
};

/// Plain fp32 FMAs. Thread t owns rows ty + 16 r and columns tx + 16 c (r, c < 4), ty = t / 16,
/// tx = t % 16, of a 64 x 64 output: strided so that a warp reads distinct banks.
struct simt_policy {
  using L = tile_layout<float>;
  struct state {
    float c[4][4];
  };
  __device__ static void zero(state& st) {
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) st.c[r][c] = 0.f;
  }
  __device__ static void logits(state& st, const float* xs, const float* ys) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll 8
    for (int k = 0; k < kBK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) a[r] = xs[(ty + 16 * r) * L::ld_k + k];
#pragma unroll
      for (int c = 0; c < 4; ++c) b[c] = ys[(tx + 16 * c) * L::ld_k + k];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) st.c[r][c] = fmaf(a[r], b[c], st.c[r][c]);
    }
  }
  __device__ static void store_logits(const state& st, float* sf) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) sf[(ty + 16 * r) * L::ld_s + tx + 16 * c] = st.c[r][c];
  }
  __device__ static void gradient(float* acc, int ld_acc, const float* gs, const float* yd) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    float c4[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) c4[r][c] = acc[(ty + 16 * r) * ld_acc + tx + 16 * c];
#pragma unroll 8
    for (int k = 0; k < kBN; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) a[r] = gs[(ty + 16 * r) * L::ld_g + k];
#pragma unroll
      for (int c = 0; c < 4; ++c) b[c] = yd[k * L::ld_g + tx + 16 * c];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) c4[r][c] = fmaf(a[r], b[c], c4[r][c]);
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[(ty + 16 * r) * ld_acc + tx + 16 * c] = c4[r][c];
  }
};

/// Input type In, math mode -> shared-memory element and tile policy.
template <class In, bool Tf32>
struct policy_for;
template <>
struct policy_for<float, false> {
  using elem = float;
  using type = simt_policy;
};
template <>
struct policy_for<float, true> {
  using elem = float;
  using type = wmma_policy<float, nvcuda::wmma::precision::tf32, 8>;
};
template <>
struct policy_for<__half, false> {
  using elem = __half;
  using type = wmma_policy<__half, __half, 16>;
};
template <>
struct policy_for<__nv_bfloat16, false> {
  using elem = __nv_bfloat16;
  using type = wmma_policy<__nv_bfloat16, __nv_bfloat16, 16>;
};

// ---- global -> shared staging --------------------------------------------------------------

/// dst[r][c] = src row (row0 + r), column (col0 + c), zero outside the matrix; rows x cols tile.
/// Vectorised (16 bytes per thread) when the caller proved alignment (vec).
template <class In, class E, int Rows, int Cols>
__device__ inline void load_tile(E* dst, int ld_dst, const rows2<const In>& src, index_t n,
                                 index_t row0, index_t d, index_t col0, bool vec) {
  constexpr int V = 16 / sizeof(In);
  if (std::is_same<In, E>::value && vec) {
    constexpr int vecs_per_row = Cols / V;
    for (int e = threadIdx.x; e < Rows * vecs_per_row; e += kThreads) {
      const int r = e / vecs_per_row, c = (e % vecs_per_row) * V;
      const index_t gi = row0 + r, gk = col0 + c;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (gi < n && gk < d) v = *reinterpret_cast<const uint4*>(src.row(gi) + gk);  // d % V == 0
      *reinterpret_cast<uint4*>(dst + r * ld_dst + c) = v;
    }
  } else {
    for (int e = threadIdx.x; e < Rows * Cols; e += kThreads) {
      const int r = e / Cols, c = e % Cols;
      const index_t gi = row0 + r, gk = col0 + c;
      float v = 0.f;
      if (gi < n && gk < d) v = to_float(src.row(gi)[gk]);
      dst[r * ld_dst + c] = from_float<E>(v);
    }
  }
}

}  // namespace detail
}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_DETAIL_TILE_PRODUCTS_CUH
