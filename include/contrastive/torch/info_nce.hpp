#ifndef CONTRASTIVE_TORCH_INFO_NCE_HPP
#define CONTRASTIVE_TORCH_INFO_NCE_HPP

// CPU kernels of the InfoNCE / CLIP and NT-Xent ops on ATen tensors (forward and backward as
// separate plain functions, no autograd): the library runs on the tensors' own memory, with their
// strides, for float and double; float16 / bfloat16 inputs are computed in float and their
// gradients cast back. The statistics the backward needs (N or 2N log-sum-exps, label counts)
// travel as small 1-D tensors.
//
//   info_nce_forward_cpu(a, b, labels_a, labels_b, temperature, label_smoothing, symmetric,
//                        reduction) -> (loss, row_lse, col_lse, row_positives, col_positives)
//   info_nce_backward_cpu(grad, a, b, row_lse, col_lse, row_positives, col_positives, labels_a,
//                         labels_b, temperature, label_smoothing, symmetric, reduction)
//       -> (grad_a, grad_b)
//   nt_xent_forward_cpu(a, b, labels, temperature, label_smoothing, reduction)
//       -> (loss, lse, positives)
//   nt_xent_backward_cpu(grad, a, b, lse, positives, labels, temperature, label_smoothing,
//                        reduction) -> (grad_a, grad_b)
//
// The loss is float64 for float64 inputs, else float32. `reduction` is 0 (mean) or 1 (sum).

#include "contrastive/torch/common.hpp"

#if __has_include(<ATen/ATen.h>)

#  include <tuple>

#  include "contrastive/losses/info_nce.hpp"
#  include "contrastive/losses/nt_xent.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace libtorch {

