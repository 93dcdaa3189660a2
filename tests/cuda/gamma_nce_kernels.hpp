#ifndef CONTRASTIVE_TESTS_CUDA_GAMMA_NCE_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_GAMMA_NCE_KERNELS_HPP

// Host functions (built by nvcc in gamma_nce_kernels.cu) that run the GPU gamma loss of
// cuda/gamma_nce.cuh and return plain values to the Catch2 side (g++).

#include <cstdint>
#include <string>
#include <vector>

#include <contrastive/losses/gamma_nce_options.hpp>
#include <contrastive/state/normalizer_state.hpp>

#include "cuda/info_nce_kernels.hpp"

namespace cuda_test {

struct gamma_case {
  int n = 0, d = 0;
  double temperature = 0.1;
  bool symmetric = true;
  bool positive_in_normaliser = false;
  double alpha = 4, beta = 0.3;
  std::uint64_t seed = 7;
  std::uint32_t step = 3;
  int source = 0;  // 0 state, 1 same_batch, 2 exact
  bool sample_then_update = false;
  bool sum_reduction = false;
  double upstream = 1;
  bool accumulate = false;  // gradients start at 0.5
  bool generic = false;     // through the generic contrastive::gamma_nce_* functions
  std::vector<std::int64_t> ids;
  std::vector<double> exact_a, exact_b;
};

struct gamma_result {
  double loss = 0, info_nce = 0, rate_loss = 0;
  std::vector<double> row_lse, col_lse, r_row, r_col;
  std::vector<double> grad_a, grad_b;  // n x d; poisoned with NaN first unless accumulate
  double grad_temperature = 0;         // upstream * dL/dtau
  std::string error;                   // a thrown exception's message
};

/// The loss's options for a case (the exact rates not set: they are device or host memory).
inline contrastive::gamma_nce_options gamma_options(const gamma_case& c) {
  contrastive::gamma_nce_options o;
  o.temperature = c.temperature;
  o.symmetric = c.symmetric;
  o.positive_in_normaliser = c.positive_in_normaliser;
  o.alpha = c.alpha;
  o.beta = c.beta;
  o.seed = c.seed;
  o.step = c.step;
  o.rate_source = c.source == 0   ? contrastive::gamma_rate_source::state
                  : c.source == 1 ? contrastive::gamma_rate_source::same_batch
                                  : contrastive::gamma_rate_source::exact;
  o.order = c.sample_then_update ? contrastive::gamma_update_order::sample_then_update
                                 : contrastive::gamma_update_order::update_then_sample;
  o.reduction =
      c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
  o.accumulate = c.accumulate;
  return o;
}

/// The throwing wrappers (or the generic functions) on device copies of a and b rounded to t.
/// With source 0 the state is uploaded from *state, stepped on the device and downloaded back.
gamma_result run_gamma_nce(dtype t, const gamma_case& c, const std::vector<double>& a,
                           const std::vector<double>& b, contrastive::normalizer_state* state);

/// A device state: upload, download (returned), save to `path` from the device.
contrastive::normalizer_state device_state_round_trip(const contrastive::normalizer_state& s,
                                                      const std::string& path);
/// A device state loaded from `path` (sizes of `like`), downloaded.
contrastive::normalizer_state device_state_load(const contrastive::normalizer_state& like,
                                                const std::string& path);

/// Workspace bytes of the GPU gamma loss (no device needed).
std::size_t gamma_workspace_bytes(dtype t, int n, int d);

}  // namespace cuda_test

#endif
