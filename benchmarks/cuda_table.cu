// The GPU table of issue 8 (scripts/gpu_check.sh runs it last): symmetric CLIP forward+backward
// through cuda::info_nce_forward_async / _backward_async at D = 512 for each element type and
// N in {4096, ..., 1048576}: the median of CUDA-event timings, the ratio to three cuBLAS GEMMs of
// the loss's shapes timed in the same run (the floor: S = A B^T, dA = G B, dB = G^T A), and the
// extra device memory (workspace plus statistics; inputs and gradients excluded). Each cell is
// run on both paths (cuda::sweep_mode): the fused kernels and the blocked cuBLASLt sweep
// (cuda/detail/block_sweep.cuh; compiled, not yet run on a GPU when this option was added),
// beside the same floor.
//
//   contrastive_cuda_table [--d 512] [--n 4096,16384,...] [--types fp32,tf32,fp16,bf16]
//                          [--paths fused,blocked] [--cell-budget 75] [--reps 5]
//                          [--losses nt_xent,gamma,uniformity,bridge,gc,scan]
//                          [--loss-n 32768]
//                          [--loss-types bf16,fp32]
// A cell whose estimated time (from the previous N, scaled by N^2) exceeds --cell-budget seconds
// is skipped and marked so. A second table times the other losses at --loss-n beside CLIP's
// blocked time: NT-Xent, the gamma loss and the uniformity term on the blocked sweep
// (cuda/nt_xent.cuh, cuda/gamma_nce.cuh, cuda/feature_separation.cuh) with the floor of their
// products measured in the same run (three GEMMs per N x N logit matrix: two for NT-Xent's
// symmetric 2N x 2N, one for the gamma loss, one per modality for the uniformity term), the
// Brownian-bridge loss and geometric consistency (fp32 only: float and double on the GPU), and
// the throwing calls' input scan of two N x D inputs ("scan"). --losses none skips it. Returns 77
// without a GPU.

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/brownian_bridge.cuh>
#include <contrastive/cuda/feature_separation.cuh>
#include <contrastive/cuda/gamma_nce.cuh>
#include <contrastive/cuda/geometric_consistency.cuh>
#include <contrastive/cuda/info_nce.cuh>
#include <contrastive/cuda/nt_xent.cuh>

namespace {

namespace cc = contrastive::cuda;
using contrastive::index_t;

void check(cudaError_t e, const char* what) { cc::throw_on_error(e, what); }
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: cuBLAS status %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

__global__ void fill_normal_rows(float* x, index_t n, index_t d, unsigned long long seed) {
  // Rows of i.i.d. uniform(-1, 1) scaled by 1/sqrt(d): norms about 0.58, logits within +-8.3
  // at tau = 0.07, like normalised embeddings. A hash per element: no allocation, any N.
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n * d;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    unsigned long long h = (static_cast<unsigned long long>(e) + seed) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const float u = static_cast<float>(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
    x[e] = u * rsqrtf(static_cast<float>(d));
  }
}

template <class T>
__global__ void convert(const float* in, T* out, index_t n) {
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<index_t>(gridDim.x) * blockDim.x)
    out[e] = static_cast<T>(in[e]);
}

struct dtype_info {
  std::string name;
  std::size_t bytes;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Milliseconds of f() by CUDA events: warm-up (if reps > 1), then the median of reps runs.
template <class F>
double time_ms(F&& f, int reps) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  if (reps > 1) f();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    check(cudaEventRecord(a), "record");
    f();
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float t = 0;
    check(cudaEventElapsedTime(&t, a, b), "elapsed");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(ms);
}

