#ifndef CONTRASTIVE_CUDA_DETAIL_FUSED_KERNELS_CUH
#define CONTRASTIVE_CUDA_DETAIL_FUSED_KERNELS_CUH

// Fused streaming kernels of the InfoNCE family (nvcc only; never in the umbrella).
//
// One CTA owns a block of BM rows of X and sweeps the rows of Y in tiles of BN. Each logit tile
// S = X_I Y_J^T is computed on tensor cores (WMMA: bf16/fp16 m16n16k16, tf32 m16n16k8, fp32 on the
// FMA units), staged once through shared memory, and consumed there:
// - stats kernel: online (max, sum-exp) per row of X and, for CLIP, per column (row of Y); both are
//   merged into global packed (max, sum) words with a compare-and-swap, so one sweep gives both
//   directions and CTAs may split the Y range;
// - gradient kernel: recomputes the tile, forms the softmax-gradient tile G (core/math.hpp,
//   softmax_gradient_entry, shared with and tested on the CPU) and accumulates G Y_J into a BM x D
//   fp32 accumulator held in shared memory (global scratch when D is too large). Called with
//   (X, Y) = (A, B) it writes dA, with (B, A) dB; NT-Xent (X = Y = Z) needs one call.
// These general kernels serve every type and D; bf16/fp16 with D <= 512 take resident_kernel
// below (the X block and whole Y tiles in shared memory, the accumulator in registers).
// No N x N matrix exists anywhere: extra memory is O(N) statistics plus, for small N (when the Y
// range is split across CTAs) or large D, an fp32 N x D gradient scratch.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "contrastive/core/config.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/cuda/detail/elements.cuh"
#include "contrastive/cuda/detail/tile_products.cuh"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

// ---- packed (max, sum) statistics ----------------------------------------------------------

__device__ __host__ inline unsigned long long pack_stat(float m, float s) {
#ifdef __CUDA_ARCH__
  return (static_cast<unsigned long long>(__float_as_uint(s)) << 32) | __float_as_uint(m);
#else
  unsigned mu, su;
  std::memcpy(&mu, &m, 4);
  std::memcpy(&su, &s, 4);
  return (static_cast<unsigned long long>(su) << 32) | mu;
#endif
}

/// Merges (m, s) into *addr with compare-and-swap: the online-LSE merge of core/math.hpp.
__device__ inline void merge_stat(unsigned long long* addr, float m, float s) {
  if (!(s > 0.f)) return;  // the identity (-inf, 0)
  unsigned long long old = *reinterpret_cast<volatile unsigned long long*>(addr), assumed;
  do {
    assumed = old;
    online_lse<float> a{__uint_as_float(static_cast<unsigned>(assumed)),
                        __uint_as_float(static_cast<unsigned>(assumed >> 32))};
    a.merge(online_lse<float>{m, s});
    old = atomicCAS(addr, assumed, pack_stat(a.max, a.sum));
  } while (old != assumed);
}

/// First tile of this CTA's sweep over count tiles in the statistics kernels: 128 offsets spread
/// evenly, so that the CTAs of one wave fold distinct column tiles (a shared tile serialises their
/// compare-and-swap merges) while Y still streams from L2.
__device__ inline index_t stagger(index_t count) {
  return (static_cast<index_t>(blockIdx.x) % 128) * count / 128;
}

/// Online (max, sum) of a warp's lanes in groups of G consecutive lanes, returned to every lane.
template <int G>
__device__ inline online_lse<float> group_merge(online_lse<float> v) {
#pragma unroll
  for (int off = 1; off < G; off *= 2) {
    online_lse<float> o{__shfl_xor_sync(0xffffffffu, v.max, off),
                        __shfl_xor_sync(0xffffffffu, v.sum, off)};
    v.merge(o);
  }
  return v;
}

// ---- kernels -------------------------------------------------------------------------------

