#ifndef CONTRASTIVE_TORCH_INFO_NCE_CUDA_CUH
#define CONTRASTIVE_TORCH_INFO_NCE_CUDA_CUH

// CUDA kernels of the InfoNCE / CLIP and NT-Xent ops (nvcc only), with the signatures of the CPU
// kernels in torch/info_nce.hpp. They run the library's _async entry points on the tensors'
// memory (row-major rows with any row stride; other layouts are made contiguous first) on the
// current stream, with the workspace taken from PyTorch's caching allocator, and never
// synchronise: the loss is written to a device tensor and the upstream gradient multiplies the
// input gradients on the device. float32, float16 and bfloat16 inputs (as autocast hands them
// over); float32 statistics and loss. float32 inputs use TF32 tensor cores when
// torch.backends.cuda.matmul.allow_tf32 is set. Labels (multiple positives) are CPU-only in the
// library, and the GPU path does not scan its inputs for NaN / Inf (a non-finite loss results).

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <tuple>
#include <type_traits>

#include "contrastive/adapters/torch.hpp"
#include "contrastive/cuda/info_nce.cuh"
#include "contrastive/cuda/nt_xent.cuh"
#include "contrastive/torch/common.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace libtorch {
namespace cuda_detail {

/// The CUDA element type of an ATen dtype.
template <class F>
void dispatch_cuda_type(const char* fn, at::ScalarType t, F&& f) {
  switch (t) {
    case at::kFloat:
      f(float{});
      break;
    case at::kHalf:
      f(__half{});
      break;
    case at::kBFloat16:
      f(__nv_bfloat16{});
      break;
    default:
      TORCH_CHECK_VALUE(false, fn, ": dtype ", c10::toString(t),
                        " is not supported on CUDA (float32, float16, bfloat16)");
  }
}

/// A CUDA input the kernels accept as it is (unit column stride, row stride >= columns), or a
/// contiguous copy of it.
inline at::Tensor device_layout(const at::Tensor& x) {
  const bool ok = x.size(0) == 0 || x.size(1) == 0 ||
                  (x.stride(1) == 1 && (x.size(0) <= 1 || x.stride(0) >= x.size(1)));
  return ok ? x : x.contiguous();
}

inline void check_pair_cuda(const char* fn, const at::Tensor& a, const at::Tensor& b) {
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  TORCH_CHECK_VALUE(a.is_cuda(), fn, ": 'a' is on ", a.device(), ", expected a CUDA device");
  check_same_device(fn, a, "a", b, "b");
  check_same_dtype(fn, a, "a", b, "b");
}

inline void check_no_labels(const char* fn, const c10::optional<at::Tensor>& l) {
  TORCH_CHECK_VALUE(!l.has_value() || !l->defined(), fn,
                    ": labels (multiple positives) are not supported on CUDA yet; use CPU tensors");
}

template <class T>
cuda::math_mode math_for() {
  if (std::is_same<T, float>::value && at::globalContext().allowTF32CuBLAS())
    return cuda::math_mode::tf32;
  return cuda::math_mode::fp32;
}

/// Raises ValueError with the library's message for a rejected problem, RuntimeError for a CUDA
/// failure.
inline void check_status(const char* fn, const std::string& problem, cudaError_t status) {
  TORCH_CHECK_VALUE(problem.empty(), problem);
  TORCH_CHECK(status == cudaSuccess, fn, ": CUDA error ", cudaGetErrorString(status));
}

inline at::Tensor workspace_tensor(std::size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<std::int64_t>(bytes)}, like.options().dtype(at::kByte));
}

template <class T>
cuda::device_view<T> in_view(const at::Tensor& x) {
  return cuda::device_view<T>(reinterpret_cast<const T*>(x.data_ptr()), x.size(0), x.size(1),
                              x.stride(0), x.stride(1));
}

template <class T>
cuda::device_out_view<T> out_view(const at::Tensor& x) {
  return cuda::device_out_view<T>(reinterpret_cast<T*>(x.data_ptr()), x.size(0), x.size(1),
                                  x.stride(0), x.stride(1));
}

inline cuda::device_stats stats_view(const at::Tensor& x) {
  return cuda::device_stats(x.numel() ? x.data_ptr<float>() : nullptr, x.numel(), 1);
}

inline cuda::device_const_stats const_stats_view(const at::Tensor& x) {
  return cuda::device_const_stats(x.numel() ? x.data_ptr<float>() : nullptr, x.numel(), 1);
}

}  // namespace cuda_detail