namespace detail {

inline void check_pair(const char* fn, const at::Tensor& a, const at::Tensor& b) {
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  check_same_device(fn, a, "a", b, "b");
  check_same_dtype(fn, a, "a", b, "b");
}

inline info_nce_options info_nce_opts(const char* fn, double temperature, double label_smoothing,
                                      bool symmetric, std::int64_t reduction, const at::Tensor& la,
                                      const at::Tensor& lb) {
  info_nce_options o;
  o.temperature = temperature;
  o.label_smoothing = label_smoothing;
  o.symmetric = symmetric;
  o.reduction = to_reduction(fn, reduction);
  o.labels_a = as_span<decltype(o.labels_a)>(la);
  o.labels_b = as_span<decltype(o.labels_b)>(lb);
  o.num_threads = cpu_threads();
  return o;
}

inline nt_xent_options nt_xent_opts(const char* fn, double temperature, double label_smoothing,
                                    std::int64_t reduction, const at::Tensor& labels) {
  nt_xent_options o;
  o.temperature = temperature;
  o.label_smoothing = label_smoothing;
  o.reduction = to_reduction(fn, reduction);
  o.labels = as_span<decltype(o.labels)>(labels);
  o.num_threads = cpu_threads();
  return o;
}

// ---- The library calls (InfoNCE / CLIP) --------------------------------------------------------

template <class T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> info_nce_forward_typed(
    const at::Tensor& a, const at::Tensor& b, const info_nce_options& o) {
  const info_nce_saved<T> s = call_library([&] {
    return ::contrastive::info_nce_forward(torch_matrix<const T>(a), torch_matrix<const T>(b), o);
  });
  const at::ScalarType st = c10::CppTypeToScalarType<T>::value;
  return std::make_tuple(
      at::scalar_tensor(static_cast<double>(s.loss), at::TensorOptions().dtype(st)),
      vector_to_tensor(s.row_lse, st), vector_to_tensor(s.col_lse, st),
      vector_to_tensor(s.row_positives, at::kLong), vector_to_tensor(s.col_positives, at::kLong));
}

template <class T>
std::tuple<at::Tensor, at::Tensor> info_nce_backward_typed(
    double upstream, const at::Tensor& a, const at::Tensor& b, const at::Tensor& row_lse,
    const at::Tensor& col_lse, const at::Tensor& row_pos, const at::Tensor& col_pos,
    const info_nce_options& o) {
  info_nce_saved<T> s;  // rebuilt from the forward's statistics
  s.n = a.size(0);
  s.d = a.size(1);
  s.row_lse = tensor_to_vector<T, T>(row_lse);
  if (o.symmetric) s.col_lse = tensor_to_vector<T, T>(col_lse);
  s.row_positives = tensor_to_vector<index_t, std::int64_t>(row_pos);
  s.col_positives = tensor_to_vector<index_t, std::int64_t>(col_pos);
  s.temperature = o.temperature;
  s.label_smoothing = o.label_smoothing;
  s.symmetric = o.symmetric;
  s.labelled = !o.labels_a.empty();
  s.reduction = o.reduction;
  const std::size_t expect = static_cast<std::size_t>(s.n);
  TORCH_CHECK_VALUE(s.row_lse.size() == expect && (!o.symmetric || s.col_lse.size() == expect) &&
                        (!s.labelled || (s.row_positives.size() == expect &&
                                         (!o.symmetric || s.col_positives.size() == expect))),
                    "info_nce_backward: the saved statistics do not belong to a batch of ", s.n,
                    " rows");
  at::Tensor ga = at::empty({s.n, s.d}, a.options());
  at::Tensor gb = at::empty({s.n, s.d}, a.options());
  call_library([&] {
    return ::contrastive::info_nce_backward(torch_matrix<const T>(a), torch_matrix<const T>(b), s,
                                            torch_matrix<T>(ga), torch_matrix<T>(gb), o, upstream);
  });
  return std::make_tuple(ga, gb);
}

// ---- The library calls (NT-Xent) ---------------------------------------------------------------

template <class T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> nt_xent_forward_typed(const at::Tensor& a,
                                                                     const at::Tensor& b,
                                                                     const nt_xent_options& o) {
  const nt_xent_saved<T> s = call_library([&] {
    return ::contrastive::nt_xent_forward(torch_matrix<const T>(a), torch_matrix<const T>(b), o);
  });
  const at::ScalarType st = c10::CppTypeToScalarType<T>::value;
  return std::make_tuple(
      at::scalar_tensor(static_cast<double>(s.loss), at::TensorOptions().dtype(st)),
      vector_to_tensor(s.lse, st), vector_to_tensor(s.positives, at::kLong));
}

template <class T>
std::tuple<at::Tensor, at::Tensor> nt_xent_backward_typed(double upstream, const at::Tensor& a,
                                                          const at::Tensor& b,
                                                          const at::Tensor& lse,
                                                          const at::Tensor& pos,
                                                          const nt_xent_options& o) {
  nt_xent_saved<T> s;
  s.n = a.size(0);
  s.d = a.size(1);
  s.lse = tensor_to_vector<T, T>(lse);
  s.positives = tensor_to_vector<index_t, std::int64_t>(pos);
  s.temperature = o.temperature;
  s.label_smoothing = o.label_smoothing;
  s.labelled = !o.labels.empty();
  s.reduction = o.reduction;
  const std::size_t expect = 2 * static_cast<std::size_t>(s.n);
  TORCH_CHECK_VALUE(s.lse.size() == expect && (!s.labelled || s.positives.size() == expect),
                    "nt_xent_backward: the saved statistics do not belong to a batch of ", s.n,
                    " rows");
  at::Tensor ga = at::empty({s.n, s.d}, a.options());
  at::Tensor gb = at::empty({s.n, s.d}, a.options());
  call_library([&] {
    return ::contrastive::nt_xent_backward(torch_matrix<const T>(a), torch_matrix<const T>(b), s,
                                           torch_matrix<T>(ga), torch_matrix<T>(gb), o, upstream);
  });
  return std::make_tuple(ga, gb);
}

inline double upstream_value(const char* fn, const at::Tensor& grad) {
  TORCH_CHECK_VALUE(grad.defined() && grad.numel() == 1, fn,
                    ": the upstream gradient must be a scalar");
  return grad.item<double>();  // a CPU scalar: no device synchronisation
}

}  // namespace detail