/// The problem one sweep sees: rows of X against rows of Y, logits scale * <x_i, y_j>.
template <class In>
struct sweep_args {
  rows2<const In> x, y;
  index_t nx = 0, ny = 0, d = 0;
  float scale = 1.f;
  bool mask_self = false;   // NT-Xent: j == i is not a candidate
  bool vec = false;         // 16-byte loads are aligned
  int tiles_per_split = 0;  // Y tiles per CTA along grid.y
};

template <class E>
struct stats_smem {
  E xs[kBM * tile_layout<E>::ld_k];
  E ys[kBN * tile_layout<E>::ld_k];
  float sf[kBM * tile_layout<E>::ld_s];
  float row_m[kBM], row_s[kBM];
};

/// Forward sweep: per-row (and with col != nullptr per-column) packed (max, sum-exp) statistics.
template <class In, bool Tf32>
__global__ void __launch_bounds__(kThreads)
    stats_kernel(sweep_args<In> p, unsigned long long* row, unsigned long long* col) {
  using E = typename policy_for<In, Tf32>::elem;
  using P = typename policy_for<In, Tf32>::type;
  using L = tile_layout<E>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<stats_smem<E>*>(smem_raw);

  const index_t i0 = static_cast<index_t>(blockIdx.x) * kBM;
  const index_t tiles = (p.ny + kBN - 1) / kBN;
  const index_t t_begin = static_cast<index_t>(blockIdx.y) * p.tiles_per_split;
  const index_t t_end = t_begin + p.tiles_per_split < tiles ? t_begin + p.tiles_per_split : tiles;
  if (threadIdx.x < kBM) {
    sm.row_m[threadIdx.x] = -infinity<float>();
    sm.row_s[threadIdx.x] = 0.f;
  }
  const int lane4 = threadIdx.x % 4, slot = threadIdx.x / 4;  // 4 threads per row or column
  // Start at the CTA's own offset (see resident_kernel): no contention on the column words.
  const index_t count = t_end > t_begin ? t_end - t_begin : 0;
  const index_t shift = count == 0 ? 0 : stagger(count);

  for (index_t step = 0; step < count; ++step) {
    const index_t t = t_begin + (step + shift) % count;
    const index_t j0 = t * kBN;
    typename P::state st;
    P::zero(st);
    for (index_t k0 = 0; k0 < p.d; k0 += kBK) {
      __syncthreads();  // previous chunk (or the previous tile's statistics) fully read
      load_tile<In, E, kBM, kBK>(sm.xs, L::ld_k, p.x, p.nx, i0, p.d, k0, p.vec);
      load_tile<In, E, kBN, kBK>(sm.ys, L::ld_k, p.y, p.ny, j0, p.d, k0, p.vec);
      __syncthreads();
      P::logits(st, sm.xs, sm.ys);
    }
    P::store_logits(st, sm.sf);
    __syncthreads();

    {  // rows: thread (slot, lane4) folds columns lane4, lane4 + 4, ...
      const int r = slot;
      const index_t gi = i0 + r;
      online_lse<float> v;
      if (gi < p.nx) {
        for (int c = lane4; c < kBN; c += 4) {
          const index_t gj = j0 + c;
          if (gj < p.ny && !(p.mask_self && gj == gi)) v.push(p.scale * sm.sf[r * L::ld_s + c]);
        }
      }
      v = group_merge<4>(v);
      if (lane4 == 0 && gi < p.nx) {
        online_lse<float> cur{sm.row_m[r], sm.row_s[r]};
        cur.merge(v);
        sm.row_m[r] = cur.max;
        sm.row_s[r] = cur.sum;
      }
    }
    if (col != nullptr) {  // columns: thread (slot, lane4) folds rows lane4, lane4 + 4, ...
      const int c = slot;
      const index_t gj = j0 + c;
      online_lse<float> v;
      if (gj < p.ny) {
        for (int r = lane4; r < kBM; r += 4) {
          const index_t gi = i0 + r;
          if (gi < p.nx && !(p.mask_self && gj == gi)) v.push(p.scale * sm.sf[r * L::ld_s + c]);
        }
      }
      v = group_merge<4>(v);
      if (lane4 == 0 && gj < p.ny) merge_stat(col + gj, v.max, v.sum);
    }
  }
  __syncthreads();
  if (threadIdx.x < kBM && i0 + threadIdx.x < p.nx)
    merge_stat(row + i0 + threadIdx.x, sm.row_m[threadIdx.x], sm.row_s[threadIdx.x]);
}

