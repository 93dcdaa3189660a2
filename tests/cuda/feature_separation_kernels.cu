// Runs the GPU deep feature separation (cuda/feature_separation.cuh) for
// tests/cuda/test_feature_separation.cpp (see feature_separation_kernels.hpp).

#include "cuda/feature_separation_kernels.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/feature_separation.cuh>
#include <contrastive/losses/feature_separation.hpp>

#include "cuda/device_support.cuh"

namespace cuda_test {
namespace {

namespace cc = contrastive::cuda;

template <class T>
separation_result run(const separation_case& c, const std::vector<std::vector<double>>& x,
                      cc::math_mode m) {
  separation_result r;
  try {
    std::vector<std::unique_ptr<device_matrix<T>>> in, g;
    const double init = c.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    for (const auto& h : x) {
      in.push_back(std::make_unique<device_matrix<T>>(h, c.n, c.d));
      g.push_back(
          std::make_unique<device_matrix<T>>(std::vector<double>(h.size(), init), c.n, c.d));
    }
    const contrastive::feature_separation_options o = separation_options(c);
    if (c.orthogonality_only) {
      const auto s = c.generic ? contrastive::feature_orthogonality_forward(
                                     in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), o)
                               : cc::feature_orthogonality_forward<T>(in[0]->in(), in[1]->in(),
                                                                      in[2]->in(), in[3]->in(), o);
      r.loss = s.loss;
      if (c.generic)
        contrastive::feature_orthogonality_backward(in[0]->in(), in[1]->in(), in[2]->in(),
                                                    in[3]->in(), s, g[0]->out(), g[1]->out(),
                                                    g[2]->out(), g[3]->out(), o, c.upstream);
      else
        cc::feature_orthogonality_backward<T>(in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), s,
                                              g[0]->out(), g[1]->out(), g[2]->out(), g[3]->out(), o,
                                              c.upstream);
    } else if (c.in_modal_only) {
      const auto s = c.generic ? contrastive::in_modal_contrastive_forward(
                                     in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), o)
                               : cc::in_modal_contrastive_forward<T>(
                                     in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), o, m);
      r.loss = s.loss;
      const contrastive::temperature_gradient tg =
          c.generic ? contrastive::in_modal_contrastive_backward(
                          in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), s, g[0]->out(),
                          g[1]->out(), g[2]->out(), g[3]->out(), o, c.upstream)
                    : cc::in_modal_contrastive_backward<T>(in[0]->in(), in[1]->in(), in[2]->in(),
                                                           in[3]->in(), s, g[0]->out(), g[1]->out(),
                                                           g[2]->out(), g[3]->out(), o, c.upstream);
      r.grad_temperature = tg.temperature;
    } else if (c.uniformity_only) {
      const auto s = c.generic
                         ? contrastive::feature_uniformity_forward(in[0]->in(), in[1]->in(), o)
                         : cc::feature_uniformity_forward<T>(in[0]->in(), in[1]->in(), o, m);
      r.loss = s.loss;
      r.log_sum_a = s.log_sum_a;
      r.log_sum_b = s.log_sum_b;
      if (c.generic)
        contrastive::feature_uniformity_backward(in[0]->in(), in[1]->in(), s, g[0]->out(),
                                                 g[1]->out(), o, c.upstream);
      else
        cc::feature_uniformity_backward<T>(in[0]->in(), in[1]->in(), s, g[0]->out(), g[1]->out(), o,
                                           c.upstream);
    } else {
      const auto s =
          c.generic
              ? contrastive::feature_separation_forward(in[0]->in(), in[1]->in(), in[2]->in(),
                                                        in[3]->in(), in[4]->in(), in[5]->in(), o)
              : cc::feature_separation_forward<T>(in[0]->in(), in[1]->in(), in[2]->in(),
                                                  in[3]->in(), in[4]->in(), in[5]->in(), o, m);
      r.loss = s.loss;
      const contrastive::temperature_gradient tg =
          c.generic ? contrastive::feature_separation_backward(
                          in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), in[4]->in(),
                          in[5]->in(), s, g[0]->out(), g[1]->out(), g[2]->out(), g[3]->out(),
                          g[4]->out(), g[5]->out(), o, c.upstream)
                    : cc::feature_separation_backward<T>(
                          in[0]->in(), in[1]->in(), in[2]->in(), in[3]->in(), in[4]->in(),
                          in[5]->in(), s, g[0]->out(), g[1]->out(), g[2]->out(), g[3]->out(),
                          g[4]->out(), g[5]->out(), o, c.upstream);
      r.grad_temperature = tg.temperature;
    }
    for (const auto& gi : g) r.grads.push_back(gi->download());
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

separation_result run_feature_separation(dtype t, const separation_case& c,
                                         const std::vector<std::vector<double>>& x) {
  switch (t) {
    case dtype::f32:
      return run<float>(c, x, cc::math_mode::fp32);
    case dtype::tf32:
      return run<float>(c, x, cc::math_mode::tf32);
    case dtype::f16:
      return run<__half>(c, x, cc::math_mode::fp32);
    case dtype::bf16:
      return run<__nv_bfloat16>(c, x, cc::math_mode::fp32);
  }
  throw std::logic_error("run_feature_separation: unknown dtype");
}

std::size_t uniformity_workspace_bytes(dtype t, int n, int d) {
  const contrastive::feature_separation_options o;
  return t == dtype::f16 || t == dtype::bf16
             ? cc::feature_uniformity_workspace_bytes<__half>(n, d, o)
             : cc::feature_uniformity_workspace_bytes<float>(n, d, o);
}

}  // namespace cuda_test
