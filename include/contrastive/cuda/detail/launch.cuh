#ifndef CONTRASTIVE_CUDA_DETAIL_LAUNCH_CUH
#define CONTRASTIVE_CUDA_DETAIL_LAUNCH_CUH

// Host side of the fused InfoNCE-family kernels (nvcc only): launch plans, workspace carving and
// the stats / loss / gradient launch sequences shared by cuda/info_nce.cuh and cuda/nt_xent.cuh.

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "contrastive/core/config.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/cuda/error.cuh"
#include "contrastive/cuda/detail/fused_kernels.cuh"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// Element types with fused kernels: float (fp32 or tf32 math), __half and __nv_bfloat16.
template <class T>
struct supported_type : std::integral_constant<bool, std::is_same<T, float>::value ||
                                                         std::is_same<T, __half>::value ||
                                                         std::is_same<T, __nv_bfloat16>::value> {};

constexpr std::size_t kWsAlign = 256;
constexpr std::size_t ws_round(std::size_t b) { return (b + kWsAlign - 1) / kWsAlign * kWsAlign; }

/// The device's multiprocessor count and opt-in shared memory per block (current device).
struct device_limits {
  int sms = 0;
  int smem_optin = 0;
};
inline cudaError_t query_limits(device_limits& l) noexcept {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l.sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&l.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  return e;
}

/// How one sweep of nx rows against ny rows is launched.
struct launch_plan {
  index_t nx = 0, ny = 0, d = 0;
  unsigned grid_x = 0;
  unsigned stats_splits = 1, stats_tiles = 0;  // grid.y and Y tiles per CTA of the stats kernel
  unsigned grad_splits = 1, grad_tiles = 0;    // the same for the gradient kernel
  bool resident = false;  // resident_kernel (16-bit inputs, D <= 512) when loads are aligned
  std::size_t resident_smem = 0;
  bool acc_in_smem = true;
  int ld_acc = 0;
  std::size_t stats_smem = 0, grad_smem = 0;
  std::size_t scratch_bytes = 0;  // fp32 gradient scratch of the gradient kernel
};

inline void split_range(index_t tiles, unsigned grid_x, unsigned target_ctas, unsigned& splits,
                        unsigned& per) {
  index_t s = (static_cast<index_t>(target_ctas) + grid_x - 1) / grid_x;
  if (s < 1) s = 1;
  if (s > tiles) s = tiles;
  const index_t p = (tiles + s - 1) / s;
  per = static_cast<unsigned>(p);
  splits = static_cast<unsigned>((tiles + p - 1) / p);
}

template <class E>
launch_plan make_launch_plan(index_t nx, index_t ny, index_t d, const device_limits& lim) {
  launch_plan p;
  p.nx = nx;
  p.ny = ny;
  p.d = d;
  const index_t tiles = (ny + kBN - 1) / kBN;
  p.grid_x = static_cast<unsigned>((nx + kBM - 1) / kBM);
  p.stats_smem = sizeof(stats_smem<E>);
  // The stats kernel fits several CTAs per multiprocessor: aim for four waves' worth of CTAs.
  const index_t dp = (d + 63) / 64 * 64;
  p.resident_smem = resident_smem_bytes(dp);
  p.resident =
      sizeof(E) == 2 && d <= kRMaxD && p.resident_smem <= static_cast<std::size_t>(lim.smem_optin);
  // Several streaming stats CTAs fit on a multiprocessor, one resident CTA: aim for four waves
  // or two.
  split_range(tiles, p.grid_x, (p.resident ? 2u : 4u) * static_cast<unsigned>(lim.sms),
              p.stats_splits, p.stats_tiles);

  const index_t d_round = (d + kBD - 1) / kBD * kBD;
  const std::size_t fixed = (sizeof(gradient_smem_fixed<E>) + 127) / 128 * 128;
  const int ld_smem = static_cast<int>(d_round) + 4;  // + 4 floats against bank conflicts
  p.acc_in_smem = fixed + sizeof(float) * kBM * static_cast<std::size_t>(ld_smem) <=
                  static_cast<std::size_t>(lim.smem_optin);
  if (p.acc_in_smem) {
    p.ld_acc = ld_smem;
    p.grad_smem = fixed + sizeof(float) * kBM * static_cast<std::size_t>(ld_smem);
    split_range(tiles, p.grid_x, static_cast<unsigned>(lim.sms), p.grad_splits, p.grad_tiles);
    p.scratch_bytes = p.grad_splits > 1 ? sizeof(float) * static_cast<std::size_t>(nx) *
                                              static_cast<std::size_t>(d)
                                        : 0;
  } else {  // the accumulator lives in global scratch, one 64-row slab per CTA; no split
    p.ld_acc = static_cast<int>(d_round);
    p.grad_smem = fixed;
    p.grad_splits = 1;
    p.grad_tiles = static_cast<unsigned>(tiles);
    p.scratch_bytes = sizeof(float) * static_cast<std::size_t>(p.grid_x) * kBM * d_round;
  }
  return p;
}