/// What the gradient sweep needs besides the inputs: G entries come from
/// softmax_gradient_entry(L, lse_x[i], lse_y[j], w_x, w_y, target).
template <class Out>
struct gradient_args {
  const float* lse_x = nullptr;  // one per row of X
  const float* lse_y = nullptr;  // one per row of Y
  float w_x = 0.f, w_y = 0.f;    // weights of the two softmax terms
  float on_target = 1.f;         // target weight of the positive, 1 - eps
  float off_target = 0.f;        // target weight of every candidate, eps / |C|
  index_t pos_shift = 0;         // positive of row i: row (i + pos_shift) mod ny of Y
  float out_scale = 1.f;         // scale * upstream * reduction weight
  bool accumulate = false;       // add into out
  rows2<Out> out;                // gradient rows of X (direct mode)
  float* scratch = nullptr;      // fp32 nx x d: atomics (split mode) or the accumulator (large D)
  bool split = false;            // several CTAs per row block: atomically add into scratch
  bool acc_in_smem = true;
  int ld_acc = 0;            // accumulator leading dimension (>= d rounded up to kBD)
  double* moment = nullptr;  // sum of G_ij <x_i, y_j> (for the temperature gradient)
  float moment_weight = 0.f;
};

template <class E>
struct gradient_smem_fixed {
  E xs[kBM * tile_layout<E>::ld_k];
  E ys[kBN * tile_layout<E>::ld_k];
  float sf[kBM * tile_layout<E>::ld_s];
  E gs[kBM * tile_layout<E>::ld_g];
  float lse_x[kBM], lse_y[kBN];
  double red[kThreads / 32];
};
// yd (a D chunk of Y rows) reuses xs/ys, which are idle while the gradient product runs.
template <class E>
struct yd_fits_in_staging : std::integral_constant<bool, kBN * tile_layout<E>::ld_g <=
                                                             (kBM + kBN) * tile_layout<E>::ld_k> {};

