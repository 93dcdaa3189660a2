// Runs the GPU gamma loss (cuda/gamma_nce.cuh) for tests/cuda/test_gamma_nce.cpp (see
// gamma_nce_kernels.hpp).

#include "cuda/gamma_nce_kernels.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/gamma_nce.cuh>
#include <contrastive/losses/gamma_nce.hpp>

#include "cuda/device_support.cuh"

namespace cuda_test {
namespace {

namespace cc = contrastive::cuda;

template <class T>
gamma_result run(const gamma_case& c, const std::vector<double>& a, const std::vector<double>& b,
                 contrastive::normalizer_state* state, cc::math_mode m) {
  gamma_result r;
  try {
    device_matrix<T> da(a, c.n, c.d), db(b, c.n, c.d);
    const double init = c.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    device_matrix<T> ga(std::vector<double>(a.size(), init), c.n, c.d);
    device_matrix<T> gb(std::vector<double>(a.size(), init), c.n, c.d);
    device_vector<std::int64_t> ids(c.ids);
    device_vector<double> ea(c.exact_a), eb(c.exact_b);
    contrastive::gamma_nce_options o = gamma_options(c);
    o.exact_log_normalizer_a = ea.view();  // device memory, as the GPU path takes them
    o.exact_log_normalizer_b = eb.view();
    cc::device_normalizer_state ds;
    if (c.source == 0 && state != nullptr) ds.upload(*state);
    cc::gamma_nce_device_saved saved;
    if (c.generic) {
      saved = c.source == 0 ? contrastive::gamma_nce_forward(da.in(), db.in(), ids.view(), ds, o)
                            : contrastive::gamma_nce_forward(da.in(), db.in(), ids.view(), o);
    } else {
      saved = c.source == 0
                  ? cc::gamma_nce_forward<T>(da.in(), db.in(), ids.device_view(), ds, o, m)
                  : cc::gamma_nce_forward<T>(da.in(), db.in(), ids.device_view(), o, m);
    }
    if (c.source == 0 && state != nullptr) *state = ds.download();
    r.loss = saved.loss;
    r.info_nce = saved.info_nce;
    r.rate_loss = saved.rate_loss;
    r.row_lse = download_floats(saved.row_lse.data(), c.n);
    r.r_row = download_values<double>(saved.r_row.data(), c.n);
    if (c.symmetric) {
      r.col_lse = download_floats(saved.col_lse.data(), c.n);
      r.r_col = download_values<double>(saved.r_col.data(), c.n);
    }
    const contrastive::temperature_gradient tg =
        c.generic
            ? contrastive::gamma_nce_backward(da.in(), db.in(), saved, ga.out(), gb.out(), o,
                                              c.upstream)
            : cc::gamma_nce_backward<T>(da.in(), db.in(), saved, ga.out(), gb.out(), o, c.upstream);
    r.grad_temperature = tg.temperature;
    r.grad_a = ga.download();
    r.grad_b = gb.download();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

gamma_result run_gamma_nce(dtype t, const gamma_case& c, const std::vector<double>& a,
                           const std::vector<double>& b, contrastive::normalizer_state* state) {
  switch (t) {
    case dtype::f32:
      return run<float>(c, a, b, state, cc::math_mode::fp32);
    case dtype::tf32:
      return run<float>(c, a, b, state, cc::math_mode::tf32);
    case dtype::f16:
      return run<__half>(c, a, b, state, cc::math_mode::fp32);
    case dtype::bf16:
      return run<__nv_bfloat16>(c, a, b, state, cc::math_mode::fp32);
  }
  throw std::logic_error("run_gamma_nce: unknown dtype");
}

contrastive::normalizer_state device_state_round_trip(const contrastive::normalizer_state& s,
                                                      const std::string& path) {
  const cc::device_normalizer_state d(s);
  d.save(path);
  return d.download();
}

contrastive::normalizer_state device_state_load(const contrastive::normalizer_state& like,
                                                const std::string& path) {
  cc::device_normalizer_state d(like.samples(), like.directions());
  d.load(path);
  return d.download();
}

std::size_t gamma_workspace_bytes(dtype t, int n, int d) {
  const contrastive::gamma_nce_options o;
  return t == dtype::f16 || t == dtype::bf16 ? cc::gamma_nce_workspace_bytes<__half>(n, d, o)
                                             : cc::gamma_nce_workspace_bytes<float>(n, d, o);
}

}  // namespace cuda_test