/// Three GEMMs of the loss's shapes on an m x m tile (m = min(n, 16384)), scaled by (n / m)^2:
/// the rate is flat at these sizes, and an n x n product would not fit for large n.
double floor_ms(cublasHandle_t h, const std::string& type, index_t n, index_t d, int reps) {
  const index_t m = std::min<index_t>(n, 16384);
  const bool half_like = type == "fp16" || type == "bf16";
  const cudaDataType_t dt = type == "fp16" ? CUDA_R_16F : type == "bf16" ? CUDA_R_16BF : CUDA_R_32F;
  const std::size_t es = half_like ? 2 : 4;
  const cublasComputeType_t ct = type == "tf32" ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  cc::device_buffer a(es * m * d), b(es * m * d), s(es * m * m), ga(es * m * d), gb(es * m * d);
  check(cudaMemset(a.data(), 0, es * m * d), "memset");
  check(cudaMemset(b.data(), 0, es * m * d), "memset");
  check(cudaMemset(s.data(), 0, es * m * m), "memset");
  const float one = 1, zero = 0;
  const int M = static_cast<int>(m), D = static_cast<int>(d);
  // Row-major X (m x d) is column-major X^T (d x m). S^T = B A^T; dA^T = B^T G^T; dB^T = A^T G.
  auto run = [&] {
    check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, M, M, D, &one, b.data(), dt, D, a.data(), dt, D,
                       &zero, s.data(), dt, M, ct, CUBLAS_GEMM_DEFAULT),
          "gemm S");
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, D, M, M, &one, b.data(), dt, D, s.data(), dt, M,
                       &zero, ga.data(), dt, D, ct, CUBLAS_GEMM_DEFAULT),
          "gemm dA");
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, D, M, M, &one, a.data(), dt, D, s.data(), dt, M,
                       &zero, gb.data(), dt, D, ct, CUBLAS_GEMM_DEFAULT),
          "gemm dB");
  };
  const double t = time_ms(run, reps);
  const double r = static_cast<double>(n) / static_cast<double>(m);
  return t * r * r;
}

struct cell {
  double fwd_ms = NAN, total_ms = NAN, floor = NAN, extra_mib = NAN, loss = NAN;
  std::string note;
};

template <class T>
cell run_cell(const std::string& type, index_t n, index_t d, int reps, cublasHandle_t h,
              cc::sweep_mode path, double floor) {
  cell c;
  const cc::math_mode mode = type == "tf32" ? cc::math_mode::tf32 : cc::math_mode::fp32;
  contrastive::info_nce_options o;  // CLIP, tau = 0.07, mean
  const std::size_t nd = static_cast<std::size_t>(n) * d;
  cc::device_buffer a(sizeof(T) * nd), b(sizeof(T) * nd), ga(sizeof(T) * nd), gb(sizeof(T) * nd);
  {
    cc::device_buffer tmp(sizeof(float) * nd);
    fill_normal_rows<<<4096, 256>>>(tmp.as<float>(), n, d, 1);
    convert<T><<<4096, 256>>>(tmp.as<float>(), a.as<T>(), static_cast<index_t>(nd));
    fill_normal_rows<<<4096, 256>>>(tmp.as<float>(), n, d, 77);
    convert<T><<<4096, 256>>>(tmp.as<float>(), b.as<T>(), static_cast<index_t>(nd));
    check(cudaDeviceSynchronize(), "fill");
  }
  const std::size_t ws_bytes = cc::info_nce_workspace_bytes<T>(n, d, o, mode, path);
  cc::device_buffer ws(ws_bytes), stats(sizeof(float) * 2 * n), loss(sizeof(double)),
      gt(sizeof(double));
  c.extra_mib =
      static_cast<double>(ws_bytes + sizeof(float) * 2 * n + 2 * sizeof(double)) / (1 << 20);
  const auto va = contrastive::make_device_view(a.as<const T>(), n, d);
  const auto vb = contrastive::make_device_view(b.as<const T>(), n, d);
  const auto vga = contrastive::make_device_view(ga.as<T>(), n, d);
  const auto vgb = contrastive::make_device_view(gb.as<T>(), n, d);
  const cc::device_stats row{stats.as<float>(), n, 1}, col{stats.as<float>() + n, n, 1};
  const contrastive::workspace w{ws.data(), ws.bytes()};
  auto fwd = [&] {
    check(cc::info_nce_forward_async<T>(va, vb, row, col, loss.as<double>(), o, w, nullptr, mode,
                                        path),
          "forward");
  };
  auto both = [&] {
    fwd();
    check(cc::info_nce_backward_async<T>(va, vb, {row.data, n, 1}, {col.data, n, 1}, vga, vgb, o,
                                         1.0, gt.as<double>(), w, nullptr, mode, path),
          "backward");
  };
  c.fwd_ms = time_ms(fwd, reps);
  c.total_ms = time_ms(both, reps);
  check(cudaMemcpy(&c.loss, loss.data(), sizeof(double), cudaMemcpyDeviceToHost), "loss");
  c.floor = floor > 0 ? floor : floor_ms(h, type, n, d, std::max(reps, 3));
  return c;
}