template <class In, bool Tf32, class Out>
__global__ void __launch_bounds__(kThreads)
    gradient_kernel(sweep_args<In> p, gradient_args<Out> g) {
  using E = typename policy_for<In, Tf32>::elem;
  using P = typename policy_for<In, Tf32>::type;
  using L = tile_layout<E>;
  static_assert(yd_fits_in_staging<E>::value, "staging too small for the gradient chunk");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<gradient_smem_fixed<E>*>(smem_raw);
  E* yd = sm.xs;  // contiguous with ys
  const index_t i0 = static_cast<index_t>(blockIdx.x) * kBM;
  constexpr std::size_t fixed = (sizeof(gradient_smem_fixed<E>) + 127) / 128 * 128;
  float* acc =
      g.acc_in_smem ? reinterpret_cast<float*>(smem_raw + fixed) : g.scratch + i0 * g.ld_acc;
  const index_t d_round = (p.d + kBD - 1) / kBD * kBD;

  for (index_t e = threadIdx.x; e < kBM * d_round; e += kThreads) {
    const index_t r = e / d_round, c = e % d_round;
    acc[r * g.ld_acc + c] = 0.f;
  }
  if (threadIdx.x < kBM)
    sm.lse_x[threadIdx.x] =
        g.lse_x != nullptr && i0 + threadIdx.x < p.nx ? g.lse_x[i0 + threadIdx.x] : 0.f;

  const index_t tiles = (p.ny + kBN - 1) / kBN;
  const index_t t_begin = static_cast<index_t>(blockIdx.y) * p.tiles_per_split;
  const index_t t_end = t_begin + p.tiles_per_split < tiles ? t_begin + p.tiles_per_split : tiles;
  double moment = 0;

  for (index_t t = t_begin; t < t_end; ++t) {
    const index_t j0 = t * kBN;
    typename P::state st;
    P::zero(st);
    for (index_t k0 = 0; k0 < p.d; k0 += kBK) {
      __syncthreads();
      load_tile<In, E, kBM, kBK>(sm.xs, L::ld_k, p.x, p.nx, i0, p.d, k0, p.vec);
      load_tile<In, E, kBN, kBK>(sm.ys, L::ld_k, p.y, p.ny, j0, p.d, k0, p.vec);
      if (k0 == 0 && threadIdx.x < kBN)
        sm.lse_y[threadIdx.x] =
            g.lse_y != nullptr && j0 + threadIdx.x < p.ny ? g.lse_y[j0 + threadIdx.x] : 0.f;
      __syncthreads();
      P::logits(st, sm.xs, sm.ys);
    }
    P::store_logits(st, sm.sf);
    __syncthreads();

    for (int e = threadIdx.x; e < kBM * kBN; e += kThreads) {
      const int r = e / kBN, c = e % kBN;
      const index_t gi = i0 + r, gj = j0 + c;
      float v = 0.f;
      if (gi < p.nx && gj < p.ny && !(p.mask_self && gi == gj)) {
        const float dot = sm.sf[r * L::ld_s + c];
        index_t pos = gi + g.pos_shift;
        if (pos >= p.ny) pos -= p.ny;
        const float target = (gj == pos ? g.on_target : 0.f) + g.off_target;
        v = softmax_gradient_entry(p.scale * dot, sm.lse_x[r], sm.lse_y[c], g.w_x, g.w_y, target);
        moment += static_cast<double>(v) * dot;
      }
      sm.gs[r * L::ld_g + c] = from_float<E>(v);
    }

    for (index_t d0 = 0; d0 < p.d; d0 += kBD) {
      __syncthreads();  // gs complete; yd (aliasing xs/ys) free
      load_tile<In, E, kBN, kBD>(yd, L::ld_g, p.y, p.ny, j0, p.d, d0, p.vec);
      __syncthreads();
      P::gradient(acc + d0, g.ld_acc, sm.gs, yd);
    }
  }

  if (g.moment != nullptr && g.moment_weight != 0.f) {
    for (int off = 16; off > 0; off /= 2) moment += __shfl_xor_sync(0xffffffffu, moment, off);
    if (threadIdx.x % 32 == 0) sm.red[threadIdx.x / 32] = moment;
  }
  __syncthreads();
  if (g.moment != nullptr && g.moment_weight != 0.f && threadIdx.x == 0) {
    double s = 0;
    for (int w = 0; w < kThreads / 32; ++w) s += sm.red[w];
    atomicAdd(g.moment, s * g.moment_weight);
  }

  // Write out: direct (this CTA owns the rows) or added into the fp32 scratch (split mode).
  for (index_t e = threadIdx.x; e < kBM * p.d; e += kThreads) {
    const index_t r = e / p.d, c = e % p.d, gi = i0 + r;
    if (gi >= p.nx) continue;
    const float v = acc[r * g.ld_acc + c] * g.out_scale;
    if (g.split) {
      atomicAdd(g.scratch + gi * p.d + c, v);
    } else if (g.acc_in_smem) {
      Out* o = g.out.row(gi) + c;
      *o = from_float<Out>(g.accumulate ? to_float(*o) + v : v);
    } else {
      acc[r * g.ld_acc + c] = v;  // scaled in place; finish_kernel copies it out
    }
  }
}

// ---- resident kernel (16-bit inputs, D <= 512) ------------------------------------------------
// The general kernels above stream D in chunks, reload the X block for every Y tile and, in the
// gradient kernel, keep the accumulator in shared memory: latency- and L2-bound. For bf16/fp16
// with D <= 512 everything fits on one multiprocessor instead: the X block stays in shared memory
// for the CTA's life, whole Y tiles arrive by cp.async one tile ahead of their use (two stages),
// and the gradient accumulator (64 x D fp32) lives in registers across 16 warps.

