#ifndef CONTRASTIVE_TORCH_REGULARIZERS_HPP
#define CONTRASTIVE_TORCH_REGULARIZERS_HPP

// CPU kernels of the gamma-auxiliary loss, deep feature separation, the Brownian bridge (loss and
// sampler) and geometric consistency on ATen tensors (no autograd; contrastive_torch/_ops.py and
// torch/autograd.hpp add it). Inputs run on the tensors' own memory (float, double; float16 /
// bfloat16 in float, gradients cast back).
//
// - gamma_nce_forward_cpu / gamma_nce_backward_cpu: forward and backward, the O(N) statistics
//   (log-sum-exps, weights r_i) travel as tensors. The moving-average state is passed as tensors
//   (zeta: float64 [directions, samples], visited: bool [directions, samples]); the forward does
//   not modify them and returns the batch's updated zeta ([directions, N], NaN = unvisited) for
//   the caller to write back.
// - feature_separation / brownian_bridge_loss / geometric_consistency: one forward that, with
//   `with_grad`, also returns the input gradients at upstream 1 (the library's
//   X_forward_backward, so the backward needs no second sweep); the backward multiplies them by
//   the upstream gradient.
// - brownian_bridge_sample_forward_cpu / _backward_cpu: points (steps = 0, N x D) or
//   trajectories (steps = K, N (K+1) x D); the backward recomputes the O(N D) sample statistics.
//
// All calls into the library are in the `lib_*` functions of namespace detail below.

#include "contrastive/torch/common.hpp"

#if __has_include(<ATen/ATen.h>)

#  include <cmath>
#  include <limits>
#  include <tuple>
#  include <vector>

#  include "contrastive/losses/brownian_bridge.hpp"
#  include "contrastive/losses/feature_separation.hpp"
#  include "contrastive/losses/gamma_nce.hpp"
#  include "contrastive/losses/geometric_consistency.hpp"
#  include "contrastive/sampling/brownian_bridge.hpp"
#  include "contrastive/state/normalizer_state.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace libtorch {

