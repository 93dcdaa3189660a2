#ifndef CONTRASTIVE_TORCH_AUTOGRAD_HPP
#define CONTRASTIVE_TORCH_AUTOGRAD_HPP

// LibTorch front ends: torch::autograd::Function wrappers of the losses, for C++ training code.
//
//   #include <contrastive/torch/autograd.hpp>
//   auto logit_scale = torch::full({}, std::log(1 / 0.07), torch::requires_grad());
//   at::Tensor loss = contrastive::libtorch::clip_loss(img, txt, logit_scale.exp());
//   loss.backward();   // gradients for img, txt and logit_scale
//
// The library runs on the tensors' own memory (CPU: any strides; float and double, float16 and
// bfloat16 computed in float). CUDA tensors take the GPU kernels when this header is compiled by
// nvcc (it then includes torch/info_nce_cuda.cuh); otherwise they are rejected with a ValueError
// (c10::ValueError). A tensor logit_scale multiplies the inputs, so autograd yields
// dL/dlogit_scale without a host synchronisation. Bad input throws c10::ValueError carrying the
// library's message.

#include "contrastive/torch/info_nce.hpp"
#include "contrastive/torch/regularizers.hpp"

#if __has_include(<ATen/ATen.h>) && __has_include(<torch/csrc/autograd/custom_function.h>)

#  include <torch/csrc/autograd/custom_function.h>

#  include <cmath>
#  include <limits>
#  include <string>
#  include <vector>

#  if defined(__CUDACC__)
#    include "contrastive/torch/info_nce_cuda.cuh"
#  endif

CONTRASTIVE_NAMESPACE_BEGIN
namespace libtorch {

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

inline std::int64_t code(reduction r) {
  return r == reduction::mean ? reduction_mean : reduction_sum;
}

// Device dispatch of the kernels (CPU always; CUDA when compiled by nvcc).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> info_nce_fwd(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& la,
    const c10::optional<at::Tensor>& lb, double t, double eps, bool sym, std::int64_t red) {
#  if defined(__CUDACC__)
  if (a.is_cuda()) return info_nce_forward_cuda(a, b, la, lb, t, eps, sym, red);
#  else
  TORCH_CHECK_VALUE(!a.is_cuda(),
                    "info_nce_forward: CUDA tensors need contrastive/torch/"
                    "autograd.hpp compiled by nvcc (or the contrastive_torch ops)");
#  endif
  return info_nce_forward_cpu(a, b, la, lb, t, eps, sym, red);
}

inline std::tuple<at::Tensor, at::Tensor> info_nce_bwd(
    const at::Tensor& g, const at::Tensor& a, const at::Tensor& b, const at::Tensor& row,
    const at::Tensor& col, const at::Tensor& rp, const at::Tensor& cp,
    const c10::optional<at::Tensor>& la, const c10::optional<at::Tensor>& lb, double t, double eps,
    bool sym, std::int64_t red) {
#  if defined(__CUDACC__)
  if (a.is_cuda())
    return info_nce_backward_cuda(g, a, b, row, col, rp, cp, la, lb, t, eps, sym, red);
#  endif
  return info_nce_backward_cpu(g, a, b, row, col, rp, cp, la, lb, t, eps, sym, red);
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> nt_xent_fwd(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& l, double t,
    double eps, std::int64_t red) {
#  if defined(__CUDACC__)
  if (a.is_cuda()) return nt_xent_forward_cuda(a, b, l, t, eps, red);
#  else
  TORCH_CHECK_VALUE(!a.is_cuda(),
                    "nt_xent_forward: CUDA tensors need contrastive/torch/"
                    "autograd.hpp compiled by nvcc (or the contrastive_torch ops)");
#  endif
  return nt_xent_forward_cpu(a, b, l, t, eps, red);
}

inline std::tuple<at::Tensor, at::Tensor> nt_xent_bwd(const at::Tensor& g, const at::Tensor& a,
                                                      const at::Tensor& b, const at::Tensor& lse,
                                                      const at::Tensor& pos,
                                                      const c10::optional<at::Tensor>& l, double t,
                                                      double eps, std::int64_t red) {
#  if defined(__CUDACC__)
  if (a.is_cuda()) return nt_xent_backward_cuda(g, a, b, lse, pos, l, t, eps, red);
#  endif
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
    ctx->save_for_backward(
        {a, b, std::get<1>(out), std::get<2>(out), std::get<3>(out), std::get<4>(out)});
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
    auto g = detail::info_nce_bwd(
        grads[0], s[0], s[1], s[2], s[3], s[4], s[5],
        ctx->saved_data["labels_a"].toOptional<at::Tensor>(),
        ctx->saved_data["labels_b"].toOptional<at::Tensor>(),
        ctx->saved_data["temperature"].toDouble(), ctx->saved_data["label_smoothing"].toDouble(),
        ctx->saved_data["symmetric"].toBool(), ctx->saved_data["reduction"].toInt());
    return {std::get<0>(g), std::get<1>(g), at::Tensor(), at::Tensor(),
            at::Tensor(),   at::Tensor(),   at::Tensor(), at::Tensor()};
  }
};

