// nvcc side of test_brownian_bridge.cpp.

#include "cuda/bridge_kernels.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/brownian_bridge.cuh>
#include <contrastive/cuda/error.cuh>

namespace gpu_bridge {

namespace cc = contrastive::cuda;
using contrastive::brownian_bridge_options;

namespace {

void check(cudaError_t s, const char* what) { cc::throw_on_error(s, what); }

template <class T>
cc::device_buffer upload(const std::vector<double>& x, index_t n, index_t d, bool col_major) {
  std::vector<T> h(x.size());
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < d; ++k)
      h[static_cast<std::size_t>(col_major ? k * n + i : i * d + k)] =
          static_cast<T>(x[static_cast<std::size_t>(i * d + k)]);
  cc::device_buffer b(h.size() * sizeof(T));
  if (!h.empty())
    check(cudaMemcpy(b.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice),
          "cudaMemcpy");
  return b;
}

template <class T>
contrastive::matrix_view<const T, contrastive::device_memory> in_view(const cc::device_buffer& b,
                                                                      index_t n, index_t d,
                                                                      bool col_major) {
  return col_major ? contrastive::make_device_view(b.as<const T>(), n, d, index_t(1), n)
                   : contrastive::make_device_view(b.as<const T>(), n, d, d, index_t(1));
}

template <class T>
result run(bool path, const std::vector<double>& v, const std::vector<double>& u, index_t n,
           index_t d, brownian_bridge_options o, const std::vector<std::int64_t>& ids,
           const run_options& r) {
  const cc::device_buffer dv = upload<T>(v, n, d, r.col_major_in);
  const cc::device_buffer du = upload<T>(u, n, d, r.col_major_in);
  cc::device_buffer dids(ids.size() * sizeof(std::int64_t));
  if (!ids.empty()) {
    check(cudaMemcpy(dids.data(), ids.data(), ids.size() * sizeof(std::int64_t),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy");
    o.ids = contrastive::vector_view<const std::int64_t>(dids.as<const std::int64_t>(),
                                                         static_cast<index_t>(ids.size()));
  }
  const index_t rows = r.out_rows >= 0 ? r.out_rows : (path ? n * (o.steps + 1) : n);
  const index_t stride = r.padded_out ? d + 3 : d;
  const std::size_t span = static_cast<std::size_t>(rows * stride);
  cc::device_buffer dy(span * sizeof(T));
  if (span > 0) check(cudaMemset(dy.data(), 0xFF, span * sizeof(T)), "cudaMemset");  // NaN
  const auto y = contrastive::make_device_view(dy.as<T>(), rows, d, stride, index_t(1));
  const auto vv = in_view<T>(dv, n, d, r.col_major_in);
  const auto vu = in_view<T>(du, n, d, r.col_major_in);
  result res;
  if (r.async) {
    cudaError_t s;
    if (path) {
      const std::size_t need = cc::brownian_bridge_trajectory_workspace_bytes(n, d, o);
      const std::int64_t give = static_cast<std::int64_t>(need) + r.ws_delta;
      cc::device_buffer ws(give > 0 ? static_cast<std::size_t>(give) : 0);
      s = cc::brownian_bridge_trajectory_async<T>(vv, vu, y, o, ws.data(), ws.bytes(), nullptr);
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // before ws is freed
    } else {
      s = cc::brownian_bridge_sample_async<T>(vv, vu, y, o, nullptr);
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    }
    res.status = static_cast<int>(s);
    if (s != cudaSuccess) return res;
  } else if (path) {
    cc::brownian_bridge_trajectory<T>(vv, vu, y, o);
  } else {
    cc::brownian_bridge_sample<T>(vv, vu, y, o);
  }
  std::vector<T> h(span);
  if (span > 0)
    check(cudaMemcpy(h.data(), dy.data(), span * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  res.out.resize(static_cast<std::size_t>(rows * d));
  for (index_t i = 0; i < rows; ++i) {
    for (index_t k = 0; k < stride; ++k) {
      const double x = static_cast<double>(h[static_cast<std::size_t>(i * stride + k)]);
      if (k < d) {
        res.out[static_cast<std::size_t>(i * d + k)] = x;
      } else {
        res.padding_written += !std::isnan(x);
      }
    }
  }
  return res;
}

}  // namespace

int invalid_value_code() { return static_cast<int>(cudaErrorInvalidValue); }

result sample(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
              brownian_bridge_options o, const std::vector<std::int64_t>& ids,
              const run_options& r) {
  return r.single ? run<float>(false, v, u, n, d, o, ids, r)
                  : run<double>(false, v, u, n, d, o, ids, r);
}

result trajectory(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
                  brownian_bridge_options o, const std::vector<std::int64_t>& ids,
                  const run_options& r) {
  return r.single ? run<float>(true, v, u, n, d, o, ids, r)
                  : run<double>(true, v, u, n, d, o, ids, r);
}

}  // namespace gpu_bridge
