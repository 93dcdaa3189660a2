#ifndef CONTRASTIVE_TORCH_AUTOGRAD_HPP
#define CONTRASTIVE_TORCH_AUTOGRAD_HPP

// LibTorch front ends: torch::autograd::Function wrappers of the losses, for C++ training code.
//
//   #include <contrastive/torch/autograd.hpp>
//   auto logit_scale = torch::full({}, std::log(1 / 0.07), torch::requires_grad());
//   at::Tensor loss = contrastive::torch::clip_loss(img, txt, logit_scale.exp());
//   loss.backward();   // gradients for img, txt and logit_scale
//
// The library runs on the tensors' own memory (CPU: any strides; float and double, float16 and
// bfloat16 computed in float). CUDA tensors take the GPU kernels when this header is compiled by
// nvcc (it then includes torch/info_nce_cuda.cuh); otherwise they are rejected with a ValueError
// (c10::ValueError). A tensor logit_scale multiplies the inputs, so autograd yields
// dL/dlogit_scale without a host synchronisation. Bad input throws c10::ValueError carrying the
// library's message.

#include "contrastive/torch/info_nce.hpp"

#if __has_include(<ATen/ATen.h>) && __has_include(<torch/csrc/autograd/custom_function.h>)

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <string>

#if defined(__CUDACC__)
#  include "contrastive/torch/info_nce_cuda.cuh"
#endif