/// Random rows a and b of n x d in type T on the device.
template <class T>
struct device_pair {
  cc::device_buffer a, b, ga, gb;
  device_pair(index_t n, index_t d) {
    const std::size_t nd = static_cast<std::size_t>(n) * d;
    a = cc::device_buffer(sizeof(T) * nd);
    b = cc::device_buffer(sizeof(T) * nd);
    ga = cc::device_buffer(sizeof(T) * nd);
    gb = cc::device_buffer(sizeof(T) * nd);
    cc::device_buffer tmp(sizeof(float) * nd);
    fill_normal_rows<<<4096, 256>>>(tmp.as<float>(), n, d, 1);
    convert<T><<<4096, 256>>>(tmp.as<float>(), a.as<T>(), static_cast<index_t>(nd));
    fill_normal_rows<<<4096, 256>>>(tmp.as<float>(), n, d, 77);
    convert<T><<<4096, 256>>>(tmp.as<float>(), b.as<T>(), static_cast<index_t>(nd));
    check(cudaDeviceSynchronize(), "fill");
  }
};

__global__ void iota_ids(std::int64_t* ids, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    ids[i] = i;
}

/// The gamma loss (rate_source::state, alpha 4), forward + backward through the async API.
template <class T>
cell run_gamma_cell(const std::string& type, index_t n, index_t d, int reps) {
  cell c;
  const cc::math_mode mode = type == "tf32" ? cc::math_mode::tf32 : cc::math_mode::fp32;
  contrastive::gamma_nce_options o;
  o.alpha = 4;
  o.temperature = 0.07;
  device_pair<T> x(n, d);
  cc::device_buffer ids(sizeof(std::int64_t) * n), lse(sizeof(float) * 2 * n),
      r(sizeof(double) * 2 * n), values(3 * sizeof(double)), gt(sizeof(double));
  iota_ids<<<1024, 256>>>(ids.as<std::int64_t>(), n);
  cc::device_normalizer_state state(n, 2);
  const std::size_t ws_bytes = cc::gamma_nce_workspace_bytes<T>(n, d, o);
  cc::device_buffer ws(ws_bytes);
  c.extra_mib = static_cast<double>(ws_bytes + lse.bytes() + r.bytes() + values.bytes()) /
                (1 << 20);  // the state (O(dataset)) excluded
  const auto va = contrastive::make_device_view(x.a.template as<const T>(), n, d);
  const auto vb = contrastive::make_device_view(x.b.template as<const T>(), n, d);
  const auto vga = contrastive::make_device_view(x.ga.template as<T>(), n, d);
  const auto vgb = contrastive::make_device_view(x.gb.template as<T>(), n, d);
  cc::gamma_nce_device_outputs out;
  out.row_lse = lse.as<float>();
  out.col_lse = lse.as<float>() + n;
  out.r_row = r.as<double>();
  out.r_col = r.as<double>() + n;
  out.values = values.as<double>();
  const contrastive::workspace w{ws.data(), ws.bytes()};
  const contrastive::vector_view<const std::int64_t, contrastive::device_memory> vids(
      ids.as<const std::int64_t>(), n);
  std::uint32_t step = 0;
  auto fwd = [&] {
    o.step = step++;
    check(cc::gamma_nce_forward_async<T>(va, vb, vids, state.view(), out, o, w, nullptr, mode),
          "gamma forward");
  };
  auto both = [&] {
    fwd();
    cc::gamma_nce_device_weights wt{out.row_lse, out.col_lse, out.r_row, out.r_col};
    check(cc::gamma_nce_backward_async<T>(va, vb, wt, vga, vgb, o, 1.0, gt.as<double>(), w, nullptr,
                                          mode),
          "gamma backward");
  };
  c.fwd_ms = time_ms(fwd, reps);
  c.total_ms = time_ms(both, reps);
  check(cudaMemcpy(&c.loss, values.data(), sizeof(double), cudaMemcpyDeviceToHost), "loss");
  return c;
}