/// NT-Xent as a torch::autograd::Function.
class NTXentFunction : public ::torch::autograd::Function<NTXentFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const c10::optional<at::Tensor>& labels,
                            double temperature, double label_smoothing,
                            std::int64_t reduction_arg) {
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
    auto g = detail::nt_xent_bwd(
        grads[0], s[0], s[1], s[2], s[3], ctx->saved_data["labels"].toOptional<at::Tensor>(),
        ctx->saved_data["temperature"].toDouble(), ctx->saved_data["label_smoothing"].toDouble(),
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
                                  detail::opt(o.labels_a), detail::opt(o.labels_b), 1.0,
                                  o.label_smoothing, o.symmetric, detail::code(o.reduce));
  return InfoNCEFunction::apply(a, b, detail::opt(o.labels_a), detail::opt(o.labels_b),
                                o.temperature, o.label_smoothing, o.symmetric,
                                detail::code(o.reduce));
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
                                 detail::scale_input(fn, b, logit_scale, true),
                                 detail::opt(o.labels), 1.0, o.label_smoothing,
                                 detail::code(o.reduce));
  return NTXentFunction::apply(a, b, detail::opt(o.labels), o.temperature, o.label_smoothing,
                               detail::code(o.reduce));
}

// ---- Regularisers and the gamma loss -------------------------------------------------------------

namespace detail {

/// Saved gradients (computed by the fused forward at upstream 1) times the upstream gradient.
inline ::torch::autograd::variable_list scale_saved(::torch::autograd::AutogradContext* ctx,
                                                    const at::Tensor& upstream, std::size_t extra) {
  ::torch::autograd::variable_list out;
  for (const at::Tensor& g : ctx->get_saved_variables())
    out.push_back(g.numel() ? g * upstream.to(g.scalar_type()) : at::Tensor());
  for (std::size_t i = 0; i < extra; ++i) out.emplace_back();
  return out;
}

inline bool wants_grad(std::initializer_list<const at::Tensor*> xs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* x : xs)
    if (x->defined() && x->requires_grad()) return true;
  return false;
}

}  // namespace detail

struct feature_separation_loss_options {
  double temperature = 0.07;
  double orthogonality_weight = 1, contrastive_weight = 1, uniformity_weight = 1;
  double uniformity_t = 2;
  bool wang_isola = false;  // uniformity form: false = literal (the paper's text)
};

/// L_Sep (fused: the forward computes the gradients, the backward scales them).
class FeatureSeparationFunction : public ::torch::autograd::Function<FeatureSeparationFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const at::Tensor& a_ind, const at::Tensor& b_ind,
                            const at::Tensor& a_ind_aug, const at::Tensor& b_ind_aug,
                            const feature_separation_loss_options& o, bool with_grad) {
    auto r = feature_separation_forward_cpu(
        a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, o.orthogonality_weight, o.contrastive_weight,
        o.uniformity_weight, o.temperature, o.uniformity_t, o.wang_isola, with_grad);
    ctx->save_for_backward({std::get<1>(r), std::get<2>(r), std::get<3>(r), std::get<4>(r),
                            std::get<5>(r), std::get<6>(r)});
    return std::get<0>(r);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    return detail::scale_saved(ctx, grads[0], 2);
  }
};

inline at::Tensor feature_separation_loss(const at::Tensor& a, const at::Tensor& b,
                                          const at::Tensor& a_ind, const at::Tensor& b_ind,
                                          const at::Tensor& a_ind_aug, const at::Tensor& b_ind_aug,
                                          const feature_separation_loss_options& o = {}) {
  const bool g = detail::wants_grad({&a, &b, &a_ind, &b_ind, &a_ind_aug, &b_ind_aug});
  return FeatureSeparationFunction::apply(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, o, g);
}

struct brownian_bridge_loss_options_t {
  double t = 0.25;
  bool random_t = false;
  double t_min = 0.05, t_max = 0.95;
  std::int64_t seed = 0, step = 0, first_id = 0;
  at::Tensor ids;  // optional int64 (N): Philox ids of the rows
  bool nll_weight = false;
  bool detach_a_aug = false;
};

