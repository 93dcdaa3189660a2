#ifndef CONTRASTIVE_TESTS_CUDA_BRIDGE_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_BRIDGE_KERNELS_HPP

// Host functions that run the CUDA Brownian-bridge sampler (bridge_kernels.cu, nvcc) for
// test_brownian_bridge.cpp (g++). No CUDA type appears here; library exceptions pass through.

#include <cstdint>
#include <string>
#include <vector>

#include <contrastive/core/config.hpp>
#include <contrastive/losses/brownian_bridge_loss_options.hpp>
#include <contrastive/sampling/brownian_bridge_options.hpp>

namespace gpu_bridge {

using contrastive::index_t;

struct run_options {
  bool single = false;        // float instead of double
  bool async = false;         // *_async + synchronise instead of the throwing wrapper
  bool col_major_in = false;  // v and u stored column-major on the device
  bool padded_out = false;    // output rows padded by 3 elements (must stay untouched)
  index_t out_rows = -1;      // output rows (-1: the right number)
  std::int64_t ws_delta = 0;  // trajectory workspace bytes given minus needed (async only)
};

struct result {
  std::vector<double> out;  // row-major, the output's shape
  int padding_written = 0;  // padding elements that are no longer NaN
  int status = 0;           // the *_async status (async runs)
};

/// v, u: n x d row-major host values (converted to float when single). `ids` (if not empty) is
/// copied to the device and put into o.ids. The output is filled with NaN first. Async runs
/// return the status and skip the copy back when it is not cudaSuccess.
result sample(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
              contrastive::brownian_bridge_options o, const std::vector<std::int64_t>& ids,
              const run_options& r);
result trajectory(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
                  contrastive::brownian_bridge_options o, const std::vector<std::int64_t>& ids,
                  const run_options& r);

/// The Brownian-bridge loss on the device (the throwing forms, or the generic functions): loss,
/// per-row t, the three gradients (poisoned with NaN first, or 0.5 with o.accumulate) and dL/dt
/// per row and summed; `error` holds a thrown exception's message.
struct loss_result {
  double loss = 0, dt = 0;
  std::vector<double> t, dt_rows, ga, gb, gaa;
  std::string error;
};
loss_result bridge_loss(const std::vector<double>& v, const std::vector<double>& u,
                        const std::vector<double>& a, index_t n, index_t d,
                        contrastive::brownian_bridge_loss_options o,
                        const std::vector<std::int64_t>& ids, bool single, bool generic,
                        double upstream);

/// The GPU's per-row loss code (bridge_loss_forward_row / _backward_row, host-device) run on the
/// host over host memory, in double: what the kernels compute, checkable without a GPU.
loss_result bridge_loss_rows_on_host(const std::vector<double>& v, const std::vector<double>& u,
                                     const std::vector<double>& a, index_t n, index_t d,
                                     const contrastive::brownian_bridge_loss_options& o,
                                     double upstream);

/// The samplers' backward on Philox noise: dL/da, dL/db (poisoned with NaN first, or 0.5 with
/// o.accumulate), dL/dt per row and summed (points), dL/dsigma; `g` is dL/dy (points, N x D) or
/// dL/dx (paths, N (K + 1) x D). On the device (the throwing forms), or the kernels' row code run
/// on the host in double.
struct sampler_gradient {
  std::vector<double> ga, gb, dt_rows;
  double dt = 0, dsigma = 0;
  std::string error;
};
/// `generic`: through contrastive::brownian_bridge_sample / _trajectory and their backward.
sampler_gradient sampler_backward(const std::vector<double>& v, const std::vector<double>& u,
                                  const std::vector<double>& g, index_t n, index_t d,
                                  const contrastive::brownian_bridge_options& o, bool trajectory,
                                  bool single, bool generic = false);
sampler_gradient sampler_backward_rows_on_host(const std::vector<double>& v,
                                               const std::vector<double>& u,
                                               const std::vector<double>& g, index_t n, index_t d,
                                               const contrastive::brownian_bridge_options& o,
                                               bool trajectory);

int invalid_value_code();

}  // namespace gpu_bridge

#endif  // CONTRASTIVE_TESTS_CUDA_BRIDGE_KERNELS_HPP
