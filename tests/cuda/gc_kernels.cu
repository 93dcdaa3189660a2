// nvcc side of test_geometric_consistency.cpp.

#include "cuda/gc_kernels.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/error.cuh>
#include <contrastive/cuda/geometric_consistency.cuh>
#include <contrastive/losses/geometric_consistency.hpp>

namespace gpu_gc {

namespace cc = contrastive::cuda;
using contrastive::device_memory;
using contrastive::geometric_consistency_options;
using contrastive::matrix_view;

namespace {

void check(cudaError_t s, const char* what) { cc::throw_on_error(s, what); }

template <class T>
cc::device_buffer upload(const std::vector<double>& x, index_t rows, index_t d, bool col_major) {
  std::vector<T> h(static_cast<std::size_t>(rows * d));
  for (index_t i = 0; i < rows; ++i)
    for (index_t k = 0; k < d; ++k)
      h[static_cast<std::size_t>(col_major ? k * rows + i : i * d + k)] =
          static_cast<T>(x[static_cast<std::size_t>(i * d + k)]);
  cc::device_buffer b(h.size() * sizeof(T));
  if (!h.empty())
    check(cudaMemcpy(b.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice),
          "cudaMemcpy");
  return b;
}

template <class T>
std::vector<double> download(const void* p, std::size_t count) {
  std::vector<T> h(count);
  if (count > 0)
    check(cudaMemcpy(h.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return std::vector<double>(h.begin(), h.end());
}

class handle_owner {
 public:
  explicit handle_owner(bool create) {
    if (create && cublasCreate(&h_) != CUBLAS_STATUS_SUCCESS) {
      h_ = nullptr;
      check(cudaErrorUnknown, "cublasCreate");
    }
  }
  ~handle_owner() {
    if (h_ != nullptr) cublasDestroy(h_);
  }
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

template <class T>
result run_t(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
             const geometric_consistency_options& o, const run_options& r) {
  const geometric_consistency_options& ob = r.backward_options ? *r.backward_options : o;
  const cc::device_buffer dv = upload<T>(v, n, d, r.col_major_in);
  const cc::device_buffer du = upload<T>(u, n, d, r.col_major_in);
  const auto vv = r.col_major_in
                      ? contrastive::make_device_view(dv.as<const T>(), n, d, index_t(1), n)
                      : contrastive::make_device_view(dv.as<const T>(), n, d, d, index_t(1));
  const auto vu = r.col_major_in
                      ? contrastive::make_device_view(du.as<const T>(), n, d, index_t(1), n)
                      : contrastive::make_device_view(du.as<const T>(), n, d, d, index_t(1));
  const index_t gr = r.grad_rows >= 0 ? r.grad_rows : n;
  const std::size_t gcount = static_cast<std::size_t>(gr * d);
  cc::device_buffer dgv(gcount * sizeof(T)), dgu(gcount * sizeof(T));
  if (ob.accumulate) {
    const cc::device_buffer iv = upload<T>(r.init_v, gr, d, false),
                            iu = upload<T>(r.init_u, gr, d, false);
    check(cudaMemcpy(dgv.data(), iv.data(), gcount * sizeof(T), cudaMemcpyDeviceToDevice),
          "cudaMemcpy");
    check(cudaMemcpy(dgu.data(), iu.data(), gcount * sizeof(T), cudaMemcpyDeviceToDevice),
          "cudaMemcpy");
  } else if (gcount > 0) {
    check(cudaMemset(dgv.data(), 0xFF, gcount * sizeof(T)), "cudaMemset");  // NaN
    check(cudaMemset(dgu.data(), 0xFF, gcount * sizeof(T)), "cudaMemset");
  }
  const auto gv = contrastive::make_device_view(dgv.as<T>(), gr, d, d, index_t(1));
  const auto gu = contrastive::make_device_view(dgu.as<T>(), gr, d, d, index_t(1));
  const handle_owner h(r.own_handle);
  result res;
  res.split = cc::detail::gc_cuda_form(o) == contrastive::gc_algorithm::gram_split;
  if (r.async) {
    const std::size_t need = r.chunk > 0 ? cc::detail::gc_cuda_bytes<T>(d, r.chunk)
                                         : cc::geometric_consistency_workspace_bytes<T>(n, d, o);
    const long long give = static_cast<long long>(need) + r.ws_delta;
    cc::device_buffer ws(give > 0 ? static_cast<std::size_t>(give) : 0);
    cc::device_buffer loss(sizeof(T));
    const std::size_t ge = cc::geometric_consistency_gram_elements(d, o);
    cc::device_buffer grams(ge * sizeof(T));
    cudaError_t s =
        r.chunk > 0
            ? cc::detail::gc_forward_run<T>(vv, vu, loss.as<T>(), grams.as<T>(), o, ws.data(),
                                            ws.bytes(), h.get(), nullptr, r.chunk)
            : cc::geometric_consistency_forward_async<T>(vv, vu, loss.as<T>(), grams.as<T>(), o,
                                                         {ws.data(), ws.bytes()}, h.get(), nullptr);
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    res.status_forward = static_cast<int>(s);
    if (s != cudaSuccess) return res;
    res.loss = download<T>(loss.data(), 1)[0];
    res.grams = download<T>(grams.data(), ge);
    s = r.chunk > 0
            ? cc::detail::gc_backward_run<T>(vv, vu, grams.as<const T>(), gv, gu, ob, r.upstream,
                                             ws.data(), ws.bytes(), h.get(), nullptr, r.chunk)
            : cc::geometric_consistency_backward_async<T>(vv, vu, grams.as<const T>(), gv, gu, ob,
                                                          r.upstream, {ws.data(), ws.bytes()},
                                                          h.get(), nullptr);
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    res.status_backward = static_cast<int>(s);
    if (s != cudaSuccess) return res;
  } else if (r.generic) {
    const cc::geometric_consistency_device_saved<T> saved =
        contrastive::geometric_consistency_forward(vv, vu, o);
    res.loss = saved.loss;
    res.grams = download<T>(saved.grams.data(), saved.grams.bytes() / sizeof(T));
    contrastive::geometric_consistency_backward(vv, vu, saved, gv, gu, ob, r.upstream);
  } else {
    const cc::geometric_consistency_device_saved<T> saved =
        cc::geometric_consistency_forward(vv, vu, o, h.get());
    res.loss = saved.loss;
    res.grams = download<T>(saved.grams.data(), saved.grams.bytes() / sizeof(T));
    cc::geometric_consistency_backward<T>(vv, vu, saved, gv, gu, ob, r.upstream, h.get());
  }
  res.gv = download<T>(dgv.data(), gcount);
  res.gu = download<T>(dgu.data(), gcount);
  return res;
}

}  // namespace

int invalid_value_code() { return static_cast<int>(cudaErrorInvalidValue); }

result run(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
           const geometric_consistency_options& o, const run_options& r) {
  return r.single ? run_t<float>(v, u, n, d, o, r) : run_t<double>(v, u, n, d, o, r);
}

}  // namespace gpu_gc