constexpr int kRThreads = 512;  // 16 warps
constexpr int kRMaxD = 512;
static_assert(kRThreads / 64 * 64 == kRThreads && kRMaxD <= 64 * 8,
              "issue_rows covers 512 columns per pass");

/// Shared-memory bytes of the resident kernel for padded width dp (a multiple of 64).
__host__ __device__ constexpr std::size_t resident_smem_bytes(index_t dp) {
  return sizeof(std::uint16_t) * 3 * kBM * static_cast<std::size_t>(dp + 8) +  // xs, ys[2]
         sizeof(float) * kBM * (kBN + 4) +                                     // sf
         sizeof(std::uint16_t) * kBM * (kBN + 8) +                             // gs
         sizeof(float) * kBM + sizeof(double) * (kRThreads / 32) + 256;
}

__device__ inline void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/// Issues the copy of rows [row0, row0 + 64) x columns [0, dp) into dst (ld = dp + 8), zeros
/// outside the matrix. Needs d % 8 == 0 and 16-byte aligned rows. Thread t copies the 16 bytes at
/// column 8 (t % 64) of rows t / 64, t / 64 + 8, ...: one row pointer per row, no division.
template <class E>
__device__ inline void issue_rows(E* dst, int ld, const rows2<const E>& src, index_t n,
                                  index_t row0, index_t d, int dp) {
  const int c = (threadIdx.x % 64) * 8;
  if (c >= dp) return;
  const int rows_left = n - row0 < kBM ? static_cast<int>(n - row0) : kBM;
  for (int r = threadIdx.x / 64; r < kBM; r += kRThreads / 64) {
    const bool valid = r < rows_left && c < d;
    const E* g = valid ? src.row(row0 + r) + c : src.p0;
    cp_async16(dst + r * ld + c, g, valid);
  }
}

/// Grad = false: the forward statistics (as stats_kernel). Grad = true: the gradient sweep (as
/// gradient_kernel, with acc_in_smem = true).
template <class E, bool Grad>
__global__ void __launch_bounds__(kRThreads, 1)
    resident_kernel(sweep_args<E> p, unsigned long long* row, unsigned long long* col,
                    gradient_args<E> g) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const int dp = static_cast<int>((p.d + 63) / 64 * 64);
  const int ld = dp + 8;
  E* xs = reinterpret_cast<E*>(smem_raw);
  E* ys0 = xs + kBM * ld;
  float* sf = reinterpret_cast<float*>(ys0 + 2 * kBM * ld);
  E* gs = reinterpret_cast<E*>(sf + kBM * (kBN + 4));
  float* lse_x = reinterpret_cast<float*>(gs + kBM * (kBN + 8));
  double* red = reinterpret_cast<double*>(lse_x + kBM);
  constexpr int ld_s = kBN + 4, ld_g = kBN + 8;

  const int warp = threadIdx.x / 32, fr = warp / 4, fq = warp % 4;
  const index_t i0 = static_cast<index_t>(blockIdx.x) * kBM;
  const index_t tiles = (p.ny + kBN - 1) / kBN;
  const index_t t_begin = static_cast<index_t>(blockIdx.y) * p.tiles_per_split;
  const index_t t_end = t_begin + p.tiles_per_split < tiles ? t_begin + p.tiles_per_split : tiles;
  const index_t count = t_end > t_begin ? t_end - t_begin : 0;
  // The statistics sweep starts each CTA at its own offset: CTAs that meet on one column tile
  // serialise on its compare-and-swap words.
  const index_t shift = Grad || count == 0 ? 0 : stagger(count);

  if (Grad && threadIdx.x < kBM)
    lse_x[threadIdx.x] =
        g.lse_x != nullptr && i0 + threadIdx.x < p.nx ? g.lse_x[i0 + threadIdx.x] : 0.f;
  online_lse<float> row_acc;  // statistics: thread (slot, lane8)'s part of row slot

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kRMaxD / 64];
  const int nf = dp / 64;  // accumulator fragments in use: column blocks fq + 4 j, j < nf