/// The uniformity term of deep feature separation (t = 2, literal form), forward + backward.
template <class T>
cell run_uniformity_cell(const std::string& type, index_t n, index_t d, int reps) {
  cell c;
  const cc::math_mode mode = type == "tf32" ? cc::math_mode::tf32 : cc::math_mode::fp32;
  const contrastive::feature_separation_options o;
  device_pair<T> x(n, d);
  cc::device_buffer lse(sizeof(float) * 2 * n), sums(2 * sizeof(double)), loss(sizeof(double));
  const std::size_t ws_bytes = cc::feature_uniformity_workspace_bytes<T>(n, d, o);
  cc::device_buffer ws(ws_bytes);
  c.extra_mib = static_cast<double>(ws_bytes + lse.bytes() + sums.bytes()) / (1 << 20);
  const auto va = contrastive::make_device_view(x.a.template as<const T>(), n, d);
  const auto vb = contrastive::make_device_view(x.b.template as<const T>(), n, d);
  const auto vga = contrastive::make_device_view(x.ga.template as<T>(), n, d);
  const auto vgb = contrastive::make_device_view(x.gb.template as<T>(), n, d);
  cc::feature_uniformity_device_outputs out;
  out.row_lse_a = lse.as<float>();
  out.row_lse_b = lse.as<float>() + n;
  out.log_sums = sums.as<double>();
  out.loss = loss.as<double>();
  const contrastive::workspace w{ws.data(), ws.bytes()};
  auto fwd = [&] {
    check(cc::feature_uniformity_forward_async<T>(va, vb, out, o, w, nullptr, mode),
          "uniformity forward");
  };
  auto both = [&] {
    fwd();
    cc::feature_uniformity_device_weights wt{out.row_lse_a, out.row_lse_b, out.log_sums};
    check(cc::feature_uniformity_backward_async<T>(va, vb, wt, vga, vgb, o, 1.0, w, nullptr, mode),
          "uniformity backward");
  };
  c.fwd_ms = time_ms(fwd, reps);
  c.total_ms = time_ms(both, reps);
  check(cudaMemcpy(&c.loss, loss.data(), sizeof(double), cudaMemcpyDeviceToHost), "loss");
  return c;
}

/// The throwing calls' device scan of two N x D inputs for NaN / Inf (cuda/detail/checks.cuh),
/// the cost that scan_inputs = false saves.
template <class T>
cell run_scan_cell(index_t n, index_t d, int reps) {
  cell c;
  device_pair<T> x(n, d);
  const auto va = contrastive::make_device_view(x.a.template as<const T>(), n, d);
  const auto vb = contrastive::make_device_view(x.b.template as<const T>(), n, d);
  auto scan = [&] {
    cc::detail::check_finite_device("scan", "a", va, nullptr);
    cc::detail::check_finite_device("scan", "b", vb, nullptr);
  };
  c.total_ms = time_ms(scan, reps);
  c.fwd_ms = c.total_ms;
  c.extra_mib = 0;
  c.loss = 0;
  return c;
}

/// NT-Xent (tau = 0.07) on the blocked sweep: 2N rows, N of each view, forward + backward.
template <class T>
cell run_nt_xent_cell(const std::string& type, index_t n, index_t d, int reps) {
  cell c;
  const cc::math_mode mode = type == "tf32" ? cc::math_mode::tf32 : cc::math_mode::fp32;
  contrastive::nt_xent_options o;
  o.temperature = 0.07;
  device_pair<T> x(n, d);
  const std::size_t ws_bytes =
      cc::nt_xent_workspace_bytes<T>(n, d, o, mode, cc::sweep_mode::blocked);
  cc::device_buffer ws(ws_bytes), lse(sizeof(float) * 2 * n), loss(sizeof(double)),
      gt(sizeof(double));
  c.extra_mib = static_cast<double>(ws_bytes + lse.bytes()) / (1 << 20);
  const auto va = contrastive::make_device_view(x.a.template as<const T>(), n, d);
  const auto vb = contrastive::make_device_view(x.b.template as<const T>(), n, d);
  const auto vga = contrastive::make_device_view(x.ga.template as<T>(), n, d);
  const auto vgb = contrastive::make_device_view(x.gb.template as<T>(), n, d);
  const contrastive::workspace w{ws.data(), ws.bytes()};
  auto fwd = [&] {
    check(cc::nt_xent_forward_async<T>(va, vb, {lse.as<float>(), 2 * n, 1}, loss.as<double>(), o, w,
                                       nullptr, mode, cc::sweep_mode::blocked),
          "nt_xent forward");
  };
  auto both = [&] {
    fwd();
    check(cc::nt_xent_backward_async<T>(va, vb, {lse.as<const float>(), 2 * n, 1}, vga, vgb, o, 1.0,
                                        gt.as<double>(), w, nullptr, mode, cc::sweep_mode::blocked),
          "nt_xent backward");
  };
  c.fwd_ms = time_ms(fwd, reps);
  c.total_ms = time_ms(both, reps);
  check(cudaMemcpy(&c.loss, loss.data(), sizeof(double), cudaMemcpyDeviceToHost), "loss");
  return c;
}

