#ifndef CONTRASTIVE_ADAPTERS_TORCH_HPP
#define CONTRASTIVE_ADAPTERS_TORCH_HPP

// LibTorch / ATen adapter (optional; not included by the umbrella header). at::Tensor carries its
// element type and device at run time, while a matrix_view's are compile-time, so a tensor is
// given to the library through a typed handle:
//
//   contrastive::torch_matrix<float> a(tensor);           // a 2-D CPU float tensor, any strides
//   auto loss = contrastive::info_nce_forward(a, b, opt).loss;
//
// torch_matrix<T> views host (CPU) memory; under nvcc, torch_cuda_matrix<T> views a CUDA tensor
// as matrix_view<T, device_memory> (T = float, __half or __nv_bfloat16 for at::kHalf and
// at::kBFloat16). CPU accessors (tensor.accessor<T, 2>()) are tensors too. Nothing is copied:
// the view covers the tensor's storage with its strides (in elements), so contiguous, row-strided,
// transposed and other strided 2-D tensors all work; the library packs what its kernels need.
// A wrong element type, device or rank throws contrastive::invalid_argument.

#if __has_include(<ATen/ATen.h>)  // without ATen this header declares nothing

#  include <ATen/ATen.h>

#  include <type_traits>
#  include <utility>

#  include "contrastive/core/config.hpp"
#  include "contrastive/core/error.hpp"
#  include "contrastive/core/matrix_view.hpp"
#  include "contrastive/core/traits.hpp"

#  if defined(__CUDACC__)
#    include <cuda_bf16.h>
#    include <cuda_fp16.h>
#  endif

CONTRASTIVE_NAMESPACE_BEGIN

namespace detail {

/// The ATen scalar type of a library element type (const ignored).
template <class T>
struct torch_scalar_type;
template <>
struct torch_scalar_type<float> {
  static constexpr at::ScalarType value = at::kFloat;
};
template <>
struct torch_scalar_type<double> {
  static constexpr at::ScalarType value = at::kDouble;
};
template <>
struct torch_scalar_type<at::Half> {
  static constexpr at::ScalarType value = at::kHalf;
};
template <>
struct torch_scalar_type<at::BFloat16> {
  static constexpr at::ScalarType value = at::kBFloat16;
};
#  if defined(__CUDACC__)
template <>
struct torch_scalar_type<__half> {
  static constexpr at::ScalarType value = at::kHalf;
};
template <>
struct torch_scalar_type<__nv_bfloat16> {
  static constexpr at::ScalarType value = at::kBFloat16;
};
#  endif

/// Checks rank and element type; the device is checked by the caller.
template <class T>
void torch_check_matrix(const at::Tensor& t, const char* what) {
  using V = std::remove_const_t<T>;
  CONTRASTIVE_CHECK(t.defined(), what, ": undefined tensor");
  CONTRASTIVE_CHECK(t.dim() == 2, what, ": tensor has ", t.dim(), " dimensions, expected 2");
  CONTRASTIVE_CHECK(t.scalar_type() == torch_scalar_type<V>::value, what, ": tensor has dtype ",
                    c10::toString(t.scalar_type()), ", expected ",
                    c10::toString(torch_scalar_type<V>::value));
}

template <class T, class Space>
matrix_view<T, Space> torch_matrix_view(const at::Tensor& t) {
  // data_ptr() already includes the storage offset; strides are in elements.
  return matrix_view<T, Space>(reinterpret_cast<T*>(t.data_ptr()), static_cast<index_t>(t.size(0)),
                               static_cast<index_t>(t.size(1)), static_cast<index_t>(t.stride(0)),
                               static_cast<index_t>(t.stride(1)));
}

}  // namespace detail

/// A typed handle of a 2-D CPU at::Tensor with element type T (float or double for the losses;
/// const T for a read-only view). Holds a reference-counted handle, so it may outlive the
/// expression it was made from; the memory is the tensor's own.
template <class T>
class torch_matrix {
 public:
  explicit torch_matrix(at::Tensor t) : t_(std::move(t)) {
    detail::torch_check_matrix<T>(t_, "torch_matrix");
    CONTRASTIVE_CHECK(t_.device().is_cpu(), "torch_matrix: tensor is on ", t_.device().str(),
                      ", expected the CPU (use torch_cuda_matrix in a file compiled by nvcc)");
  }
  const at::Tensor& tensor() const noexcept { return t_; }
  matrix_view<T> view() const { return detail::torch_matrix_view<T, host_memory>(t_); }

 private:
  at::Tensor t_;
};

template <class T>
struct tensor_traits<torch_matrix<T>> {
  static matrix_view<T> view(const torch_matrix<T>& t) { return t.view(); }
};

/// CPU accessors: tensor.accessor<T, 2>() (or a const one) view the tensor's memory directly.
template <class T, template <class> class PtrTraits, class I>
struct tensor_traits<at::TensorAccessor<T, 2, PtrTraits, I>> {
  static matrix_view<T> view(const at::TensorAccessor<T, 2, PtrTraits, I>& a) {
    return matrix_view<T>(a.data(), static_cast<index_t>(a.size(0)),
                          static_cast<index_t>(a.size(1)), static_cast<index_t>(a.stride(0)),
                          static_cast<index_t>(a.stride(1)));
  }
};

#  if defined(__CUDACC__)
/// A typed handle of a 2-D CUDA at::Tensor: views device memory (matrix_view<T, device_memory>),
/// so the generic entry points take the CUDA path (include the loss's cuda/ header). T is float,
/// __half (at::kHalf) or __nv_bfloat16 (at::kBFloat16), optionally const.
template <class T>
class torch_cuda_matrix {
 public:
  explicit torch_cuda_matrix(at::Tensor t) : t_(std::move(t)) {
    detail::torch_check_matrix<T>(t_, "torch_cuda_matrix");
    CONTRASTIVE_CHECK(t_.device().is_cuda(), "torch_cuda_matrix: tensor is on ", t_.device().str(),
                      ", expected a CUDA device");
  }
  const at::Tensor& tensor() const noexcept { return t_; }
  matrix_view<T, device_memory> view() const {
    return detail::torch_matrix_view<T, device_memory>(t_);
  }

 private:
  at::Tensor t_;
};

template <class T>
struct tensor_traits<torch_cuda_matrix<T>> {
  static matrix_view<T, device_memory> view(const torch_cuda_matrix<T>& t) { return t.view(); }
};
#  endif

/// The host view of a 2-D CPU tensor of element type T, checked (no handle kept: the caller keeps
/// the tensor alive).
template <class T>
matrix_view<T> torch_view(const at::Tensor& t) {
  detail::torch_check_matrix<T>(t, "torch_view");
  CONTRASTIVE_CHECK(t.device().is_cpu(), "torch_view: tensor is on ", t.device().str(),
                    ", expected the CPU");
  return detail::torch_matrix_view<T, host_memory>(t);
}

#  if defined(__CUDACC__)
/// The device view of a 2-D CUDA tensor of element type T, checked.
template <class T>
matrix_view<T, device_memory> torch_device_view(const at::Tensor& t) {
  detail::torch_check_matrix<T>(t, "torch_device_view");
  CONTRASTIVE_CHECK(t.device().is_cuda(), "torch_device_view: tensor is on ", t.device().str(),
                    ", expected a CUDA device");
  return detail::torch_matrix_view<T, device_memory>(t);
}
#  endif

CONTRASTIVE_NAMESPACE_END

#endif  // __has_include(<ATen/ATen.h>)
#endif  // CONTRASTIVE_ADAPTERS_TORCH_HPP