#pragma unroll
  for (int j = 0; j < kRMaxD / 64; ++j) wmma::fill_fragment(acc[j], 0.f);
  double moment = 0;

  issue_rows(xs, ld, p.x, p.nx, i0, p.d, dp);
  if (count > 0) issue_rows(ys0, ld, p.y, p.ny, (t_begin + shift % count) * kBN, p.d, dp);
  cp_async_commit();

  for (index_t step = 0; step < count; ++step) {
    const index_t t = t_begin + (step + shift) % count;
    const index_t j0 = t * kBN;
    E* ys = ys0 + (step & 1) * kBM * ld;
    if (step + 1 < count) {
      const index_t tn = t_begin + (step + 1 + shift) % count;
      issue_rows(ys0 + ((step + 1) & 1) * kBM * ld, ld, p.y, p.ny, tn * kBN, p.d, dp);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    {  // S tile: warp (fr, fq) owns one 16 x 16 fragment; two chains over k for latency
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c0, c1;
      wmma::fill_fragment(c0, 0.f);
      wmma::fill_fragment(c1, 0.f);
      for (int k = 0; k < dp; k += 32) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> a0, a1;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> b0, b1;
        wmma::load_matrix_sync(a0, xs + 16 * fr * ld + k, ld);
        wmma::load_matrix_sync(b0, ys + 16 * fq * ld + k, ld);
        wmma::load_matrix_sync(a1, xs + 16 * fr * ld + k + 16, ld);
        wmma::load_matrix_sync(b1, ys + 16 * fq * ld + k + 16, ld);
        wmma::mma_sync(c0, a0, b0, c0);
        wmma::mma_sync(c1, a1, b1, c1);
      }
#pragma unroll
      for (int e = 0; e < c0.num_elements; ++e) c0.x[e] += c1.x[e];
      wmma::store_matrix_sync(sf + 16 * fr * ld_s + 16 * fq, c0, ld_s, wmma::mem_row_major);
    }
    __syncthreads();

    // Valid rows / columns of this tile and the self-similarity column of row r (r + diag).
    const int rows_ok = p.nx - i0 < kBM ? static_cast<int>(p.nx - i0) : kBM;
    const int cols_ok = p.ny - j0 < kBN ? static_cast<int>(p.ny - j0) : kBN;
    const index_t dd = i0 - j0;
    const int diag = p.mask_self && dd > -kBM && dd < kBN ? static_cast<int>(dd) : 1 << 20;
    if (!Grad) {
      const int lane8 = threadIdx.x % 8, slot = threadIdx.x / 8;  // 8 threads per row / column
      {  // row slot, columns lane8 + 8 k: folded into this thread's running pair, merged at the end
        float v[8], m = -infinity<float>();
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const int c = lane8 + 8 * k;
          v[k] = slot < rows_ok && c < cols_ok && c != slot + diag ? p.scale * sf[slot * ld_s + c]
                                                                   : -infinity<float>();
          m = fmaxf(m, v[k]);
        }
        if (m > -infinity<float>()) {
          float sum = 0.f;
#pragma unroll
          for (int k = 0; k < 8; ++k) sum += __expf(v[k] - m);  // exp(-inf) = 0
          row_acc.merge(online_lse<float>{m, sum});
        }
      }
      if (col != nullptr) {  // column slot, rows lane8 + 8 k: merged across the 8 lanes now
        float v[8], m = -infinity<float>();
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const int r = lane8 + 8 * k;
          v[k] = r < rows_ok && slot < cols_ok && slot != r + diag ? p.scale * sf[r * ld_s + slot]
                                                                   : -infinity<float>();
          m = fmaxf(m, v[k]);
        }
        float sum = 0.f;
        if (m > -infinity<float>()) {
#pragma unroll
          for (int k = 0; k < 8; ++k) sum += __expf(v[k] - m);
        }
        const online_lse<float> t = group_merge<8>(online_lse<float>{m, sum});
        if (lane8 == 0 && slot < cols_ok) merge_stat(col + j0 + slot, t.max, t.sum);
      }
    } else {
      // Thread t: column t % 64, rows t / 64 + 8 k. Its column's lse and positive test once.
      const int c = threadIdx.x % kBN;
      const index_t gj = j0 + c;
      const float ly = g.lse_y != nullptr && c < cols_ok ? g.lse_y[gj] : 0.f;
      float tile_moment = 0.f;
#pragma unroll
      for (int k = 0; k < kBM / (kRThreads / kBN); ++k) {
        const int r = threadIdx.x / kBN + (kRThreads / kBN) * k;
        float v = 0.f;
        if (r < rows_ok && c < cols_ok && c != r + diag) {
          const float dot = sf[r * ld_s + c];
          index_t pos = i0 + r + g.pos_shift;
          if (pos >= p.ny) pos -= p.ny;
          const float target = (gj == pos ? g.on_target : 0.f) + g.off_target;
          v = softmax_gradient_entry(p.scale * dot, lse_x[r], ly, g.w_x, g.w_y, target);
          tile_moment = fmaf(v, dot, tile_moment);
        }
        gs[r * ld_g + c] = from_float<E>(v);
      }
      moment += tile_moment;
      __syncthreads();
      // acc[j] (rows 16 fr, columns 16 (fq + 4 j)) += G (rows 16 fr) Y_tile (columns 16 (fq + 4 j))
#pragma unroll
      for (int k = 0; k < kBN; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> a;
        wmma::load_matrix_sync(a, gs + 16 * fr * ld_g + k, ld_g);
#pragma unroll
        for (int j = 0; j < kRMaxD / 64; ++j) {
          if (j < nf) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> b;
            wmma::load_matrix_sync(b, ys + k * ld + 16 * (fq + 4 * j), ld);
            wmma::mma_sync(acc[j], a, b, acc[j]);
          }
        }
      }
    }
    __syncthreads();  // this stage's Y tile and sf / gs are free for the next step
  }

  if (!Grad) {
    row_acc = group_merge<8>(row_acc);
    if (threadIdx.x % 8 == 0 && i0 + threadIdx.x / 8 < p.nx)
      merge_stat(row + i0 + threadIdx.x / 8, row_acc.max, row_acc.sum);
    return;
  }
  if (g.moment != nullptr && g.moment_weight != 0.f) {
    for (int off = 16; off > 0; off /= 2) moment += __shfl_xor_sync(0xffffffffu, moment, off);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = moment;
    __syncthreads();
    if (threadIdx.x == 0) {
      double s = 0;
      for (int w = 0; w < kRThreads / 32; ++w) s += red[w];
      atomicAdd(g.moment, s * g.moment_weight);
    }
  }
  // Accumulators through shared memory (the Y stages are free now), then scaled out.
  float* out = reinterpret_cast<float*>(ys0);
  const int ld_o = dp + 4;
