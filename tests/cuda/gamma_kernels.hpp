#ifndef CONTRASTIVE_TESTS_CUDA_GAMMA_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_GAMMA_KERNELS_HPP

// Host functions that run the CUDA gamma sampler (gamma_kernels.cu, nvcc) for test_gamma.cpp
// (g++). No CUDA type appears here. Library exceptions (contrastive::invalid_argument,
// cuda::cuda_error) pass through unchanged.

#include <cstdint>
#include <vector>

#include <contrastive/core/config.hpp>
#include <contrastive/sampling/gamma.hpp>
#include <contrastive/sampling/philox.hpp>

namespace gpu_gamma {

using contrastive::index_t;

/// cudaErrorInvalidValue as an int.
int invalid_value_code();

/// Blocks 0..count-1 of stream s, computed on the device.
std::vector<contrastive::philox_block> philox_blocks(const contrastive::philox_stream& s,
                                                     std::uint32_t count);

/// gamma_variate(alpha, (seed, ids[k], step, stream)) on the device.
std::vector<contrastive::gamma_draw> gamma_draws(const contrastive::gamma_params& p,
                                                 const std::vector<std::uint64_t>& ids);

enum class layout { row_major, col_major, padded };

/// A device allocation after a fill, copied back whole (strides in elements; padding included).
struct filled {
  std::vector<double> data;
  index_t row_stride = 0, col_stride = 0;
  double at(index_t i, index_t j) const {
    return data[static_cast<std::size_t>(i * row_stride + j * col_stride)];
  }
};

/// cuda::fill_gamma (or fill_gamma_async + synchronise when `async`) on a rows x cols device
/// matrix of float (single) or double, whose allocation is first filled with NaN.
/// The throwing form fills the padded layout through the generic contrastive::fill_gamma.
filled fill_matrix(bool single, index_t rows, index_t cols, layout l,
                   const contrastive::gamma_params& p, std::uint64_t first_id, bool async);

/// The same on a vector_view of n elements with the given stride (>= 1): the whole span back.
std::vector<double> fill_vector(bool single, index_t n, index_t stride,
                                const contrastive::gamma_params& p, std::uint64_t first_id,
                                bool async);

/// The ids overload on a rows x cols row-major matrix (ids copied to the device; count = ids.size()
/// unless count >= 0 is given; null_ids passes a null pointer).
std::vector<double> fill_ids(bool single, index_t rows, index_t cols,
                             const std::vector<std::int64_t>& ids,
                             const contrastive::gamma_params& p, bool async, index_t count = -1,
                             bool null_ids = false);

/// fill_gamma_async's status for an n-element double vector (out null when null_out), no sync.
int fill_async_status(const contrastive::gamma_params& p, index_t n, bool null_out);

/// fill_gamma_async's status for the ids overload (ids copied to the device unless null_ids).
int fill_ids_async_status(const contrastive::gamma_params& p, index_t n,
                          const std::vector<std::int64_t>& ids, index_t count, bool null_ids);

/// cuda::fill_gamma on an n-element double vector, out null when null_out (throws on bad args).
void fill_checked(const contrastive::gamma_params& p, index_t n, bool null_out);

}  // namespace gpu_gamma

#endif  // CONTRASTIVE_TESTS_CUDA_GAMMA_KERNELS_HPP