/// The Brownian-bridge loss (t = 0.25) and geometric consistency (the Gram path), forward +
/// backward, in float: the GPU has them for float and double only.
cell run_bridge_cell(index_t n, index_t d, int reps) {
  cell c;
  device_pair<float> x(n, d), y(n, d);
  const contrastive::brownian_bridge_loss_options o;
  const auto va = contrastive::make_device_view(x.a.as<const float>(), n, d);
  const auto vb = contrastive::make_device_view(x.b.as<const float>(), n, d);
  const auto vaa = contrastive::make_device_view(y.a.as<const float>(), n, d);
  const auto ga = contrastive::make_device_view(x.ga.as<float>(), n, d);
  const auto gb = contrastive::make_device_view(x.gb.as<float>(), n, d);
  const auto gaa = contrastive::make_device_view(y.ga.as<float>(), n, d);
  cc::device_buffer ws(cc::brownian_bridge_loss_workspace_bytes(n)), t(sizeof(double) * n),
      loss(sizeof(double));
  c.extra_mib = static_cast<double>(ws.bytes() + t.bytes()) / (1 << 20);
  const contrastive::workspace w{ws.data(), ws.bytes()};
  auto fwd = [&] {
    check(cc::brownian_bridge_loss_forward_async<float>(va, vb, vaa, t.as<double>(),
                                                        loss.as<double>(), o, w, nullptr),
          "bridge forward");
  };
  auto both = [&] {
    fwd();
    check(cc::brownian_bridge_loss_backward_async<float>(va, vb, vaa, t.as<const double>(), ga, gb,
                                                         gaa, nullptr, nullptr, o, 1.0, w, nullptr),
          "bridge backward");
  };
  c.fwd_ms = time_ms(fwd, reps);
  c.total_ms = time_ms(both, reps);
  check(cudaMemcpy(&c.loss, loss.data(), sizeof(double), cudaMemcpyDeviceToHost), "loss");
  return c;
}

cell run_gc_cell(index_t n, index_t d, int reps, cublasHandle_t h) {
  cell c;
  device_pair<float> x(n, d);
  const contrastive::geometric_consistency_options o;
  const auto va = contrastive::make_device_view(x.a.as<const float>(), n, d);
  const auto vb = contrastive::make_device_view(x.b.as<const float>(), n, d);
  const auto ga = contrastive::make_device_view(x.ga.as<float>(), n, d);
  const auto gb = contrastive::make_device_view(x.gb.as<float>(), n, d);
  cc::device_buffer ws(cc::geometric_consistency_workspace_bytes<float>(n, d, o)),
      grams(sizeof(float) * cc::geometric_consistency_gram_elements(d, o)), loss(sizeof(float));
  c.extra_mib = static_cast<double>(ws.bytes() + grams.bytes()) / (1 << 20);
  const contrastive::workspace w{ws.data(), ws.bytes()};
  auto fwd = [&] {
    check(cc::geometric_consistency_forward_async<float>(va, vb, loss.as<float>(),
                                                         grams.as<float>(), o, w, h, nullptr),
          "gc forward");
  };
  auto both = [&] {
    fwd();
    check(cc::geometric_consistency_backward_async<float>(va, vb, grams.as<const float>(), ga, gb,
                                                          o, 1.0, w, h, nullptr),
          "gc backward");
  };
  c.fwd_ms = time_ms(fwd, reps);
  c.total_ms = time_ms(both, reps);
  float l = 0;
  check(cudaMemcpy(&l, loss.data(), sizeof(float), cudaMemcpyDeviceToHost), "loss");
  c.loss = l;
  return c;
}

