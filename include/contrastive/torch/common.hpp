#ifndef CONTRASTIVE_TORCH_COMMON_HPP
#define CONTRASTIVE_TORCH_COMMON_HPP

// Shared helpers of the PyTorch / LibTorch front ends: argument checks that raise c10::ValueError
// (Python ValueError) with the library's message, dtype handling and option decoding.

#if __has_include(<ATen/ATen.h>)

#  include <ATen/ATen.h>
#  include <ATen/Parallel.h>
#  include <c10/util/Exception.h>
#  include <c10/util/Optional.h>

#  include <cstdint>
#  include <string>
#  include <utility>
#  include <vector>

#  include "contrastive/adapters/torch.hpp"
#  include "contrastive/core/config.hpp"
#  include "contrastive/core/error.hpp"
#  include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace libtorch {

/// Reduction codes of the ops' `int reduction` argument (Python passes "mean" / "sum").
enum reduction_id : std::int64_t { reduction_mean = 0, reduction_sum = 1 };

inline loss_reduction to_reduction(const char* fn, std::int64_t r) {
  TORCH_CHECK_VALUE(r == reduction_mean || r == reduction_sum, fn,
                    ": reduction must be 0 (mean) or 1 (sum), got ", r);
  return r == reduction_mean ? loss_reduction::mean : loss_reduction::sum;
}

/// Runs a call into the library, turning contrastive::invalid_argument into c10::ValueError
/// (ValueError in Python) with the same message.
template <class F>
auto call_library(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ::contrastive::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

inline bool is_reduced_float(at::ScalarType t) noexcept {
  return t == at::kHalf || t == at::kBFloat16;
}

/// Checks an input matrix: defined, 2-D, a floating dtype the front ends accept.
inline void check_matrix(const char* fn, const char* name, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.defined(), fn, ": '", name, "' is an undefined tensor");
  TORCH_CHECK_VALUE(x.dim() == 2, fn, ": '", name, "' must be 2-D (N x D), got ", x.dim(),
                    " dimensions with shape ", x.sizes());
  const auto t = x.scalar_type();
  TORCH_CHECK_VALUE(t == at::kFloat || t == at::kDouble || is_reduced_float(t), fn, ": '", name,
                    "' has unsupported dtype ", c10::toString(t),
                    " (float32, float64, float16 and bfloat16 are supported)");
}

/// Checks that every tensor is on the device of `first` (all CPU, or one CUDA device).
inline void check_same_device(const char* fn, const at::Tensor& first, const char* first_name,
                              const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.device() == first.device(), fn, ": '", name, "' is on ", x.device(), " but '",
                    first_name, "' is on ", first.device(), " (all inputs must be on one device)");
}

inline void check_same_dtype(const char* fn, const at::Tensor& first, const char* first_name,
                             const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.scalar_type() == first.scalar_type(), fn, ": '", name, "' has dtype ",
                    c10::toString(x.scalar_type()), " but '", first_name, "' has ",
                    c10::toString(first.scalar_type()));
}

inline void check_cpu(const char* fn, const char* name, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), fn, ": '", name, "' is on ", x.device(),
                    ", expected the CPU");
}

/// The dtype the CPU library computes in: float for float16 / bfloat16 inputs.
inline at::ScalarType cpu_compute_type(at::ScalarType t) noexcept {
  return is_reduced_float(t) ? at::kFloat : t;
}

/// The dtype of a loss (and of the saved statistics): float64 for float64 inputs, else float32.
inline at::ScalarType loss_type(at::ScalarType t) noexcept {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

/// A CPU input in the compute dtype: the tensor itself (no copy, any strides) for float and
/// double, a float copy for float16 / bfloat16.
inline at::Tensor cpu_compute(const at::Tensor& x) {
  return is_reduced_float(x.scalar_type()) ? x.to(at::kFloat) : x;
}

/// Gradients come back in the dtype of their input.
inline at::Tensor cast_back(const at::Tensor& g, at::ScalarType t) {
  return g.scalar_type() == t ? g : g.to(t);
}

/// Integer labels (one per row) as contiguous int64 CPU memory; an undefined result when absent.
inline at::Tensor labels_int64(const char* fn, const char* name,
                               const c10::optional<at::Tensor>& l) {
  if (!l.has_value() || !l->defined()) return {};
  const at::Tensor& x = *l;
  TORCH_CHECK_VALUE(x.dim() == 1, fn, ": '", name, "' must be 1-D (one label per row), got ",
                    x.dim(), " dimensions");
  TORCH_CHECK_VALUE(at::isIntegralType(x.scalar_type(), /*includeBool=*/false), fn, ": '", name,
                    "' must have an integer dtype, got ", c10::toString(x.scalar_type()));
  return x.to(at::kCPU, at::kLong).contiguous();
}

/// The library's label / id span (any type constructible from a pointer and a length) over an
/// int64 tensor made by labels_int64; empty (no labels) for an undefined tensor.
template <class Span>
Span as_span(const at::Tensor& l) {
  if (!l.defined()) return Span{};
  return Span(l.data_ptr<std::int64_t>(), static_cast<index_t>(l.numel()));
}

/// An O(N) statistics vector <-> a 1-D tensor (copies of N values, never of N x D data).
template <class T>
at::Tensor vector_to_tensor(const std::vector<T>& v, at::ScalarType t) {
  at::Tensor out = at::empty({static_cast<std::int64_t>(v.size())}, at::TensorOptions().dtype(t));
  if (!v.empty()) {
    using S = std::conditional_t<std::is_floating_point<T>::value, T, std::int64_t>;
    S* p = out.data_ptr<S>();
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<S>(v[i]);
  }
  return out;
}

template <class T, class S>
std::vector<T> tensor_to_vector(const at::Tensor& x) {
  std::vector<T> v;
  if (!x.defined() || x.numel() == 0) return v;
  const at::Tensor c = x.to(at::kCPU, c10::CppTypeToScalarType<S>::value).contiguous();
  const S* p = c.data_ptr<S>();
  v.assign(p, p + c.numel());
  return v;
}

/// The CPU thread count: torch.set_num_threads / at::set_num_threads governs the library too.
inline int cpu_threads() noexcept { return at::get_num_threads(); }

}  // namespace libtorch
CONTRASTIVE_NAMESPACE_END

#endif  // __has_include(<ATen/ATen.h>)
#endif  // CONTRASTIVE_TORCH_COMMON_HPP
