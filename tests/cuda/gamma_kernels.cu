// nvcc side of test_gamma.cpp: device memory, the CUDA gamma sampler, copies back.

#include "cuda/gamma_kernels.hpp"

#include <cuda_runtime.h>

#include <cstring>
#include <limits>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/error.cuh>
#include <contrastive/cuda/gamma.cuh>

namespace gpu_gamma {

namespace cc = contrastive::cuda;
using contrastive::device_memory;
using contrastive::gamma_params;
using contrastive::matrix_view;
using contrastive::vector_view;

namespace {

void check(cudaError_t s, const char* what) { cc::throw_on_error(s, what); }

__global__ void philox_kernel(contrastive::philox_stream s, std::uint32_t count,
                              contrastive::philox_block* out) {
  for (std::uint32_t k = blockIdx.x * blockDim.x + threadIdx.x; k < count;
       k += blockDim.x * gridDim.x)
    out[k] = s.block(k);
}

__global__ void draws_kernel(gamma_params p, const std::uint64_t* ids, index_t n,
                             contrastive::gamma_draw* out) {
  for (index_t k = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<index_t>(blockDim.x) * gridDim.x)
    out[k] = contrastive::gamma_variate(
        p.alpha, contrastive::philox_stream{p.seed, ids[k], p.step, p.stream});
}

/// n elements of T set to NaN (all bytes 0xFF is a NaN for float and double).
template <class T>
cc::device_buffer poisoned(index_t n) {
  cc::device_buffer b(static_cast<std::size_t>(n) * sizeof(T));
  if (n > 0)
    check(cudaMemset(b.data(), 0xFF, static_cast<std::size_t>(n) * sizeof(T)), "cudaMemset");
  return b;
}

template <class T>
std::vector<double> back(const cc::device_buffer& b, index_t n) {
  std::vector<T> h(static_cast<std::size_t>(n));
  if (n > 0)
    check(cudaMemcpy(h.data(), b.data(), static_cast<std::size_t>(n) * sizeof(T),
                     cudaMemcpyDeviceToHost),
          "cudaMemcpy");
  return std::vector<double>(h.begin(), h.end());
}

cc::device_buffer upload_ids(const std::vector<std::int64_t>& ids) {
  cc::device_buffer b(ids.size() * sizeof(std::int64_t));
  if (!ids.empty())
    check(
        cudaMemcpy(b.data(), ids.data(), ids.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice),
        "cudaMemcpy");
  return b;
}

template <class T>
filled fill_matrix_t(index_t rows, index_t cols, layout l, const gamma_params& p,
                     std::uint64_t first_id, bool async) {
  filled f;
  index_t span = rows * cols;
  if (l == layout::row_major) {
    f.row_stride = cols;
    f.col_stride = 1;
  } else if (l == layout::col_major) {
    f.row_stride = 1;
    f.col_stride = rows;
  } else {
    f.row_stride = cols + 3;
    f.col_stride = 1;
    span = rows * (cols + 3);
  }
  cc::device_buffer b = poisoned<T>(span);
  const auto out = contrastive::make_device_view(b.as<T>(), rows, cols, f.row_stride, f.col_stride);
  if (async) {
    check(cc::fill_gamma_async(out, p, first_id, nullptr), "fill_gamma_async");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  } else if (l == layout::padded) {
    contrastive::fill_gamma(out, p, first_id);  // the generic call dispatches to cuda::fill_gamma
  } else {
    cc::fill_gamma(out, p, first_id);
  }
  f.data = back<T>(b, span);
  return f;
}

template <class T>
std::vector<double> fill_vector_t(index_t n, index_t stride, const gamma_params& p,
                                  std::uint64_t first_id, bool async) {
  const index_t span = n > 0 ? (n - 1) * stride + 1 : 0;
  cc::device_buffer b = poisoned<T>(span);
  const vector_view<T, device_memory> out{b.as<T>(), n, stride};
  if (async) {
    check(cc::fill_gamma_async(out, p, first_id, nullptr), "fill_gamma_async");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  } else {
    cc::fill_gamma(out, p, first_id);
  }
  return back<T>(b, span);
}

template <class T>
std::vector<double> fill_ids_t(index_t rows, index_t cols, const std::vector<std::int64_t>& ids,
                               const gamma_params& p, bool async, index_t count, bool null_ids) {
  cc::device_buffer b = poisoned<T>(rows * cols);
  const cc::device_buffer d_ids = upload_ids(ids);
  const std::int64_t* ip = null_ids ? nullptr : d_ids.as<const std::int64_t>();
  const index_t cnt = count >= 0 ? count : static_cast<index_t>(ids.size());
  const auto out = contrastive::make_device_view(b.as<T>(), rows, cols, cols, index_t(1));
  if (async) {
    check(cc::fill_gamma_async(out, p, ip, cnt, nullptr), "fill_gamma_async");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  } else {
    cc::fill_gamma(out, p, ip, cnt);
  }
  return back<T>(b, rows * cols);
}

}  // namespace

int invalid_value_code() { return static_cast<int>(cudaErrorInvalidValue); }

std::vector<contrastive::philox_block> philox_blocks(const contrastive::philox_stream& s,
                                                     std::uint32_t count) {
  cc::device_buffer b(count * sizeof(contrastive::philox_block));
  philox_kernel<<<cc::detail::grid_for(count), 256>>>(s, count, b.as<contrastive::philox_block>());
  check(cudaGetLastError(), "philox_kernel");
  std::vector<contrastive::philox_block> h(count);
  check(cudaMemcpy(h.data(), b.data(), count * sizeof(contrastive::philox_block),
                   cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  return h;
}

std::vector<contrastive::gamma_draw> gamma_draws(const gamma_params& p,
                                                 const std::vector<std::uint64_t>& ids) {
  const index_t n = static_cast<index_t>(ids.size());
  cc::device_buffer d_ids(ids.size() * sizeof(std::uint64_t));
  check(cudaMemcpy(d_ids.data(), ids.data(), ids.size() * sizeof(std::uint64_t),
                   cudaMemcpyHostToDevice),
        "cudaMemcpy");
  cc::device_buffer out(ids.size() * sizeof(contrastive::gamma_draw));
  draws_kernel<<<cc::detail::grid_for(n), 256>>>(p, d_ids.as<const std::uint64_t>(), n,
                                                 out.as<contrastive::gamma_draw>());
  check(cudaGetLastError(), "draws_kernel");
  std::vector<contrastive::gamma_draw> h(ids.size());
  check(cudaMemcpy(h.data(), out.data(), ids.size() * sizeof(contrastive::gamma_draw),
                   cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  return h;
}

filled fill_matrix(bool single, index_t rows, index_t cols, layout l, const gamma_params& p,
                   std::uint64_t first_id, bool async) {
  return single ? fill_matrix_t<float>(rows, cols, l, p, first_id, async)
                : fill_matrix_t<double>(rows, cols, l, p, first_id, async);
}

std::vector<double> fill_vector(bool single, index_t n, index_t stride, const gamma_params& p,
                                std::uint64_t first_id, bool async) {
  return single ? fill_vector_t<float>(n, stride, p, first_id, async)
                : fill_vector_t<double>(n, stride, p, first_id, async);
}

std::vector<double> fill_ids(bool single, index_t rows, index_t cols,
                             const std::vector<std::int64_t>& ids, const gamma_params& p,
                             bool async, index_t count, bool null_ids) {
  return single ? fill_ids_t<float>(rows, cols, ids, p, async, count, null_ids)
                : fill_ids_t<double>(rows, cols, ids, p, async, count, null_ids);
}

int fill_async_status(const gamma_params& p, index_t n, bool null_out) {
  cc::device_buffer b = poisoned<double>(null_out ? 0 : n);
  const vector_view<double, device_memory> out{null_out ? nullptr : b.as<double>(), n, 1};
  const cudaError_t s = cc::fill_gamma_async(out, p, 0, nullptr);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return static_cast<int>(s);
}

int fill_ids_async_status(const gamma_params& p, index_t n, const std::vector<std::int64_t>& ids,
                          index_t count, bool null_ids) {
  cc::device_buffer b = poisoned<double>(n);
  const cc::device_buffer d_ids = upload_ids(ids);
  const vector_view<double, device_memory> out{b.as<double>(), n, 1};
  const cudaError_t s = cc::fill_gamma_async(
      out, p, null_ids ? nullptr : d_ids.as<const std::int64_t>(), count, nullptr);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return static_cast<int>(s);
}

void fill_checked(const gamma_params& p, index_t n, bool null_out) {
  cc::device_buffer b = poisoned<double>(null_out ? 0 : n);
  const vector_view<double, device_memory> out{null_out ? nullptr : b.as<double>(), n, 1};
  cc::fill_gamma(out, p, 0);
}

}  // namespace gpu_gamma