namespace detail {

template <class T>
using in_t = torch_matrix<const T>;
template <class T>
using out_t = torch_matrix<T>;

/// Checks the inputs of a multi-input loss (2-D, one dtype, all on the CPU).
inline void check_inputs_cpu(const char* fn,
                             std::initializer_list<std::pair<const char*, const at::Tensor*>> in) {
  const at::Tensor* first = nullptr;
  const char* first_name = nullptr;
  for (const auto& p : in) {
    check_matrix(fn, p.first, *p.second);
    if (!first) {
      first = p.second;
      first_name = p.first;
      check_cpu(fn, p.first, *first);
    } else {
      check_same_device(fn, *first, first_name, *p.second, p.first);
      check_same_dtype(fn, *first, first_name, *p.second, p.first);
    }
  }
}

inline at::Tensor grad_buffer(const at::Tensor& like, bool with_grad) {
  return with_grad ? at::empty(like.sizes(), like.options()) : at::empty({0}, like.options());
}

inline at::Tensor loss_tensor(double v, at::ScalarType t) {
  return at::scalar_tensor(v, at::TensorOptions().dtype(t));
}

inline std::vector<at::Tensor> cast_grads_back(std::vector<at::Tensor> g,
                                               const std::vector<at::ScalarType>& t) {
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = cast_back(g[i], t[i]);  // empty ones too
  return g;
}

// ---- Library calls: feature separation ---------------------------------------------------------

template <class T>
double lib_feature_separation(const std::vector<at::Tensor>& x, std::vector<at::Tensor>& g,
                              const feature_separation_options& o, bool with_grad) {
  if (!with_grad)
    return double(::contrastive::feature_separation_forward(in_t<T>(x[0]), in_t<T>(x[1]),
                                                            in_t<T>(x[2]), in_t<T>(x[3]),
                                                            in_t<T>(x[4]), in_t<T>(x[5]), o)
                      .loss);
  return double(::contrastive::feature_separation_forward_backward(
      in_t<T>(x[0]), in_t<T>(x[1]), in_t<T>(x[2]), in_t<T>(x[3]), in_t<T>(x[4]), in_t<T>(x[5]),
      out_t<T>(g[0]), out_t<T>(g[1]), out_t<T>(g[2]), out_t<T>(g[3]), out_t<T>(g[4]),
      out_t<T>(g[5]), o));
}

// ---- Library calls: Brownian bridge loss and sampler -------------------------------------------

template <class T>
double lib_bridge_loss(const std::vector<at::Tensor>& x, std::vector<at::Tensor>& g,
                       const brownian_bridge_loss_options& o, bool with_grad) {
  if (!with_grad)
    return double(
        ::contrastive::brownian_bridge_loss_forward(in_t<T>(x[0]), in_t<T>(x[1]), in_t<T>(x[2]), o)
            .loss);
  return double(::contrastive::brownian_bridge_loss_forward_backward(
      in_t<T>(x[0]), in_t<T>(x[1]), in_t<T>(x[2]), out_t<T>(g[0]), out_t<T>(g[1]), out_t<T>(g[2]),
      o));
}

/// Samples into y; with `grad_y` defined, also runs the backward into ga, gb.
template <class T>
void lib_bridge_sample(const at::Tensor& a, const at::Tensor& b, const at::Tensor& noise, bool path,
                       const at::Tensor& y, const brownian_bridge_options& o,
                       const at::Tensor& grad_y, const at::Tensor& ga, const at::Tensor& gb) {
  const in_t<T> va(a), vb(b);
  if (!path) {
    if (noise.defined()) {
      const in_t<T> ve(noise);
      const auto s = ::contrastive::brownian_bridge_sample_with_noise(va, vb, ve, out_t<T>(y), o);
      if (grad_y.defined())
        ::contrastive::brownian_bridge_sample_with_noise_backward(va, vb, ve, s, in_t<T>(grad_y),
                                                                  out_t<T>(ga), out_t<T>(gb), o);
    } else {
      const auto s = ::contrastive::brownian_bridge_sample(va, vb, out_t<T>(y), o);
      if (grad_y.defined())
        ::contrastive::brownian_bridge_sample_backward(va, vb, s, in_t<T>(grad_y), out_t<T>(ga),
                                                       out_t<T>(gb), o);
    }
  } else {
    if (noise.defined()) {
      const in_t<T> vxi(noise);
      const auto s =
          ::contrastive::brownian_bridge_trajectory_with_noise(va, vb, vxi, out_t<T>(y), o);
      if (grad_y.defined())
        ::contrastive::brownian_bridge_trajectory_with_noise_backward(
            va, vb, vxi, s, in_t<T>(grad_y), out_t<T>(ga), out_t<T>(gb), o);
    } else {
      const auto s = ::contrastive::brownian_bridge_trajectory(va, vb, out_t<T>(y), o);
      if (grad_y.defined())
        ::contrastive::brownian_bridge_trajectory_backward(va, vb, s, in_t<T>(grad_y), out_t<T>(ga),
                                                           out_t<T>(gb), o);
    }
  }
}

// ---- Library calls: geometric consistency ------------------------------------------------------

template <class T>
double lib_geometric_consistency(const std::vector<at::Tensor>& x, std::vector<at::Tensor>& g,
                                 const geometric_consistency_options& o, bool with_grad) {
  if (x.size() == 2) {
    if (!with_grad)
      return double(
          ::contrastive::geometric_consistency_forward(in_t<T>(x[0]), in_t<T>(x[1]), o).loss);
    return double(::contrastive::geometric_consistency_forward_backward(
        in_t<T>(x[0]), in_t<T>(x[1]), out_t<T>(g[0]), out_t<T>(g[1]), o));
  }
  if (!with_grad)
    return double(::contrastive::geometric_consistency_augmented_forward(
                      in_t<T>(x[0]), in_t<T>(x[1]), in_t<T>(x[2]), in_t<T>(x[3]), o)
                      .loss);
  return double(::contrastive::geometric_consistency_augmented_forward_backward(
      in_t<T>(x[0]), in_t<T>(x[1]), in_t<T>(x[2]), in_t<T>(x[3]), out_t<T>(g[0]), out_t<T>(g[1]),
      out_t<T>(g[2]), out_t<T>(g[3]), o));
}

// ---- Library calls: the gamma loss -------------------------------------------------------------

struct gamma_forward_out {
  double loss = 0, info_nce = 0, rate_loss = 0;
  at::Tensor row_lse, row_r, col_lse, col_r, new_zeta;
};

template <class T>
gamma_forward_out lib_gamma_forward(const at::Tensor& a, const at::Tensor& b, const at::Tensor& ids,
                                    const at::Tensor& zeta, const at::Tensor& visited,
                                    const gamma_nce_options& o) {
  const vector_view<const std::int64_t> id_view(ids.data_ptr<std::int64_t>(), ids.numel());
  gamma_nce_saved<T> s;
  at::Tensor new_zeta = at::empty({0, ids.numel()}, at::TensorOptions().dtype(at::kDouble));
  if (o.rate_source == gamma_rate_source::state) {
    // The state of the batch's ids, rebuilt from the tensors (the loss reads and writes only
    // those entries); the updated entries come back as new_zeta.
    const std::int64_t samples = zeta.size(1);
    const int dirs = static_cast<int>(zeta.size(0));
    normalizer_state state(samples, dirs);
    const double* z = zeta.data_ptr<double>();
    const bool* vis = visited.data_ptr<bool>();
    const std::int64_t* id = ids.data_ptr<std::int64_t>();
    for (int d = 0; d < dirs; ++d)
      for (std::int64_t i = 0; i < ids.numel(); ++i) {
        const std::int64_t k = id[i];
        if (k >= 0 && k < samples && vis[d * samples + k]) state.set(k, d, z[d * samples + k]);
      }
    s = ::contrastive::gamma_nce_forward(in_t<T>(a), in_t<T>(b), id_view, state, o);
    new_zeta = at::empty({dirs, ids.numel()}, at::TensorOptions().dtype(at::kDouble));
    double* out = new_zeta.data_ptr<double>();
    for (int d = 0; d < dirs; ++d)
      for (std::int64_t i = 0; i < ids.numel(); ++i)
        out[d * ids.numel() + i] = state.log_normalizer(id[i], d);
  } else {
    s = ::contrastive::gamma_nce_forward(in_t<T>(a), in_t<T>(b), id_view, o);
  }
  const at::ScalarType st = c10::CppTypeToScalarType<T>::value;
  gamma_forward_out r;
  r.loss = double(s.loss);
  r.info_nce = s.info_nce;
  r.rate_loss = s.rate_loss;
  r.row_lse = vector_to_tensor(s.row.lse, st);
  r.row_r = vector_to_tensor(s.row.r, at::kDouble);
  r.col_lse = vector_to_tensor(s.col.lse, st);
  r.col_r = vector_to_tensor(s.col.r, at::kDouble);
  r.new_zeta = new_zeta;
  return r;
}

template <class T>
void lib_gamma_backward(double upstream, const at::Tensor& a, const at::Tensor& b,
                        const at::Tensor& row_lse, const at::Tensor& row_r,
                        const at::Tensor& col_lse, const at::Tensor& col_r,
                        const gamma_nce_options& o, const at::Tensor& ga, const at::Tensor& gb) {
  gamma_nce_saved<T> s;  // what the backward reads, rebuilt from the forward's statistics
  s.n = a.size(0);
  s.d = a.size(1);
  s.temperature = o.temperature;
  s.symmetric = o.symmetric;
  s.positive_in_normaliser = o.positive_in_normaliser;
  s.reduction = o.reduction;
  s.row.lse = tensor_to_vector<T, T>(row_lse);
  s.row.r = tensor_to_vector<double, double>(row_r);
  if (o.symmetric) {
    s.col.lse = tensor_to_vector<T, T>(col_lse);
    s.col.r = tensor_to_vector<double, double>(col_r);
  }
  ::contrastive::gamma_nce_backward(in_t<T>(a), in_t<T>(b), s, out_t<T>(ga), out_t<T>(gb), o,
                                    upstream);
}

/// Runs F<float> or F<double> by the compute dtype of x.
template <class R, class FF, class FD>
R by_type(const at::Tensor& x, FF&& f_float, FD&& f_double) {
  return x.scalar_type() == at::kDouble ? f_double() : f_float();
}

}  // namespace detail