#pragma unroll
  for (int j = 0; j < kRMaxD / 64; ++j)
    if (j < nf)
      wmma::store_matrix_sync(out + 16 * fr * ld_o + 16 * (fq + 4 * j), acc[j], ld_o,
                              wmma::mem_row_major);
  __syncthreads();
  for (index_t e = threadIdx.x; e < kBM * p.d; e += kRThreads) {
    const index_t r = e / p.d, c = e % p.d, gi = i0 + r;
    if (gi >= p.nx) continue;
    const float v = out[r * ld_o + c] * g.out_scale;
    if (g.split) {
      atomicAdd(g.scratch + gi * p.d + c, v);
    } else {
      E* o = g.out.row(gi) + c;
      *o = from_float<E>(g.accumulate ? to_float(*o) + v : v);
    }
  }
}

/// out = scratch (+ out when accumulating), converted to Out. Scratch rows have leading dimension
/// ld (d in split mode, the accumulator's ld otherwise).
template <class Out>
__global__ void finish_kernel(rows2<Out> out, const float* scratch, index_t n, index_t d,
                              index_t ld, bool accumulate) {
  const index_t total = n * d;
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = e / d, c = e % d;
    Out* o = out.row(r) + c;
    const float v = scratch[r * ld + c];
    *o = from_float<Out>(accumulate ? to_float(*o) + v : v);
  }
}