// ---- InfoNCE / CLIP ----------------------------------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> info_nce_forward_cpu(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& labels_a,
    const c10::optional<at::Tensor>& labels_b, double temperature, double label_smoothing,
    bool symmetric, std::int64_t reduction) {
  const char* fn = "info_nce_forward";
  detail::check_pair(fn, a, b);
  check_cpu(fn, "a", a);
  const at::Tensor la = labels_int64(fn, "labels_a", labels_a);
  const at::Tensor lb = labels_int64(fn, "labels_b", labels_b);
  const info_nce_options o =
      detail::info_nce_opts(fn, temperature, label_smoothing, symmetric, reduction, la, lb);
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  if (ca.scalar_type() == at::kDouble) return detail::info_nce_forward_typed<double>(ca, cb, o);
  return detail::info_nce_forward_typed<float>(ca, cb, o);
}

inline std::tuple<at::Tensor, at::Tensor> info_nce_backward_cpu(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& row_lse,
    const at::Tensor& col_lse, const at::Tensor& row_pos, const at::Tensor& col_pos,
    const c10::optional<at::Tensor>& labels_a, const c10::optional<at::Tensor>& labels_b,
    double temperature, double label_smoothing, bool symmetric, std::int64_t reduction) {
  const char* fn = "info_nce_backward";
  detail::check_pair(fn, a, b);
  check_cpu(fn, "a", a);
  const at::Tensor la = labels_int64(fn, "labels_a", labels_a);
  const at::Tensor lb = labels_int64(fn, "labels_b", labels_b);
  const info_nce_options o =
      detail::info_nce_opts(fn, temperature, label_smoothing, symmetric, reduction, la, lb);
  const double up = detail::upstream_value(fn, grad);
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  std::tuple<at::Tensor, at::Tensor> g =
      ca.scalar_type() == at::kDouble ? detail::info_nce_backward_typed<double>(
                                            up, ca, cb, row_lse, col_lse, row_pos, col_pos, o)
                                      : detail::info_nce_backward_typed<float>(
                                            up, ca, cb, row_lse, col_lse, row_pos, col_pos, o);
  return std::make_tuple(cast_back(std::get<0>(g), a.scalar_type()),
                         cast_back(std::get<1>(g), b.scalar_type()));
}

// ---- NT-Xent -----------------------------------------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> nt_xent_forward_cpu(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& labels,
    double temperature, double label_smoothing, std::int64_t reduction) {
  const char* fn = "nt_xent_forward";
  detail::check_pair(fn, a, b);
  check_cpu(fn, "a", a);
  const at::Tensor l = labels_int64(fn, "labels", labels);
  const nt_xent_options o = detail::nt_xent_opts(fn, temperature, label_smoothing, reduction, l);
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  if (ca.scalar_type() == at::kDouble) return detail::nt_xent_forward_typed<double>(ca, cb, o);
  return detail::nt_xent_forward_typed<float>(ca, cb, o);
}

inline std::tuple<at::Tensor, at::Tensor> nt_xent_backward_cpu(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& lse,
    const at::Tensor& pos, const c10::optional<at::Tensor>& labels, double temperature,
    double label_smoothing, std::int64_t reduction) {
  const char* fn = "nt_xent_backward";
  detail::check_pair(fn, a, b);
  check_cpu(fn, "a", a);
  const at::Tensor l = labels_int64(fn, "labels", labels);
  const nt_xent_options o = detail::nt_xent_opts(fn, temperature, label_smoothing, reduction, l);
  const double up = detail::upstream_value(fn, grad);
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  std::tuple<at::Tensor, at::Tensor> g =
      ca.scalar_type() == at::kDouble
          ? detail::nt_xent_backward_typed<double>(up, ca, cb, lse, pos, o)
          : detail::nt_xent_backward_typed<float>(up, ca, cb, lse, pos, o);
  return std::make_tuple(cast_back(std::get<0>(g), a.scalar_type()),
                         cast_back(std::get<1>(g), b.scalar_type()));
}

}  // namespace libtorch
CONTRASTIVE_NAMESPACE_END

#endif  // __has_include(<ATen/ATen.h>)
#endif  // CONTRASTIVE_TORCH_INFO_NCE_HPP