std::vector<long long> parse_list(const std::string& s) {
  std::vector<long long> v;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) v.push_back(std::atoll(tok.c_str()));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long long> ns = {4096, 16384, 32768, 65536, 262144, 1048576};
  std::vector<std::string> types = {"bf16", "fp16", "tf32", "fp32"};
  std::vector<std::string> paths = {"fused", "blocked"};
  index_t d = 512;
  double budget_s = 75;  // N = 1048576 in bf16 and fp16 fits; fp32 and tf32 would take minutes
  int max_reps = 5;
  std::vector<std::string> losses = {"nt_xent", "gamma", "uniformity", "bridge", "gc", "scan"};
  std::vector<std::string> loss_types = {"bf16", "fp32"};
  long long loss_n = 32768;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--d")
      d = std::atoll(v.c_str());
    else if (k == "--n")
      ns = parse_list(v);
    else if (k == "--cell-budget")
      budget_s = std::atof(v.c_str());
    else if (k == "--reps")
      max_reps = std::atoi(v.c_str());
    else if (k == "--loss-n")
      loss_n = std::atoll(v.c_str());
    else if (k == "--types" || k == "--paths" || k == "--losses" || k == "--loss-types") {
      std::vector<std::string>& list = k == "--types"    ? types
                                       : k == "--paths"  ? paths
                                       : k == "--losses" ? losses
                                                         : loss_types;
      list.clear();
      std::stringstream ss(v);
      std::string t;
      while (std::getline(ss, t, ','))
        if (t != "none") list.push_back(t);
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("contrastive_cuda_table: no usable CUDA device; skipped\n");
    return 77;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  cublasHandle_t h;
  check(cublasCreate(&h), "cublasCreate");

  struct row {
    std::string type, path;
    long long n;
    cell c;
  };
  std::vector<row> rows;
  for (const std::string& type : types) {
    for (const std::string& path : paths) {
      const cc::sweep_mode sm = path == "blocked" ? cc::sweep_mode::blocked : cc::sweep_mode::fused;
      double last_total = 0;
      long long last_n = 0;
      for (long long n : ns) {
        cell c;
        const double est_s =
            last_n > 0 ? last_total / 1e3 * (double(n) / last_n) * (double(n) / last_n) : 0;
        if (est_s > budget_s) {
          char buf[96];
          std::snprintf(buf, sizeof buf,
                        "skipped: about %.0f s per call, over the %.0f s cell budget", est_s,
                        budget_s);
          c.note = buf;
        } else {
          // Fewer repetitions as the calls get long; one run (no warm-up) above 2 s.
          const int reps = est_s > 2 ? 1 : est_s > 0.3 ? 3 : max_reps;
          // The floor of (type, N) is timed once, with the first path.
          double floor = 0;
          for (const row& r : rows)
            if (r.type == type && r.n == n && r.c.floor > 0) floor = r.c.floor;
          try {
            if (type == "bf16")
              c = run_cell<__nv_bfloat16>(type, n, d, reps, h, sm, floor);
            else if (type == "fp16")
              c = run_cell<__half>(type, n, d, reps, h, sm, floor);
            else
              c = run_cell<float>(type, n, d, reps, h, sm, floor);
            last_total = c.total_ms;
            last_n = n;
          } catch (const std::exception& e) {
            c.note = e.what();
            cudaGetLastError();
          }
        }
        std::fprintf(stderr, "[table] %s %s N=%lld: %s%.2f ms\n", type.c_str(), path.c_str(), n,
                     c.note.c_str(), c.total_ms);
        rows.push_back({type, path, n, c});
      }
    }
  }
  // The other losses on the blocked sweep, beside CLIP's blocked time and their floor.
  struct loss_row {
    std::string loss, type;
    cell c, clip;
    double floor = NAN;
  };
  std::vector<loss_row> loss_rows;
  for (const std::string& type : losses.empty() ? std::vector<std::string>{} : loss_types) {
    const index_t n = static_cast<index_t>(loss_n);
    cell clip;
    double floor = NAN;
    try {
      floor = floor_ms(h, type, n, d, 3);
      clip = type == "bf16"
                 ? run_cell<__nv_bfloat16>(type, n, d, 3, h, cc::sweep_mode::blocked, floor)
             : type == "fp16" ? run_cell<__half>(type, n, d, 3, h, cc::sweep_mode::blocked, floor)
                              : run_cell<float>(type, n, d, 3, h, cc::sweep_mode::blocked, floor);
    } catch (const std::exception& e) {
      clip.note = e.what();
      cudaGetLastError();
    }
    for (const std::string& loss : losses) {
      // The floor is the pairwise losses' (three GEMMs per N x N logit matrix): NT-Xent's
      // symmetric 2N x 2N counts two (the sweep computes half), the uniformity term one per
      // modality; the other rows have none here.
      const bool pairwise = loss == "gamma" || loss == "uniformity" || loss == "nt_xent";
      loss_row lr{loss, type, {}, clip, pairwise ? (loss == "gamma" ? floor : 2 * floor) : NAN};
      try {
        const bool g = loss == "gamma";
        if (loss != "gamma" && loss != "uniformity" && loss != "bridge" && loss != "gc" &&
            loss != "scan" && loss != "nt_xent")
          throw std::runtime_error("unknown loss");
        if ((loss == "bridge" || loss == "gc") && type != "fp32")
          throw std::runtime_error("float and double only on the GPU");
        if (loss == "nt_xent")
          lr.c = type == "bf16"   ? run_nt_xent_cell<__nv_bfloat16>(type, n, d, 3)
                 : type == "fp16" ? run_nt_xent_cell<__half>(type, n, d, 3)
                                  : run_nt_xent_cell<float>(type, n, d, 3);
        else if (loss == "bridge")
          lr.c = run_bridge_cell(n, d, 3);
        else if (loss == "gc")
          lr.c = run_gc_cell(n, d, 3, h);
        else if (loss == "scan")
          lr.c = type == "bf16"   ? run_scan_cell<__nv_bfloat16>(n, d, 3)
                 : type == "fp16" ? run_scan_cell<__half>(n, d, 3)
                                  : run_scan_cell<float>(n, d, 3);
        else if (type == "bf16")
          lr.c = g ? run_gamma_cell<__nv_bfloat16>(type, n, d, 3)
                   : run_uniformity_cell<__nv_bfloat16>(type, n, d, 3);
        else if (type == "fp16")
          lr.c = g ? run_gamma_cell<__half>(type, n, d, 3)
                   : run_uniformity_cell<__half>(type, n, d, 3);
        else
          lr.c =
              g ? run_gamma_cell<float>(type, n, d, 3) : run_uniformity_cell<float>(type, n, d, 3);
      } catch (const std::exception& e) {
        lr.c.note = e.what();
        cudaGetLastError();
      }
      std::fprintf(stderr, "[table] %s %s N=%lld: %s%.2f ms\n", loss.c_str(), type.c_str(), loss_n,
                   lr.c.note.c_str(), lr.c.total_ms);
      loss_rows.push_back(lr);
    }
  }
  cublasDestroy(h);

  std::printf("\nSymmetric CLIP loss, forward + backward, D = %lld, tau = 0.07, on %s (%d SMs)\n",
              static_cast<long long>(d), prop.name, prop.multiProcessorCount);
  std::printf(
      "ms: median of CUDA-event timings; floor: three cuBLAS GEMMs of the same shapes in this "
      "run\n\n");
  std::printf(
      "| dtype | path | N | forward ms | fwd+bwd ms | cuBLAS floor ms | ratio | extra MiB | loss "
      "|\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const row& r : rows) {
    if (!r.c.note.empty()) {
      std::printf("| %s | %s | %lld | %s | | | | | |\n", r.type.c_str(), r.path.c_str(), r.n,
                  r.c.note.c_str());
      continue;
    }
    std::printf("| %s | %s | %lld | %.3f | %.3f | %.3f | %.2f | %.1f | %.6f |\n", r.type.c_str(),
                r.path.c_str(), r.n, r.c.fwd_ms, r.c.total_ms, r.c.floor, r.c.total_ms / r.c.floor,
                r.c.extra_mib, r.c.loss);
  }
  if (!loss_rows.empty()) {
    std::printf(
        "\nThe other losses on the blocked sweep, forward + backward, N = %lld, D = %lld "
        "(floor: three cuBLAS GEMMs per logit matrix, this run; vs CLIP: CLIP's blocked time, "
        "this run)\n\n",
        loss_n, static_cast<long long>(d));
    std::printf(
        "| loss | dtype | fwd+bwd ms | floor ms | ratio | CLIP ms | vs CLIP | extra MiB | loss "
        "|\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (const loss_row& r : loss_rows) {
      if (!r.c.note.empty()) {
        std::printf("| %s | %s | %s | | | | | | |\n", r.loss.c_str(), r.type.c_str(),
                    r.c.note.c_str());
        continue;
      }
      std::printf("| %s | %s | %.3f | %.3f | %.2f | %.3f | %.2f | %.1f | %.6f |\n", r.loss.c_str(),
                  r.type.c_str(), r.c.total_ms, r.floor, r.c.total_ms / r.floor, r.clip.total_ms,
                  r.c.total_ms / r.clip.total_ms, r.c.extra_mib, r.c.loss);
    }
  }
  return 0;
}