// ---- Feature separation ------------------------------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                  at::Tensor>
feature_separation_forward_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& a_ind,
                               const at::Tensor& b_ind, const at::Tensor& a_ind_aug,
                               const at::Tensor& b_ind_aug, double orthogonality_weight,
                               double contrastive_weight, double uniformity_weight,
                               double temperature, double uniformity_t, bool wang_isola,
                               bool with_grad) {
  const char* fn = "feature_separation_forward";
  detail::check_inputs_cpu(fn, {{"a", &a},
                                {"b", &b},
                                {"a_ind", &a_ind},
                                {"b_ind", &b_ind},
                                {"a_ind_aug", &a_ind_aug},
                                {"b_ind_aug", &b_ind_aug}});
  feature_separation_options o;
  o.orthogonality_weight = orthogonality_weight;
  o.contrastive_weight = contrastive_weight;
  o.uniformity_weight = uniformity_weight;
  o.temperature = temperature;
  o.uniformity_t = uniformity_t;
  o.uniformity = wang_isola ? uniformity_form::wang_isola : uniformity_form::literal;
  o.num_threads = cpu_threads();
  const std::vector<at::Tensor> x = {cpu_compute(a),         cpu_compute(b),
                                     cpu_compute(a_ind),     cpu_compute(b_ind),
                                     cpu_compute(a_ind_aug), cpu_compute(b_ind_aug)};
  std::vector<at::Tensor> g;
  for (const auto& t : x) g.push_back(detail::grad_buffer(t, with_grad));
  const double loss = call_library([&] {
    return detail::by_type<double>(
        x[0], [&] { return detail::lib_feature_separation<float>(x, g, o, with_grad); },
        [&] { return detail::lib_feature_separation<double>(x, g, o, with_grad); });
  });
  g = detail::cast_grads_back(
      g, {a.scalar_type(), b.scalar_type(), a_ind.scalar_type(), b_ind.scalar_type(),
          a_ind_aug.scalar_type(), b_ind_aug.scalar_type()});
  return std::make_tuple(detail::loss_tensor(loss, loss_type(a.scalar_type())), g[0], g[1], g[2],
                         g[3], g[4], g[5]);
}

