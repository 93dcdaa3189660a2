#ifndef CONTRASTIVE_CUDA_ERROR_CUH
#define CONTRASTIVE_CUDA_ERROR_CUH

// CUDA errors and device memory for the throwing wrappers. nvcc only; never in the umbrella.
// The *_async entry points return cudaError_t and never throw; the wrappers built on them throw
// contrastive::invalid_argument for bad arguments (as the CPU path does) and cuda::cuda_error for
// a failure reported by the CUDA runtime.

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

/// A CUDA runtime failure, with the status code and the call that reported it.
class cuda_error : public std::runtime_error {
 public:
  cuda_error(cudaError_t status, const char* what_call)
      : std::runtime_error(std::string(what_call) + ": " + cudaGetErrorName(status) + " (" +
                           cudaGetErrorString(status) + ")"),
        status_(status) {}
  cudaError_t status() const noexcept { return status_; }

 private:
  cudaError_t status_;
};

/// Turns a status into an exception (or the violation handler without exceptions).
inline void throw_on_error(cudaError_t status, const char* what_call) {
  if (status == cudaSuccess) return;
#if CONTRASTIVE_USE_EXCEPTIONS
  throw cuda_error(status, what_call);
#else
  const std::string msg = std::string(what_call) + ": " + cudaGetErrorString(status);
  CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg.c_str(), __FILE__, __LINE__);
  std::abort();
#endif
}

/// Owning device allocation (cudaMalloc; never managed memory), movable, freed on destruction.
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t bytes) {
    if (bytes > 0) throw_on_error(cudaMalloc(&data_, bytes), "cudaMalloc");
    bytes_ = bytes;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~device_buffer() { reset(); }

  void* data() const noexcept { return data_; }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  void reset() noexcept {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_ERROR_CUH