// ---- InfoNCE / CLIP ----------------------------------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> info_nce_forward_cuda(
    const at::Tensor& a_in, const at::Tensor& b_in, const c10::optional<at::Tensor>& labels_a,
    const c10::optional<at::Tensor>& labels_b, double temperature, double label_smoothing,
    bool symmetric, std::int64_t reduction) {
  const char* fn = "info_nce_forward";
  cuda_detail::check_pair_cuda(fn, a_in, b_in);
  cuda_detail::check_no_labels(fn, labels_a);
  cuda_detail::check_no_labels(fn, labels_b);
  const c10::cuda::OptionalCUDAGuard guard(a_in.device());
  const at::Tensor a = cuda_detail::device_layout(a_in), b = cuda_detail::device_layout(b_in);
  info_nce_options o;
  o.temperature = temperature;
  o.label_smoothing = label_smoothing;
  o.symmetric = symmetric;
  o.reduction = to_reduction(fn, reduction);
  const std::int64_t n = a.size(0);
  const auto f32 = a.options().dtype(at::kFloat);
  at::Tensor loss64 = at::empty({}, a.options().dtype(at::kDouble));
  at::Tensor row = at::empty({n}, f32), col = at::empty({symmetric ? n : 0}, f32);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cuda_detail::dispatch_cuda_type(fn, a.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const auto va = cuda_detail::in_view<T>(a), vb = cuda_detail::in_view<T>(b);
    const cuda::math_mode m = cuda_detail::math_for<T>();
    const std::string problem = cuda::detail::info_nce_problem<T>(fn, va, vb, o, m);
    TORCH_CHECK_VALUE(problem.empty(), problem);
    const std::size_t bytes = cuda::info_nce_workspace_bytes<T>(n, a.size(1), o, m);
    at::Tensor ws = cuda_detail::workspace_tensor(bytes, a);
    const cudaError_t st = cuda::info_nce_forward_async<T>(
        va, vb, cuda_detail::stats_view(row), cuda_detail::stats_view(col),
        loss64.data_ptr<double>(), o, workspace{ws.data_ptr(), bytes}, stream, m);
    cuda_detail::check_status(fn, {}, st);
  });
  const at::Tensor none = at::empty({0}, a.options().dtype(at::kLong));
  return std::make_tuple(loss64.to(at::kFloat), row, col, none, none.clone());
}

inline std::tuple<at::Tensor, at::Tensor> info_nce_backward_cuda(
    const at::Tensor& grad, const at::Tensor& a_in, const at::Tensor& b_in,
    const at::Tensor& row_lse, const at::Tensor& col_lse, const at::Tensor& /*row_positives*/,
    const at::Tensor& /*col_positives*/, const c10::optional<at::Tensor>& labels_a,
    const c10::optional<at::Tensor>& labels_b, double temperature, double label_smoothing,
    bool symmetric, std::int64_t reduction) {
  const char* fn = "info_nce_backward";
  cuda_detail::check_pair_cuda(fn, a_in, b_in);
  cuda_detail::check_no_labels(fn, labels_a);
  cuda_detail::check_no_labels(fn, labels_b);
  const c10::cuda::OptionalCUDAGuard guard(a_in.device());
  const at::Tensor a = cuda_detail::device_layout(a_in), b = cuda_detail::device_layout(b_in);
  info_nce_options o;
  o.temperature = temperature;
  o.label_smoothing = label_smoothing;
  o.symmetric = symmetric;
  o.reduction = to_reduction(fn, reduction);
  const at::Tensor row = row_lse.to(a.device(), at::kFloat).contiguous();
  const at::Tensor col = col_lse.to(a.device(), at::kFloat).contiguous();
  at::Tensor ga = at::empty_like(a, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::empty_like(b, at::MemoryFormat::Contiguous);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cuda_detail::dispatch_cuda_type(fn, a.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const auto va = cuda_detail::in_view<T>(a), vb = cuda_detail::in_view<T>(b);
    const auto vga = cuda_detail::out_view<T>(ga), vgb = cuda_detail::out_view<T>(gb);
    const cuda::math_mode m = cuda_detail::math_for<T>();
    const auto vrow = cuda_detail::const_stats_view(row);
    const auto vcol = symmetric ? cuda_detail::const_stats_view(col) : cuda::device_const_stats{};
    const std::string problem =
        cuda::detail::info_nce_backward_problem<T>(fn, va, vb, vrow, vcol, vga, vgb, o, 1.0, m);
    TORCH_CHECK_VALUE(problem.empty(), problem);
    const std::size_t bytes = cuda::info_nce_workspace_bytes<T>(a.size(0), a.size(1), o, m);
    at::Tensor ws = cuda_detail::workspace_tensor(bytes, a);
    // Upstream 1 here; the device-side upstream multiplies below (no host read of `grad`).
    const cudaError_t st = cuda::info_nce_backward_async<T>(
        va, vb, vrow, vcol, vga, vgb, o, 1.0, nullptr, workspace{ws.data_ptr(), bytes}, stream, m);
    cuda_detail::check_status(fn, {}, st);
  });
  const at::Tensor up = grad.to(a.device(), at::kFloat).reshape({});
  ga.mul_(up);
  gb.mul_(up);
  return std::make_tuple(ga, gb);
}