/// Carves aligned arrays out of a device workspace (no bounds slack: sizes come from the query).
struct carver {
  unsigned char* base = nullptr;
  std::size_t used = 0;
  template <class T>
  T* take(std::size_t count) {
    T* r = reinterpret_cast<T*>(base + used);
    used += ws_round(count * sizeof(T));
    return r;
  }
};
inline carver make_carver(workspace ws) {
  const auto addr = reinterpret_cast<std::uintptr_t>(ws.data);
  return carver{static_cast<unsigned char*>(ws.data), (kWsAlign - addr % kWsAlign) % kWsAlign};
}

/// Forward workspace: packed row and column statistics, the column sums for smoothing, the
/// per-anchor loss terms.
inline std::size_t forward_bytes(index_t nx, index_t ny, index_t d, bool cols) {
  return ws_round(8 * static_cast<std::size_t>(nx)) +
         (cols ? ws_round(8 * static_cast<std::size_t>(ny)) : 0) +
         2 * ws_round(sizeof(double) * static_cast<std::size_t>(d)) +
         ws_round(sizeof(double) * static_cast<std::size_t>(nx + (cols ? ny : 0))) + kWsAlign;
}
inline std::size_t backward_bytes(const launch_plan& p) {
  return ws_round(sizeof(double)) + ws_round(p.scratch_bytes) + kWsAlign;
}

template <class T>
rows2<const T> rows_of(const matrix_view<const T, device_memory>& m) {
  return rows2<const T>{m.data(), m.row_stride(), m.rows(), nullptr, 0, 0};
}
template <class T>
rows2<T> rows_of(const matrix_view<T, device_memory>& m) {
  return rows2<T>{m.data(), m.row_stride(), m.rows(), nullptr, 0, 0};
}

/// 16-byte loads are safe when every row start is 16-byte aligned and d is a whole number of
/// vectors.
template <class T>
bool vector_loads_ok(const rows2<const T>& r, index_t d) {
  constexpr index_t V = 16 / sizeof(T);
  auto ok = [&](const T* p, index_t ld, index_t n) {
    return n == 0 || (reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && (n == 1 || ld % V == 0));
  };
  return d % V == 0 && ok(r.p0, r.ld0, r.n0) && ok(r.p1, r.ld1, r.n1);
}

inline unsigned blocks_for(index_t n, unsigned threads, unsigned cap = 65535u * 4) {
  index_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return b > cap ? cap : static_cast<unsigned>(b);
}

/// Launches the stats kernel and converts the packed words into lse (row stride 1) and, when
/// col_lse is given, the column lse.
template <class T, bool Tf32>
cudaError_t launch_stats(const sweep_args<T>& a, const launch_plan& p,
                         unsigned long long* row_packed, unsigned long long* col_packed,
                         float* row_lse, index_t row_stride, float* col_lse, index_t col_stride,
                         cudaStream_t s) {
  init_stats_kernel<><<<blocks_for(p.nx, 256), 256, 0, s>>>(row_packed, p.nx);
  if (col_packed != nullptr)
    init_stats_kernel<><<<blocks_for(p.ny, 256), 256, 0, s>>>(col_packed, p.ny);
  sweep_args<T> args = a;
  args.tiles_per_split = static_cast<int>(p.stats_tiles);
  cudaError_t e = cudaSuccess;
  if constexpr (sizeof(T) == 2) {
    if (p.resident && a.vec) {
      auto kernel = resident_kernel<T, false>;
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(p.resident_smem));
      if (e != cudaSuccess) return e;
      kernel<<<dim3(p.grid_x, p.stats_splits), kRThreads, p.resident_smem, s>>>(
          args, row_packed, col_packed, gradient_args<T>{});
    }
  }
  if (!(sizeof(T) == 2 && p.resident && a.vec)) {
    auto kernel = stats_kernel<T, Tf32>;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(p.stats_smem));
    if (e != cudaSuccess) return e;
    kernel<<<dim3(p.grid_x, p.stats_splits), kThreads, p.stats_smem, s>>>(args, row_packed,
                                                                          col_packed);
  }
  finish_stats_kernel<>
      <<<blocks_for(p.nx, 256), 256, 0, s>>>(row_packed, row_lse, p.nx, row_stride);
  if (col_packed != nullptr)
    finish_stats_kernel<>
        <<<blocks_for(p.ny, 256), 256, 0, s>>>(col_packed, col_lse, p.ny, col_stride);
  return cudaGetLastError();
}