// ---- Brownian bridge ---------------------------------------------------------------------------

inline brownian_bridge_options bridge_options(double t, bool random_t, double t_min, double t_max,
                                              std::int64_t seed, std::int64_t step,
                                              std::int64_t first_id, const at::Tensor& ids) {
  brownian_bridge_options b;
  b.t = t;
  b.random_t = random_t;
  b.t_min = t_min;
  b.t_max = t_max;
  b.seed = static_cast<std::uint64_t>(seed);
  b.step = static_cast<std::uint32_t>(step);
  b.first_id = static_cast<std::uint64_t>(first_id);
  b.ids = as_span<decltype(b.ids)>(ids);
  b.num_threads = cpu_threads();
  return b;
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> brownian_bridge_loss_forward_cpu(
    const at::Tensor& a, const at::Tensor& b, const at::Tensor& a_aug, double t, bool random_t,
    double t_min, double t_max, std::int64_t seed, std::int64_t step, std::int64_t first_id,
    const c10::optional<at::Tensor>& ids, bool nll_weight, bool detach_a_aug, bool with_grad) {
  const char* fn = "brownian_bridge_loss_forward";
  detail::check_inputs_cpu(fn, {{"a", &a}, {"b", &b}, {"a_aug", &a_aug}});
  const at::Tensor id = labels_int64(fn, "ids", ids);
  brownian_bridge_loss_options o;
  o.bridge = bridge_options(t, random_t, t_min, t_max, seed, step, first_id, id);
  o.nll_weight = nll_weight;
  o.detach_a_aug = detach_a_aug;
  o.num_threads = cpu_threads();
  const std::vector<at::Tensor> x = {cpu_compute(a), cpu_compute(b), cpu_compute(a_aug)};
  std::vector<at::Tensor> g;
  for (const auto& v : x) g.push_back(detail::grad_buffer(v, with_grad));
  const double loss = call_library([&] {
    return detail::by_type<double>(
        x[0], [&] { return detail::lib_bridge_loss<float>(x, g, o, with_grad); },
        [&] { return detail::lib_bridge_loss<double>(x, g, o, with_grad); });
  });
  g = detail::cast_grads_back(g, {a.scalar_type(), b.scalar_type(), a_aug.scalar_type()});
  return std::make_tuple(detail::loss_tensor(loss, loss_type(a.scalar_type())), g[0], g[1], g[2]);
}

namespace detail {

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> bridge_sample_run(
    const char* fn, const at::Tensor& grad_y, const at::Tensor& a, const at::Tensor& b,
    const c10::optional<at::Tensor>& noise, std::int64_t steps, double t, bool random_t,
    double t_min, double t_max, bool add_noise, double sigma, bool reproject, std::int64_t seed,
    std::int64_t step, std::int64_t first_id, const c10::optional<at::Tensor>& ids) {
  check_inputs_cpu(fn, {{"a", &a}, {"b", &b}});
  at::Tensor eps;
  if (noise.has_value() && noise->defined()) {
    eps = *noise;
    check_inputs_cpu(fn, {{"a", &a}, {"noise", &eps}});
  }
  TORCH_CHECK_VALUE(steps >= 0, fn, ": 'steps' must be >= 0 (0: points), got ", steps);
  const at::Tensor id = labels_int64(fn, "ids", ids);
  brownian_bridge_options o = bridge_options(t, random_t, t_min, t_max, seed, step, first_id, id);
  o.noise = add_noise;
  o.sigma = sigma;
  o.reproject = reproject;
  const bool path = steps > 0;
  if (path) o.steps = steps;
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  const at::Tensor ce = eps.defined() ? cpu_compute(eps) : eps;
  const std::int64_t rows = path ? a.size(0) * (steps + 1) : a.size(0);
  at::Tensor y = at::empty({rows, a.size(1)}, ca.options());
  at::Tensor gy, ga, gb;
  if (grad_y.defined()) {
    TORCH_CHECK_VALUE(grad_y.dim() == 2 && grad_y.size(0) == rows && grad_y.size(1) == a.size(1),
                      fn, ": 'grad' must be ", rows, " x ", a.size(1), ", got ", grad_y.sizes());
    gy = grad_y.to(ca.scalar_type());
    ga = at::empty(ca.sizes(), ca.options());
    gb = at::empty(cb.sizes(), cb.options());
  }
  call_library([&] {
    if (ca.scalar_type() == at::kDouble)
      lib_bridge_sample<double>(ca, cb, ce, path, y, o, gy, ga, gb);
    else
      lib_bridge_sample<float>(ca, cb, ce, path, y, o, gy, ga, gb);
    return 0;
  });
  if (grad_y.defined())
    return std::make_tuple(y, cast_back(ga, a.scalar_type()), cast_back(gb, b.scalar_type()));
  return std::make_tuple(cast_back(y, a.scalar_type()), at::Tensor(), at::Tensor());
}

}  // namespace detail

/// Points (steps = 0, N x D) or trajectories (steps = K, N (K+1) x D) of the bridge.
inline at::Tensor brownian_bridge_sample_forward_cpu(
    const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& noise,
    std::int64_t steps, double t, bool random_t, double t_min, double t_max, bool add_noise,
    double sigma, bool reproject, std::int64_t seed, std::int64_t step, std::int64_t first_id,
    const c10::optional<at::Tensor>& ids) {
  return std::get<0>(detail::bridge_sample_run("brownian_bridge_sample", at::Tensor(), a, b, noise,
                                               steps, t, random_t, t_min, t_max, add_noise, sigma,
                                               reproject, seed, step, first_id, ids));
}

/// Gradients of the sample for a, b (the noise is held fixed).
inline std::tuple<at::Tensor, at::Tensor> brownian_bridge_sample_backward_cpu(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b,
    const c10::optional<at::Tensor>& noise, std::int64_t steps, double t, bool random_t,
    double t_min, double t_max, bool add_noise, double sigma, bool reproject, std::int64_t seed,
    std::int64_t step, std::int64_t first_id, const c10::optional<at::Tensor>& ids) {
  TORCH_CHECK_VALUE(grad.defined(), "brownian_bridge_sample_backward: undefined gradient");
  auto r = detail::bridge_sample_run("brownian_bridge_sample_backward", grad, a, b, noise, steps, t,
                                     random_t, t_min, t_max, add_noise, sigma, reproject, seed,
                                     step, first_id, ids);
  return std::make_tuple(std::get<1>(r), std::get<2>(r));
}

// ---- Geometric consistency ---------------------------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
geometric_consistency_forward_cpu(const at::Tensor& a, const at::Tensor& b,
                                  const c10::optional<at::Tensor>& a_aug,
                                  const c10::optional<at::Tensor>& b_aug, double cross_modal_weight,
                                  double in_modal_weight, bool detach_a_aug, bool detach_b_aug,
                                  bool with_grad) {
  const char* fn = "geometric_consistency_forward";
  const bool augmented = a_aug.has_value() && a_aug->defined();
  TORCH_CHECK_VALUE(augmented == (b_aug.has_value() && b_aug->defined()), fn,
                    ": give both 'a_aug' and 'b_aug' (the augmented variant) or neither");
  std::vector<at::Tensor> x = {cpu_compute(a), cpu_compute(b)};
  std::vector<at::ScalarType> types = {a.scalar_type(), b.scalar_type()};
  if (augmented) {
    detail::check_inputs_cpu(fn, {{"a", &a}, {"b", &b}, {"a_aug", &*a_aug}, {"b_aug", &*b_aug}});
    x.push_back(cpu_compute(*a_aug));
    x.push_back(cpu_compute(*b_aug));
    types.push_back(a_aug->scalar_type());
    types.push_back(b_aug->scalar_type());
  } else {
    detail::check_inputs_cpu(fn, {{"a", &a}, {"b", &b}});
  }
  geometric_consistency_options o;
  o.cross_modal_weight = cross_modal_weight;
  o.in_modal_weight = in_modal_weight;
  o.detach_a_aug = detach_a_aug;
  o.detach_b_aug = detach_b_aug;
  o.num_threads = cpu_threads();
  std::vector<at::Tensor> g;
  for (const auto& t : x) g.push_back(detail::grad_buffer(t, with_grad));
  const double loss = call_library([&] {
    return detail::by_type<double>(
        x[0], [&] { return detail::lib_geometric_consistency<float>(x, g, o, with_grad); },
        [&] { return detail::lib_geometric_consistency<double>(x, g, o, with_grad); });
  });
  g = detail::cast_grads_back(g, types);
  const at::Tensor none = at::empty({0}, a.options());
  return std::make_tuple(detail::loss_tensor(loss, loss_type(a.scalar_type())), g[0], g[1],
                         augmented ? g[2] : none, augmented ? g[3] : none.clone());
}

// ---- The gamma loss ----------------------------------------------------------------------------

inline gamma_nce_options gamma_options(const char* fn, double temperature, bool symmetric,
                                       double alpha, double beta, std::int64_t seed,
                                       std::int64_t step, std::int64_t rate_source,
                                       bool sample_then_update, bool positive_in_normaliser,
                                       std::int64_t reduction) {
  gamma_nce_options o;
  o.temperature = temperature;
  o.symmetric = symmetric;
  o.alpha = alpha;
  o.beta = beta;
  o.seed = static_cast<std::uint64_t>(seed);
  o.step = static_cast<std::uint32_t>(step);
  TORCH_CHECK_VALUE(rate_source >= 0 && rate_source <= 2, fn,
                    ": rate_source must be 0 (state), 1 (same_batch) or 2 (exact), got ",
                    rate_source);
  o.rate_source = rate_source == 0   ? gamma_rate_source::state
                  : rate_source == 1 ? gamma_rate_source::same_batch
                                     : gamma_rate_source::exact;
  o.order = sample_then_update ? gamma_update_order::sample_then_update
                               : gamma_update_order::update_then_sample;
  o.positive_in_normaliser = positive_in_normaliser;
  o.reduction = to_reduction(fn, reduction);
  o.num_threads = cpu_threads();
  return o;
}

/// -> (loss, info_nce, rate_loss, row_lse, row_r, col_lse, col_r, new_zeta)
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                  at::Tensor, at::Tensor>
gamma_nce_forward_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& ids,
                      const c10::optional<at::Tensor>& zeta,
                      const c10::optional<at::Tensor>& visited, double temperature, bool symmetric,
                      double alpha, double beta, std::int64_t seed, std::int64_t step,
                      std::int64_t rate_source, bool sample_then_update,
                      bool positive_in_normaliser, const c10::optional<at::Tensor>& exact_a,
                      const c10::optional<at::Tensor>& exact_b, std::int64_t reduction) {
  const char* fn = "gamma_nce_forward";
  detail::check_inputs_cpu(fn, {{"a", &a}, {"b", &b}});
  gamma_nce_options o =
      gamma_options(fn, temperature, symmetric, alpha, beta, seed, step, rate_source,
                    sample_then_update, positive_in_normaliser, reduction);
  const at::Tensor id = labels_int64(fn, "ids", ids);
  TORCH_CHECK_VALUE(id.defined(), fn, ": 'ids' (one dataset id per row) is required");
  at::Tensor z, v;
  if (o.rate_source == gamma_rate_source::state) {
    TORCH_CHECK_VALUE(
        zeta.has_value() && zeta->defined() && visited.has_value() && visited->defined(), fn,
        ": rate_source 'state' needs the state (zeta and visited)");
    TORCH_CHECK_VALUE(zeta->dim() == 2 && visited->sizes() == zeta->sizes() && zeta->size(0) >= 1 &&
                          zeta->size(0) <= 2,
                      fn, ": the state must be [directions (1 or 2), samples], got zeta ",
                      zeta->sizes(), " and visited ", visited->sizes());
    z = zeta->to(at::kCPU, at::kDouble).contiguous();
    v = visited->to(at::kCPU, at::kBool).contiguous();
  }
  at::Tensor ea, eb;
  if (exact_a.has_value() && exact_a->defined()) {
    ea = exact_a->to(at::kCPU, at::kDouble).contiguous();
    o.exact_log_normalizer_a =
        decltype(o.exact_log_normalizer_a)(ea.data_ptr<double>(), ea.numel());
  }
  if (exact_b.has_value() && exact_b->defined()) {
    eb = exact_b->to(at::kCPU, at::kDouble).contiguous();
    o.exact_log_normalizer_b =
        decltype(o.exact_log_normalizer_b)(eb.data_ptr<double>(), eb.numel());
  }
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  const detail::gamma_forward_out r = call_library([&] {
    return ca.scalar_type() == at::kDouble ? detail::lib_gamma_forward<double>(ca, cb, id, z, v, o)
                                           : detail::lib_gamma_forward<float>(ca, cb, id, z, v, o);
  });
  const at::ScalarType lt = loss_type(a.scalar_type());
  return std::make_tuple(detail::loss_tensor(r.loss, lt), detail::loss_tensor(r.info_nce, lt),
                         detail::loss_tensor(r.rate_loss, lt), r.row_lse, r.row_r, r.col_lse,
                         r.col_r, r.new_zeta);
}