template <class Unused = void>  // a template, so the header defines it once per program
__global__ void init_stats_kernel(unsigned long long* s, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    s[i] = pack_stat(-infinity<float>(), 0.f);
}

/// lse[i] = max + log(sum) of the packed statistics (-inf for an empty set).
template <class Unused = void>  // a template, so the header defines it once per program
__global__ void finish_stats_kernel(const unsigned long long* s, float* lse, index_t n,
                                    index_t stride) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const online_lse<float> v{__uint_as_float(static_cast<unsigned>(s[i])),
                              __uint_as_float(static_cast<unsigned>(s[i] >> 32))};
    lse[i * stride] = v.sum > 0.f ? v.max + logf(v.sum) : -infinity<float>();
  }
}

/// sum[c] += column sums of rows [r0, r1) of Y in double: grid (ceil(d / 256), row chunks).
template <class In>
__global__ void column_sum_kernel(rows2<const In> y, index_t n, index_t d, index_t rows_per_chunk,
                                  double* sum) {
  const index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const index_t r0 = blockIdx.y * rows_per_chunk;
  const index_t r1 = r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n;
  double s = 0;
  for (index_t r = r0; r < r1; ++r) s += to_float(y.row(r)[c]);
  atomicAdd(sum + c, s);
}

/// Per-anchor loss terms, one warp per row of X:
///   term_i = lse_i - on * scale <x_i, y_pos(i)> - off * scale <x_i, ysum - [mask_self] x_i>
template <class In>
__global__ void loss_terms_kernel(sweep_args<In> p, const float* lse, index_t lse_stride,
                                  index_t pos_shift, float on, float off, const double* ysum,
                                  double* terms) {
  const index_t i = (blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (i >= p.nx) return;
  index_t pos = i + pos_shift;
  if (pos >= p.ny) pos -= p.ny;
  const In* x = p.x.row(i);
  const In* y = p.y.row(pos);
  double dp = 0, ds = 0;
  for (index_t c = lane; c < p.d; c += 32) {
    const double xv = to_float(x[c]);
    dp += xv * to_float(y[c]);
    if (off != 0.f) ds += xv * (ysum[c] - (p.mask_self ? xv : 0.0));
  }
  for (int o = 16; o > 0; o /= 2) {
    dp += __shfl_xor_sync(0xffffffffu, dp, o);
    ds += __shfl_xor_sync(0xffffffffu, ds, o);
  }
  if (lane == 0)
    terms[i] = static_cast<double>(lse[i * lse_stride]) - on * double(p.scale) * dp -
               off * double(p.scale) * ds;
}

/// *out = weight * sum(terms), in one block with a fixed order (deterministic).
template <class Unused = void>  // a template, so the header defines it once per program
__global__ void sum_kernel(const double* terms, index_t n, double weight, double* out, bool add) {
  __shared__ double red[1024];
  double s = 0;
  for (index_t i = threadIdx.x; i < n; i += blockDim.x) s += terms[i];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h /= 2) {
    if (static_cast<int>(threadIdx.x) < h) red[threadIdx.x] += red[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = (add ? *out : 0.0) + weight * red[0];
}

/// grad_temperature = -scale^2 * weight * moment (d tau of a loss of logits scale * dot).
template <class Unused = void>  // a template, so the header defines it once per program
__global__ void temperature_kernel(const double* moment, double weight, double scale,
                                   double* grad_temperature) {
  *grad_temperature = -scale * scale * weight * *moment;
}

}  // namespace detail
}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_DETAIL_FUSED_KERNELS_CUH