/// Column sums of all rows of y into sum[0, d) (double), for label smoothing.
template <class T>
void launch_column_sum(const rows2<const T>& y, index_t n, index_t d, double* sum, cudaStream_t s) {
  cudaMemsetAsync(sum, 0, sizeof(double) * static_cast<std::size_t>(d), s);
  const index_t chunk = 1024;
  const dim3 grid(static_cast<unsigned>((d + 255) / 256),
                  static_cast<unsigned>((n + chunk - 1) / chunk));
  column_sum_kernel<T><<<grid, 256, 0, s>>>(y, n, d, chunk, sum);
}

template <class T>
void launch_loss_terms(const sweep_args<T>& a, const float* lse, index_t lse_stride, index_t shift,
                       float on, float off, const double* ysum, double* terms, cudaStream_t s) {
  const index_t threads = a.nx * 32;
  loss_terms_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, s>>>(
      a, lse, lse_stride, shift, on, off, ysum, terms);
}

/// One gradient sweep: writes out_scale * G Y (G from g) into g.out, via scratch when the plan
/// says so. g.scratch must point at p.scratch_bytes of workspace.
template <class T, bool Tf32>
cudaError_t launch_gradient(const sweep_args<T>& a, gradient_args<T> g, const launch_plan& p,
                            cudaStream_t s) {
  sweep_args<T> args = a;
  args.tiles_per_split = static_cast<int>(p.grad_tiles);
  g.split = p.grad_splits > 1;
  g.acc_in_smem = p.acc_in_smem;
  g.ld_acc = p.ld_acc;
  if (g.split) cudaMemsetAsync(g.scratch, 0, p.scratch_bytes, s);
  const bool resident = sizeof(T) == 2 && p.resident && a.vec;
  cudaError_t e = cudaSuccess;
  if constexpr (sizeof(T) == 2) {
    if (resident) {
      g.acc_in_smem = true;  // registers, in fact: never the global accumulator
      auto kernel = resident_kernel<T, true>;
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(p.resident_smem));
      if (e != cudaSuccess) return e;
      kernel<<<dim3(p.grid_x, p.grad_splits), kRThreads, p.resident_smem, s>>>(args, nullptr,
                                                                               nullptr, g);
    }
  }
  if (!resident) {
    auto kernel = gradient_kernel<T, Tf32, T>;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(p.grad_smem));
    if (e != cudaSuccess) return e;
    kernel<<<dim3(p.grid_x, p.grad_splits), kThreads, p.grad_smem, s>>>(args, g);
  }
  if (g.split || !g.acc_in_smem) {
    const index_t ld = g.split ? p.d : p.ld_acc;
    finish_kernel<T>
        <<<blocks_for(p.nx * p.d, 256), 256, 0, s>>>(g.out, g.scratch, p.nx, p.d, ld, g.accumulate);
  }
  return cudaGetLastError();
}

/// For the throwing wrappers: runs launch(workspace, double* out) with an owned device
/// workspace of `bytes` and one device double, synchronises and returns that double (the loss,
/// or the temperature gradient). CUDA failures throw cuda_error naming fn.
template <class Launch>
double run_owned(const char* fn, std::size_t bytes, cudaStream_t stream, Launch&& launch) {
  device_buffer ws(bytes);
  device_buffer out(sizeof(double));
  throw_on_error(launch(workspace{ws.data(), ws.bytes()}, out.as<double>()), fn);
  double host = 0;
  throw_on_error(cudaMemcpyAsync(&host, out.data(), sizeof(double), cudaMemcpyDeviceToHost, stream),
                 fn);
  throw_on_error(cudaStreamSynchronize(stream), fn);
  return host;
}

/// The forward wrappers' check of the loss they return. The GPU path does not scan its inputs
/// for NaN / Inf (the CPU path does); such inputs surface here, as a non-finite loss.
inline void check_finite_loss(const char* fn, double loss, double temperature) {
  CONTRASTIVE_CHECK(std::isfinite(loss), fn, ": the loss is not finite at temperature ",
                    temperature,
                    ": the inputs hold NaN or Inf, or the logits overflow (scale the inputs down "
                    "or normalise them)");
}

}  // namespace detail
}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_DETAIL_LAUNCH_CUH