// ---- NT-Xent -----------------------------------------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> nt_xent_forward_cuda(
    const at::Tensor& a_in, const at::Tensor& b_in, const c10::optional<at::Tensor>& labels,
    double temperature, double label_smoothing, std::int64_t reduction) {
  const char* fn = "nt_xent_forward";
  cuda_detail::check_pair_cuda(fn, a_in, b_in);
  cuda_detail::check_no_labels(fn, labels);
  const c10::cuda::OptionalCUDAGuard guard(a_in.device());
  const at::Tensor a = cuda_detail::device_layout(a_in), b = cuda_detail::device_layout(b_in);
  nt_xent_options o;
  o.temperature = temperature;
  o.label_smoothing = label_smoothing;
  o.reduction = to_reduction(fn, reduction);
  const std::int64_t n = a.size(0);
  at::Tensor loss64 = at::empty({}, a.options().dtype(at::kDouble));
  at::Tensor lse = at::empty({2 * n}, a.options().dtype(at::kFloat));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cuda_detail::dispatch_cuda_type(fn, a.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const auto va = cuda_detail::in_view<T>(a), vb = cuda_detail::in_view<T>(b);
    const cuda::math_mode m = cuda_detail::math_for<T>();
    const std::string problem = cuda::detail::nt_xent_problem<T>(fn, va, vb, o, m);
    TORCH_CHECK_VALUE(problem.empty(), problem);
    const std::size_t bytes = cuda::nt_xent_workspace_bytes<T>(n, a.size(1), o, m);
    at::Tensor ws = cuda_detail::workspace_tensor(bytes, a);
    const cudaError_t st = cuda::nt_xent_forward_async<T>(
        va, vb, cuda_detail::stats_view(lse), loss64.data_ptr<double>(), o,
        workspace{ws.data_ptr(), bytes}, stream, m);
    cuda_detail::check_status(fn, {}, st);
  });
  return std::make_tuple(loss64.to(at::kFloat), lse, at::empty({0}, a.options().dtype(at::kLong)));
}

inline std::tuple<at::Tensor, at::Tensor> nt_xent_backward_cuda(
    const at::Tensor& grad, const at::Tensor& a_in, const at::Tensor& b_in,
    const at::Tensor& lse_in, const at::Tensor& /*positives*/,
    const c10::optional<at::Tensor>& labels, double temperature, double label_smoothing,
    std::int64_t reduction) {
  const char* fn = "nt_xent_backward";
  cuda_detail::check_pair_cuda(fn, a_in, b_in);
  cuda_detail::check_no_labels(fn, labels);
  const c10::cuda::OptionalCUDAGuard guard(a_in.device());
  const at::Tensor a = cuda_detail::device_layout(a_in), b = cuda_detail::device_layout(b_in);
  nt_xent_options o;
  o.temperature = temperature;
  o.label_smoothing = label_smoothing;
  o.reduction = to_reduction(fn, reduction);
  const at::Tensor lse = lse_in.to(a.device(), at::kFloat).contiguous();
  at::Tensor ga = at::empty_like(a, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::empty_like(b, at::MemoryFormat::Contiguous);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cuda_detail::dispatch_cuda_type(fn, a.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const auto va = cuda_detail::in_view<T>(a), vb = cuda_detail::in_view<T>(b);
    const auto vga = cuda_detail::out_view<T>(ga), vgb = cuda_detail::out_view<T>(gb);
    const cuda::math_mode m = cuda_detail::math_for<T>();
    const auto vlse = cuda_detail::const_stats_view(lse);
    const std::string problem =
        cuda::detail::nt_xent_backward_problem<T>(fn, va, vb, vlse, vga, vgb, o, 1.0, m);
    TORCH_CHECK_VALUE(problem.empty(), problem);
    const std::size_t bytes = cuda::nt_xent_workspace_bytes<T>(a.size(0), a.size(1), o, m);
    at::Tensor ws = cuda_detail::workspace_tensor(bytes, a);
    const cudaError_t st = cuda::nt_xent_backward_async<T>(
        va, vb, vlse, vga, vgb, o, 1.0, nullptr, workspace{ws.data_ptr(), bytes}, stream, m);
    cuda_detail::check_status(fn, {}, st);
  });
  const at::Tensor up = grad.to(a.device(), at::kFloat).reshape({});
  ga.mul_(up);
  gb.mul_(up);
  return std::make_tuple(ga, gb);
}

}  // namespace libtorch
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_TORCH_INFO_NCE_CUDA_CUH
