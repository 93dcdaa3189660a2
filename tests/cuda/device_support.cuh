#ifndef CONTRASTIVE_TESTS_CUDA_DEVICE_SUPPORT_CUH
#define CONTRASTIVE_TESTS_CUDA_DEVICE_SUPPORT_CUH

// What the *_kernels.cu files share (nvcc only): element conversions, device copies of host
// matrices and id vectors, and downloads, so that each file keeps only its loss's calls.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/error.cuh>

namespace cuda_test {

inline void check(cudaError_t e, const char* what) { contrastive::cuda::throw_on_error(e, what); }

template <class T>
T to_t(double x) {
  return static_cast<T>(x);
}
template <>
inline __half to_t<__half>(double x) {
  return __float2half_rn(static_cast<float>(x));
}
template <>
inline __nv_bfloat16 to_t<__nv_bfloat16>(double x) {
  return __float2bfloat16_rn(static_cast<float>(x));
}
inline double to_d(float x) { return x; }
inline double to_d(double x) { return x; }
inline double to_d(__half x) { return __half2float(x); }
inline double to_d(__nv_bfloat16 x) { return __bfloat162float(x); }

/// A rows x cols row-major device copy of a host matrix (converted to T).
template <class T>
struct device_matrix {
  contrastive::cuda::device_buffer buf;
  contrastive::index_t n = 0, d = 0;
  device_matrix(const std::vector<double>& host, contrastive::index_t rows,
                contrastive::index_t cols)
      : buf(sizeof(T) * static_cast<std::size_t>(rows * cols)), n(rows), d(cols) {
    std::vector<T> h(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) h[i] = to_t<T>(host[i]);
    check(cudaMemcpy(buf.data(), h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice), "upload");
  }
  contrastive::matrix_view<const T, contrastive::device_memory> in() const {
    return contrastive::make_device_view(buf.as<const T>(), n, d);
  }
  contrastive::matrix_view<T, contrastive::device_memory> out() const {
    return contrastive::make_device_view(buf.as<T>(), n, d);
  }
  std::vector<double> download() const {
    std::vector<T> h(static_cast<std::size_t>(n * d));
    check(cudaMemcpy(h.data(), buf.data(), sizeof(T) * h.size(), cudaMemcpyDeviceToHost),
          "download");
    return convert(h);
  }
  static std::vector<double> convert(const std::vector<T>& h) {
    std::vector<double> r(h.size());
    for (std::size_t i = 0; i < h.size(); ++i) r[i] = to_d(h[i]);
    return r;
  }
};

/// n device values of type S, as doubles.
template <class S>
std::vector<double> download_values(const void* p, contrastive::index_t n) {
  std::vector<S> h(static_cast<std::size_t>(n));
  if (n > 0)
    check(cudaMemcpy(h.data(), p, sizeof(S) * h.size(), cudaMemcpyDeviceToHost), "download");
  return std::vector<double>(h.begin(), h.end());
}
inline std::vector<double> download_floats(const void* p, contrastive::index_t n) {
  return download_values<float>(p, n);
}

/// A device copy of a host vector (labels, ids, exact rates); an empty one gives an empty span.
template <class S>
struct device_vector {
  contrastive::cuda::device_buffer buf;
  contrastive::index_t n = 0;
  explicit device_vector(const std::vector<S>& h)
      : buf(sizeof(S) * h.size()), n(static_cast<contrastive::index_t>(h.size())) {
    if (!h.empty())
      check(cudaMemcpy(buf.data(), h.data(), sizeof(S) * h.size(), cudaMemcpyHostToDevice),
            "upload");
  }
  contrastive::vector_view<const S> view() const {
    return n > 0 ? contrastive::vector_view<const S>(buf.as<const S>(), n)
                 : contrastive::vector_view<const S>();
  }
  contrastive::vector_view<const S, contrastive::device_memory> device_view() const {
    return {buf.as<const S>(), n};
  }
};

}  // namespace cuda_test

#endif