/// L_Br (fused).
class BrownianBridgeLossFunction : public ::torch::autograd::Function<BrownianBridgeLossFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const at::Tensor& a_aug,
                            const brownian_bridge_loss_options_t& o, bool with_grad) {
    auto r = brownian_bridge_loss_forward_cpu(a, b, a_aug, o.t, o.random_t, o.t_min, o.t_max,
                                              o.seed, o.step, o.first_id, detail::opt(o.ids),
                                              o.nll_weight, o.detach_a_aug, with_grad);
    ctx->save_for_backward({std::get<1>(r), std::get<2>(r), std::get<3>(r)});
    return std::get<0>(r);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    return detail::scale_saved(ctx, grads[0], 2);
  }
};

inline at::Tensor brownian_bridge_loss(const at::Tensor& a, const at::Tensor& b,
                                       const at::Tensor& a_aug,
                                       const brownian_bridge_loss_options_t& o = {}) {
  return BrownianBridgeLossFunction::apply(a, b, a_aug, o, detail::wants_grad({&a, &b, &a_aug}));
}

struct brownian_bridge_sample_options {
  double t = 0.25;
  std::int64_t steps = 0;  // 0: one point per pair (N x D); K: trajectories (N (K+1) x D)
  bool noise = true;
  double sigma = 0;  // 0: 1/sqrt(D)
  bool reproject = false;
  bool random_t = false;
  double t_min = 0.05, t_max = 0.95;
  std::int64_t seed = 0, step = 0, first_id = 0;
  at::Tensor ids;  // optional int64 (N)
  at::Tensor eps;  // optional caller noise (N x D points, N (K-1) x D trajectories)
};

/// Bridge samples, differentiable in a and b (the noise is held fixed).
class BrownianBridgeSampleFunction
    : public ::torch::autograd::Function<BrownianBridgeSampleFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const brownian_bridge_sample_options& o) {
    ctx->save_for_backward({a, b});
    auto& d = ctx->saved_data;
    d["t"] = o.t;
    d["steps"] = o.steps;
    d["noise"] = o.noise;
    d["sigma"] = o.sigma;
    d["reproject"] = o.reproject;
    d["random_t"] = o.random_t;
    d["t_min"] = o.t_min;
    d["t_max"] = o.t_max;
    d["seed"] = o.seed;
    d["step"] = o.step;
    d["first_id"] = o.first_id;
    d["ids"] = detail::opt(o.ids);
    d["eps"] = detail::opt(o.eps);
    return brownian_bridge_sample_forward_cpu(a, b, detail::opt(o.eps), o.steps, o.t, o.random_t,
                                              o.t_min, o.t_max, o.noise, o.sigma, o.reproject,
                                              o.seed, o.step, o.first_id, detail::opt(o.ids));
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    auto g = brownian_bridge_sample_backward_cpu(
        grads[0].contiguous(), s[0], s[1], d["eps"].toOptional<at::Tensor>(), d["steps"].toInt(),
        d["t"].toDouble(), d["random_t"].toBool(), d["t_min"].toDouble(), d["t_max"].toDouble(),
        d["noise"].toBool(), d["sigma"].toDouble(), d["reproject"].toBool(), d["seed"].toInt(),
        d["step"].toInt(), d["first_id"].toInt(), d["ids"].toOptional<at::Tensor>());
    return {std::get<0>(g), std::get<1>(g), at::Tensor()};
  }
};

inline at::Tensor brownian_bridge_sample(const at::Tensor& a, const at::Tensor& b,
                                         const brownian_bridge_sample_options& o = {}) {
  return BrownianBridgeSampleFunction::apply(a, b, o);
}

struct geometric_consistency_loss_options {
  double cross_modal_weight = 1, in_modal_weight = 1;
  bool detach_a_aug = false, detach_b_aug = false;
};

/// L_GC (fused).
class GeometricConsistencyFunction
    : public ::torch::autograd::Function<GeometricConsistencyFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const geometric_consistency_loss_options& o,
                            bool with_grad) {
    auto r = geometric_consistency_forward_cpu(a, b, c10::nullopt, c10::nullopt,
                                               o.cross_modal_weight, o.in_modal_weight,
                                               o.detach_a_aug, o.detach_b_aug, with_grad);
    ctx->save_for_backward({std::get<1>(r), std::get<2>(r)});
    return std::get<0>(r);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    return detail::scale_saved(ctx, grads[0], 2);
  }
};

/// L^a_GC (fused).
class GeometricConsistencyAugmentedFunction
    : public ::torch::autograd::Function<GeometricConsistencyAugmentedFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const at::Tensor& a_aug, const at::Tensor& b_aug,
                            const geometric_consistency_loss_options& o, bool with_grad) {
    auto r = geometric_consistency_forward_cpu(a, b, a_aug, b_aug, o.cross_modal_weight,
                                               o.in_modal_weight, o.detach_a_aug, o.detach_b_aug,
                                               with_grad);
    ctx->save_for_backward({std::get<1>(r), std::get<2>(r), std::get<3>(r), std::get<4>(r)});
    return std::get<0>(r);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    return detail::scale_saved(ctx, grads[0], 2);
  }
};

