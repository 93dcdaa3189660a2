// Runs the CUDA InfoNCE family for tests/cuda/test_info_nce.cpp (see info_nce_kernels.hpp).

#include "cuda/info_nce_kernels.hpp"

#include "cuda/device_support.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/info_nce.cuh>
#include <contrastive/cuda/nt_xent.cuh>
#include <contrastive/losses/info_nce.hpp>

namespace cuda_test {
namespace {

using contrastive::index_t;
namespace cc = contrastive::cuda;

template <class T>
loss_result clip(const loss_case& c, const std::vector<double>& a, const std::vector<double>& b,
                 cc::math_mode m) {
  loss_result r;
  try {
    device_matrix<T> da(a, c.n, c.d), db(b, c.n, c.d);
    const double init = c.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    device_matrix<T> ga(std::vector<double>(a.size(), init), c.n, c.d);
    device_matrix<T> gb(std::vector<double>(a.size(), init), c.n, c.d);
    contrastive::info_nce_options o;
    o.temperature = c.temperature;
    o.symmetric = c.symmetric;
    o.label_smoothing = c.label_smoothing;
    o.reduction =
        c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
    o.accumulate = c.accumulate;
    const cc::info_nce_device_saved saved = cc::info_nce_forward<T>(da.in(), db.in(), o, m);
    r.loss = saved.loss;
    r.row_lse = download_floats(saved.row_lse.data(), c.n);
    if (c.symmetric) r.col_lse = download_floats(saved.col_lse.data(), c.n);
    const contrastive::temperature_gradient tg =
        cc::info_nce_backward<T>(da.in(), db.in(), saved, ga.out(), gb.out(), o, c.upstream);
    r.grad_temperature = tg.temperature;
    r.grad_a = ga.download();
    r.grad_b = gb.download();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

template <class T>
loss_result simclr(const loss_case& c, const std::vector<double>& a, const std::vector<double>& b,
                   cc::math_mode m) {
  loss_result r;
  try {
    device_matrix<T> da(a, c.n, c.d), db(b, c.n, c.d);
    const double init = c.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    device_matrix<T> ga(std::vector<double>(a.size(), init), c.n, c.d);
    device_matrix<T> gb(std::vector<double>(a.size(), init), c.n, c.d);
    contrastive::nt_xent_options o;
    o.temperature = c.temperature;
    o.label_smoothing = c.label_smoothing;
    o.reduction =
        c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
    o.accumulate = c.accumulate;
    const cc::nt_xent_device_saved saved = cc::nt_xent_forward<T>(da.in(), db.in(), o, m);
    r.loss = saved.loss;
    r.row_lse = download_floats(saved.lse.data(), 2 * c.n);
    const contrastive::temperature_gradient tg =
        cc::nt_xent_backward<T>(da.in(), db.in(), saved, ga.out(), gb.out(), o, c.upstream);
    r.grad_temperature = tg.temperature;
    r.grad_a = ga.download();
    r.grad_b = gb.download();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

const char* name(dtype t) {
  switch (t) {
    case dtype::f32:
      return "fp32";
    case dtype::tf32:
      return "tf32";
    case dtype::f16:
      return "fp16";
    case dtype::bf16:
      return "bf16";
  }
  return "?";
}

std::vector<double> round_to(dtype t, const std::vector<double>& x) {
  std::vector<double> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    switch (t) {
      case dtype::f32:
      case dtype::tf32:
        r[i] = static_cast<float>(x[i]);
        break;
      case dtype::f16:
        r[i] = to_d(to_t<__half>(x[i]));
        break;
      case dtype::bf16:
        r[i] = to_d(to_t<__nv_bfloat16>(x[i]));
        break;
    }
  }
  return r;
}

loss_result run_info_nce(dtype t, const loss_case& c, const std::vector<double>& a,
                         const std::vector<double>& b) {
  switch (t) {
    case dtype::f32:
      return clip<float>(c, a, b, cc::math_mode::fp32);
    case dtype::tf32:
      return clip<float>(c, a, b, cc::math_mode::tf32);
    case dtype::f16:
      return clip<__half>(c, a, b, cc::math_mode::fp32);
    case dtype::bf16:
      return clip<__nv_bfloat16>(c, a, b, cc::math_mode::fp32);
  }
  return {};
}

loss_result run_nt_xent(dtype t, const loss_case& c, const std::vector<double>& a,
                        const std::vector<double>& b) {
  switch (t) {
    case dtype::f32:
      return simclr<float>(c, a, b, cc::math_mode::fp32);
    case dtype::tf32:
      return simclr<float>(c, a, b, cc::math_mode::tf32);
    case dtype::f16:
      return simclr<__half>(c, a, b, cc::math_mode::fp32);
    case dtype::bf16:
      return simclr<__nv_bfloat16>(c, a, b, cc::math_mode::fp32);
  }
  return {};
}

loss_result run_info_nce_generic(const loss_case& c, const std::vector<double>& a,
                                 const std::vector<double>& b) {
  loss_result r;
  try {
    device_matrix<float> da(a, c.n, c.d), db(b, c.n, c.d);
    device_matrix<float> ga(std::vector<double>(a.size(), std::nan("")), c.n, c.d);
    device_matrix<float> gb(std::vector<double>(a.size(), std::nan("")), c.n, c.d);
    contrastive::info_nce_options o;
    o.temperature = c.temperature;
    o.symmetric = c.symmetric;
    // The generic entry points, as a user writes them: dispatch on the memory-space tag.
    const auto saved = contrastive::info_nce_forward(da.in(), db.in(), o);
    r.loss = saved.loss;
    r.row_lse = download_floats(saved.row_lse.data(), c.n);
    if (c.symmetric) r.col_lse = download_floats(saved.col_lse.data(), c.n);
    auto ga_view = ga.out();
    auto gb_view = gb.out();
    const contrastive::temperature_gradient tg =
        contrastive::info_nce_backward(da.in(), db.in(), saved, ga_view, gb_view, o);
    r.grad_temperature = tg.temperature;
    r.grad_a = ga.download();
    r.grad_b = gb.download();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

int invalid_value_status() { return static_cast<int>(cudaErrorInvalidValue); }

std::vector<int> async_bad_argument_statuses() {
  std::vector<int> out;
  const index_t n = 8, d = 16;
  cc::device_buffer a(sizeof(float) * n * d), b(sizeof(float) * n * d), lse(sizeof(float) * 2 * n);
  cc::device_buffer loss(sizeof(double));
  const auto va = contrastive::make_device_view(a.as<const float>(), n, d);
  const auto vb = contrastive::make_device_view(b.as<const float>(), n, d);
  const auto vshort = contrastive::make_device_view(b.as<const float>(), n - 1, d);
  contrastive::info_nce_options o;
  const std::size_t bytes = cc::info_nce_workspace_bytes<float>(n, d, o);
  cc::device_buffer ws(bytes);
  const contrastive::workspace w{ws.data(), ws.bytes()};
  const cc::device_stats row{lse.as<float>(), n, 1}, col{lse.as<float>() + n, n, 1};
  // Shape mismatch, bad temperature, missing statistics, short workspace, null loss, labels.
  out.push_back(
      cc::info_nce_forward_async<float>(va, vshort, row, col, loss.as<double>(), o, w, nullptr));
  contrastive::info_nce_options bad = o;
  bad.temperature = -1;
  out.push_back(
      cc::info_nce_forward_async<float>(va, vb, row, col, loss.as<double>(), bad, w, nullptr));
  out.push_back(
      cc::info_nce_forward_async<float>(va, vb, {}, col, loss.as<double>(), o, w, nullptr));
  out.push_back(cc::info_nce_forward_async<float>(va, vb, row, col, loss.as<double>(), o,
                                                  {ws.data(), bytes / 2}, nullptr));
  out.push_back(cc::info_nce_forward_async<float>(va, vb, row, col, nullptr, o, w, nullptr));
  std::vector<std::int64_t> labels(n, 0);
  bad = o;
  bad.labels_a = labels;
  bad.labels_b = labels;
  out.push_back(
      cc::info_nce_forward_async<float>(va, vb, row, col, loss.as<double>(), bad, w, nullptr));
  out.push_back(cc::info_nce_forward_async<__half>(
      contrastive::make_device_view(a.as<const __half>(), n, d),
      contrastive::make_device_view(b.as<const __half>(), n, d), row, col, loss.as<double>(), o, w,
      nullptr, cc::math_mode::tf32));
  contrastive::nt_xent_options no;
  out.push_back(cc::nt_xent_forward_async<float>(va, vb, row, loss.as<double>(), no, w, nullptr));
  check(cudaDeviceSynchronize(), "sync");
  return out;
}

std::vector<std::string> wrapper_bad_argument_messages() {
  std::vector<std::string> out;
  const index_t n = 8, d = 16;
  cc::device_buffer a(sizeof(float) * n * d), b(sizeof(float) * n * d);
  const auto va = contrastive::make_device_view(a.as<const float>(), n, d);
  const auto vnarrow = contrastive::make_device_view(b.as<const float>(), n, d / 2);
  auto attempt = [&](auto&& f) {
    try {
      f();
      out.push_back("");
    } catch (const contrastive::invalid_argument& e) {
      out.push_back(e.what());
    } catch (const std::exception& e) {
      out.push_back(std::string("wrong exception type: ") + e.what());
    }
  };
  attempt([&] { cc::info_nce_forward<float>(va, vnarrow); });
  contrastive::info_nce_options o;
  o.label_smoothing = 1.5;
  attempt([&] { cc::info_nce_forward<float>(va, va, o); });
  contrastive::nt_xent_options no;
  no.temperature = 0;
  attempt([&] { cc::nt_xent_forward<float>(va, va, no); });
  return out;
}

}  // namespace cuda_test