CONTRASTIVE_NAMESPACE_BEGIN
namespace torch {

/// How the losses combine per-anchor values.
enum class reduction { mean, sum };

struct clip_loss_options {
  double label_smoothing = 0;
  at::Tensor labels_a, labels_b;  // optional int64 (N): multiple positives (CPU only)
  reduction reduce = reduction::mean;
};

struct info_nce_loss_options {
  double temperature = 0.07;  // used when no logit_scale is given
  bool symmetric = false;     // true: CLIP
  double label_smoothing = 0;
  at::Tensor labels_a, labels_b;
  reduction reduce = reduction::mean;
};

struct nt_xent_loss_options {
  double temperature = 0.1;
  double label_smoothing = 0;
  at::Tensor labels;  // optional int64 (N), shared by both views
  reduction reduce = reduction::mean;
};

namespace detail {

inline c10::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

inline std::int64_t code(reduction r) { return r == reduction::mean ? reduction_mean : reduction_sum; }

// Device dispatch of the kernels (CPU always; CUDA when compiled by nvcc).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> info_nce_fwd(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& la,
    const c10::optional<at::Tensor>& lb, double t, double eps, bool sym, std::int64_t red) {
#if defined(__CUDACC__)
  if (a.is_cuda()) return info_nce_forward_cuda(a, b, la, lb, t, eps, sym, red);
#else
  TORCH_CHECK_VALUE(!a.is_cuda(), "info_nce_forward: CUDA tensors need contrastive/torch/"
                    "autograd.hpp compiled by nvcc (or the contrastive_torch ops)");
#endif
  return info_nce_forward_cpu(a, b, la, lb, t, eps, sym, red);
}

inline std::tuple<at::Tensor, at::Tensor> info_nce_bwd(
    const at::Tensor& g, const at::Tensor& a, const at::Tensor& b, const at::Tensor& row,
    const at::Tensor& col, const at::Tensor& rp, const at::Tensor& cp,
    const c10::optional<at::Tensor>& la, const c10::optional<at::Tensor>& lb, double t, double eps,
    bool sym, std::int64_t red) {
#if defined(__CUDACC__)
  if (a.is_cuda()) return info_nce_backward_cuda(g, a, b, row, col, rp, cp, la, lb, t, eps, sym, red);
#endif
  return info_nce_backward_cpu(g, a, b, row, col, rp, cp, la, lb, t, eps, sym, red);
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> nt_xent_fwd(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& l, double t,
    double eps, std::int64_t red) {
#if defined(__CUDACC__)
  if (a.is_cuda()) return nt_xent_forward_cuda(a, b, l, t, eps, red);
#else
  TORCH_CHECK_VALUE(!a.is_cuda(), "nt_xent_forward: CUDA tensors need contrastive/torch/"
                    "autograd.hpp compiled by nvcc (or the contrastive_torch ops)");
#endif
  return nt_xent_forward_cpu(a, b, l, t, eps, red);
}

inline std::tuple<at::Tensor, at::Tensor> nt_xent_bwd(
    const at::Tensor& g, const at::Tensor& a, const at::Tensor& b, const at::Tensor& lse,
    const at::Tensor& pos, const c10::optional<at::Tensor>& l, double t, double eps,
    std::int64_t red) {
#if defined(__CUDACC__)
  if (a.is_cuda()) return nt_xent_backward_cuda(g, a, b, lse, pos, l, t, eps, red);
#endif
  return nt_xent_backward_cpu(g, a, b, lse, pos, l, t, eps, red);
}

/// Applies a tensor logit scale to the inputs (autograd reaches it) and returns the temperature
/// the library runs at: 1 with a tensor, 1/scale with a number.
inline at::Tensor scale_input(const char* fn, const at::Tensor& x, const at::Tensor& logit_scale,
                              bool quadratic) {
  TORCH_CHECK_VALUE(logit_scale.numel() == 1, fn, ": logit_scale must hold one value, got shape ",
                    logit_scale.sizes());
  at::Tensor s = logit_scale.reshape({}).to(x.device());
  if (quadratic) s = s.sqrt();
  return x * s;
}

}  // namespace detail

/// InfoNCE / CLIP as a torch::autograd::Function (inputs a, b; labels and scalars carried along).
class InfoNCEFunction : public ::torch::autograd::Function<InfoNCEFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const c10::optional<at::Tensor>& labels_a,
                            const c10::optional<at::Tensor>& labels_b, double temperature,
                            double label_smoothing, bool symmetric, std::int64_t reduction_arg) {
    auto out = detail::info_nce_fwd(a, b, labels_a, labels_b, temperature, label_smoothing,
                                    symmetric, reduction_arg);
    ctx->save_for_backward({a, b, std::get<1>(out), std::get<2>(out), std::get<3>(out),
                            std::get<4>(out)});
    ctx->saved_data["labels_a"] = labels_a;  // no gradient: kept as values
    ctx->saved_data["labels_b"] = labels_b;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->saved_data["symmetric"] = symmetric;
    ctx->saved_data["reduction"] = reduction_arg;
    return std::get<0>(out);
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto g = detail::info_nce_bwd(grads[0], s[0], s[1], s[2], s[3], s[4], s[5],
                                  ctx->saved_data["labels_a"].toOptional<at::Tensor>(),
                                  ctx->saved_data["labels_b"].toOptional<at::Tensor>(),
                                  ctx->saved_data["temperature"].toDouble(),
                                  ctx->saved_data["label_smoothing"].toDouble(),
                                  ctx->saved_data["symmetric"].toBool(),
                                  ctx->saved_data["reduction"].toInt());
    return {std::get<0>(g), std::get<1>(g), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

/// NT-Xent as a torch::autograd::Function.
class NTXentFunction : public ::torch::autograd::Function<NTXentFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const c10::optional<at::Tensor>& labels,
                            double temperature,
                            double label_smoothing, std::int64_t reduction_arg) {
    auto out = detail::nt_xent_fwd(a, b, labels, temperature, label_smoothing, reduction_arg);
    ctx->save_for_backward({a, b, std::get<1>(out), std::get<2>(out)});
    ctx->saved_data["labels"] = labels;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->saved_data["reduction"] = reduction_arg;
    return std::get<0>(out);
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto g = detail::nt_xent_bwd(grads[0], s[0], s[1], s[2], s[3],
                                 ctx->saved_data["labels"].toOptional<at::Tensor>(),
                                 ctx->saved_data["temperature"].toDouble(),
                                 ctx->saved_data["label_smoothing"].toDouble(),
                                 ctx->saved_data["reduction"].toInt());
    return {std::get<0>(g), std::get<1>(g), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

/// InfoNCE of `a` against `b` (symmetric: CLIP). With a defined `logit_scale` (one value, may
/// require grad) the logits are logit_scale <a_i, b_j>; else <a_i, b_j> / o.temperature.
inline at::Tensor info_nce_loss(const at::Tensor& a, const at::Tensor& b,
                                const info_nce_loss_options& o = {},
                                const at::Tensor& logit_scale = {}) {
  const char* fn = "info_nce_loss";
  check_matrix(fn, "a", a);
  if (logit_scale.defined())
    return InfoNCEFunction::apply(detail::scale_input(fn, a, logit_scale, false), b,
                                  detail::opt(o.labels_a), detail::opt(o.labels_b), 1.0, o.label_smoothing, o.symmetric,
                                  detail::code(o.reduce));
  return InfoNCEFunction::apply(a, b, detail::opt(o.labels_a), detail::opt(o.labels_b), o.temperature, o.label_smoothing,
                                o.symmetric, detail::code(o.reduce));
}

/// The CLIP loss of open_clip's ClipLoss: mean of the image->text and text->image
/// cross-entropies of logit_scale * img txt^T (logit_scale already exponentiated; undefined
/// means 1).
inline at::Tensor clip_loss(const at::Tensor& img, const at::Tensor& txt,
                            const at::Tensor& logit_scale = {}, const clip_loss_options& o = {}) {
  info_nce_loss_options io;
  io.temperature = 1.0;
  io.symmetric = true;
  io.label_smoothing = o.label_smoothing;
  io.labels_a = o.labels_a;
  io.labels_b = o.labels_b.defined() ? o.labels_b : o.labels_a;
  io.reduce = o.reduce;
  return info_nce_loss(img, txt, io, logit_scale);
}

/// NT-Xent (SimCLR) over the two views a, b (rows i are views of sample i).
inline at::Tensor nt_xent_loss(const at::Tensor& a, const at::Tensor& b,
                               const nt_xent_loss_options& o = {},
                               const at::Tensor& logit_scale = {}) {
  const char* fn = "nt_xent_loss";
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  if (logit_scale.defined())
    return NTXentFunction::apply(detail::scale_input(fn, a, logit_scale, true),
                                 detail::scale_input(fn, b, logit_scale, true), detail::opt(o.labels), 1.0,
                                 o.label_smoothing, detail::code(o.reduce));
  return NTXentFunction::apply(a, b, detail::opt(o.labels), o.temperature, o.label_smoothing,
                               detail::code(o.reduce));
}

}  // namespace torch
CONTRASTIVE_NAMESPACE_END

#endif  // has ATen and the autograd headers
#endif  // CONTRASTIVE_TORCH_AUTOGRAD_HPP