/// L_GC of the pairs (a, b).
inline at::Tensor geometric_consistency_loss(const at::Tensor& a, const at::Tensor& b,
                                             const geometric_consistency_loss_options& o = {}) {
  return GeometricConsistencyFunction::apply(a, b, o, detail::wants_grad({&a, &b}));
}

/// L^a_GC of the pairs (a, b) and their augmented views (a_aug, b_aug).
inline at::Tensor geometric_consistency_loss(const at::Tensor& a, const at::Tensor& b,
                                             const at::Tensor& a_aug, const at::Tensor& b_aug,
                                             const geometric_consistency_loss_options& o = {}) {
  return GeometricConsistencyAugmentedFunction::apply(a, b, a_aug, b_aug, o,
                                                      detail::wants_grad({&a, &b, &a_aug, &b_aug}));
}

/// The moving-average state of the gamma loss as tensors (as contrastive_torch.NormalizerState
/// holds it): zeta float64 and visited bool, both [directions, samples].
struct gamma_state {
  at::Tensor zeta, visited;
  explicit gamma_state(std::int64_t samples, std::int64_t directions = 2)
      : zeta(at::zeros({directions, samples}, at::kDouble)),
        visited(at::zeros({directions, samples}, at::kBool)) {}
};

struct gamma_nce_loss_options {
  double temperature = 0.07;
  bool symmetric = true;
  double alpha = 1.0;  // std::numeric_limits<double>::infinity(): deterministic (SogCLR) weights
  double beta = 0.9;
  std::int64_t seed = 0, step = 0;
  bool sample_then_update = false;
  bool positive_in_normaliser = false;
  reduction reduce = reduction::mean;
};

/// The gamma-auxiliary loss with its state (updated by the call).
class GammaNCEFunction : public ::torch::autograd::Function<GammaNCEFunction> {
 public:
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const c10::optional<at::Tensor>& ids,
                            gamma_state* state, const gamma_nce_loss_options& o) {
    const std::int64_t source = state ? 0 : 1;  // state, else same batch
    auto r = gamma_nce_forward_cpu(
        a, b, *ids, state ? c10::optional<at::Tensor>(state->zeta) : c10::nullopt,
        state ? c10::optional<at::Tensor>(state->visited) : c10::nullopt, o.temperature,
        o.symmetric, o.alpha, o.beta, o.seed, o.step, source, o.sample_then_update,
        o.positive_in_normaliser, c10::nullopt, c10::nullopt, detail::code(o.reduce));
    if (state) {  // write the batch's updated entries back
      const at::Tensor nz = std::get<7>(r);
      const at::Tensor id = ids->to(at::kLong);
      const at::Tensor seen = nz.isnan().logical_not();
      for (std::int64_t d = 0; d < nz.size(0); ++d) {
        at::Tensor zd = state->zeta.select(0, d), vd = state->visited.select(0, d);
        zd.index_put_({id}, at::where(seen.select(0, d), nz.select(0, d), zd.index({id})));
        vd.index_put_({id}, seen.select(0, d).logical_or(vd.index({id})));
      }
    }
    ctx->save_for_backward({a, b, std::get<3>(r), std::get<4>(r), std::get<5>(r), std::get<6>(r)});
    ctx->saved_data["temperature"] = o.temperature;
    ctx->saved_data["symmetric"] = o.symmetric;
    ctx->saved_data["pin"] = o.positive_in_normaliser;
    ctx->saved_data["reduction"] = detail::code(o.reduce);
    return std::get<0>(r);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto g = gamma_nce_backward_cpu(
        grads[0], s[0], s[1], s[2], s[3], s[4], s[5], ctx->saved_data["temperature"].toDouble(),
        ctx->saved_data["symmetric"].toBool(), ctx->saved_data["pin"].toBool(),
        ctx->saved_data["reduction"].toInt());
    return {std::get<0>(g), std::get<1>(g), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

/// Gamma loss of a batch with dataset ids `ids`; with `state` (rate from its moving averages,
/// updated here), else with the rate from the same batch.
inline at::Tensor gamma_nce_loss(const at::Tensor& a, const at::Tensor& b, const at::Tensor& ids,
                                 gamma_state* state, const gamma_nce_loss_options& o = {}) {
  return GammaNCEFunction::apply(a, b, detail::opt(ids), state, o);
}

}  // namespace libtorch
CONTRASTIVE_NAMESPACE_END

#endif  // has ATen and the autograd headers
#endif  // CONTRASTIVE_TORCH_AUTOGRAD_HPP