inline std::tuple<at::Tensor, at::Tensor> gamma_nce_backward_cpu(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& row_lse,
    const at::Tensor& row_r, const at::Tensor& col_lse, const at::Tensor& col_r, double temperature,
    bool symmetric, bool positive_in_normaliser, std::int64_t reduction) {
  const char* fn = "gamma_nce_backward";
  detail::check_inputs_cpu(fn, {{"a", &a}, {"b", &b}});
  const gamma_nce_options o = gamma_options(fn, temperature, symmetric, 1.0, 0.9, 0, 0, 1, false,
                                            positive_in_normaliser, reduction);
  TORCH_CHECK_VALUE(grad.defined() && grad.numel() == 1, fn,
                    ": the upstream gradient must be a scalar");
  const double up = grad.item<double>();
  const at::Tensor ca = cpu_compute(a), cb = cpu_compute(b);
  at::Tensor ga = at::empty(ca.sizes(), ca.options()), gb = at::empty(cb.sizes(), cb.options());
  call_library([&] {
    if (ca.scalar_type() == at::kDouble)
      detail::lib_gamma_backward<double>(up, ca, cb, row_lse, row_r, col_lse, col_r, o, ga, gb);
    else
      detail::lib_gamma_backward<float>(up, ca, cb, row_lse, row_r, col_lse, col_r, o, ga, gb);
    return 0;
  });
  return std::make_tuple(cast_back(ga, a.scalar_type()), cast_back(gb, b.scalar_type()));
}

}  // namespace libtorch
CONTRASTIVE_NAMESPACE_END

#endif  // __has_include(<ATen/ATen.h>)
#endif  // CONTRASTIVE_TORCH_REGULARIZERS_HPP
