// Runs the blocked sweep (cuda/detail/block_sweep.cuh) for tests/cuda/test_block_sweep.cpp, and the
// CUDA argument checks for the message census (see block_sweep_kernels.hpp).

#include "cuda/block_sweep_kernels.hpp"

#include "cuda/device_support.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/detail/block_sweep.cuh>
#include <contrastive/cuda/info_nce.cuh>
#include <contrastive/cuda/nt_xent.cuh>

namespace cuda_test {
namespace {

using contrastive::index_t;
namespace cc = contrastive::cuda;

cc::sweep_mode mode_of(sweep s) {
  return s == sweep::blocked ? cc::sweep_mode::blocked
         : s == sweep::fused ? cc::sweep_mode::fused
                             : cc::sweep_mode::automatic;
}

template <class T>
loss_result run(const block_case& c, const std::vector<double>& a, const std::vector<double>& b,
                cc::math_mode m) {
  loss_result r;
  try {
    device_matrix<T> da(a, c.n, c.d), db(b, c.n, c.d);
    const double init = c.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    device_matrix<T> ga(std::vector<double>(a.size(), init), c.n, c.d);
    device_matrix<T> gb(std::vector<double>(a.size(), init), c.n, c.d);
    device_vector<std::int64_t> la(c.labels_a), lb(c.labels_b);
    const auto red =
        c.sum_reduction ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
    if (!c.nt_xent) {
      contrastive::info_nce_options o;
      o.temperature = c.temperature;
      o.symmetric = c.symmetric;
      o.label_smoothing = c.label_smoothing;
      o.reduction = red;
      o.accumulate = c.accumulate;
      o.labels_a = la.view();
      o.labels_b = lb.view();
      const cc::info_nce_device_saved saved =
          cc::info_nce_forward<T>(da.in(), db.in(), o, m, nullptr, mode_of(c.mode));
      r.loss = saved.loss;
      r.row_lse = download_floats(saved.row_lse.data(), c.n);
      if (c.symmetric) r.col_lse = download_floats(saved.col_lse.data(), c.n);
      r.grad_temperature =
          cc::info_nce_backward<T>(da.in(), db.in(), saved, ga.out(), gb.out(), o, c.upstream)
              .temperature;
    } else {
      contrastive::nt_xent_options o;
      o.temperature = c.temperature;
      o.label_smoothing = c.label_smoothing;
      o.reduction = red;
      o.accumulate = c.accumulate;
      o.labels = la.view();
      const cc::nt_xent_device_saved saved =
          cc::nt_xent_forward<T>(da.in(), db.in(), o, m, nullptr, mode_of(c.mode));
      r.loss = saved.loss;
      r.row_lse = download_floats(saved.lse.data(), 2 * c.n);
      r.grad_temperature =
          cc::nt_xent_backward<T>(da.in(), db.in(), saved, ga.out(), gb.out(), o, c.upstream)
              .temperature;
    }
    r.grad_a = ga.download();
    r.grad_b = gb.download();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

/// Device pointers that are never dereferenced: the checks read only shapes and addresses.
/// Four disjoint host arrays stand for a, b, grad_a and grad_b (at most 8 x 16 floats each).
float fake_storage[4][256];
contrastive::matrix_view<float, contrastive::device_memory> fake(int which, int n, int d) {
  return contrastive::matrix_view<float, contrastive::device_memory>(
      n * d > 0 ? fake_storage[which] : nullptr, n, d, d, 1);
}

}  // namespace

loss_result run_block(dtype t, const block_case& c, const std::vector<double>& a,
                      const std::vector<double>& b) {
  switch (t) {
    case dtype::f32:
      return run<float>(c, a, b, cc::math_mode::fp32);
    case dtype::tf32:
      return run<float>(c, a, b, cc::math_mode::tf32);
    case dtype::f16:
      return run<__half>(c, a, b, cc::math_mode::fp32);
    case dtype::bf16:
      return run<__nv_bfloat16>(c, a, b, cc::math_mode::fp32);
  }
  return {};
}

std::size_t blocked_workspace_bytes(dtype t, bool nt_xent, int n, int d) {
  const auto m = t == dtype::tf32 ? cc::math_mode::tf32 : cc::math_mode::fp32;
  const auto b = cc::sweep_mode::blocked;
  auto one = [&](auto tag) -> std::size_t {
    using T = decltype(tag);
    return nt_xent ? cc::nt_xent_workspace_bytes<T>(n, d, {}, m, b)
                   : cc::info_nce_workspace_bytes<T>(n, d, {}, m, b);
  };
  switch (t) {
    case dtype::f32:
    case dtype::tf32:
      return one(float{});
    case dtype::f16:
      return one(__half{});
    case dtype::bf16:
      return one(__nv_bfloat16{});
  }
  return 0;
}

std::vector<bad_input> bad_inputs() {
  std::vector<bad_input> v;
  auto add = [&](const char* what) -> bad_input& {
    v.push_back(bad_input{what});
    return v.back();
  };
  add("b narrower").d_b = 8;
  add("b shorter").n_b = 5;
  add("empty batch").n_a = 0;
  add("no columns").d_a = 0;
  add("temperature 0").temperature = 0;
  add("temperature NaN").temperature = std::numeric_limits<double>::quiet_NaN();
  add("smoothing 1.5").label_smoothing = 1.5;
  add("smoothing -0.1").label_smoothing = -0.1;
  add("bad reduction").reduction = 7;
  add("tile rows 0").tile_rows = 0;
  {
    bad_input& b = add("labels_a only");
    b.labels_a = 8;
  }
  {
    bad_input& b = add("labels_a too short");
    b.labels_a = 7;
    b.labels_b = 8;
  }
  add("upstream NaN").upstream = std::numeric_limits<double>::quiet_NaN();
  v.back().backward = true;
  add("grad_a narrower").grad_cols = 12;
  v.back().backward = true;
  add("grad_a is a").grad_a_is_a = true;
  v.back().backward = true;
  // NT-Xent: the same classes through its own checks.
  const std::size_t k = v.size();
  for (std::size_t i = 0; i < k; ++i) {
    if (v[i].labels_a >= 0 && v[i].labels_b < 0) continue;  // a two-tower rule
    bad_input x = v[i];
    x.nt_xent = true;
    if (x.labels_b >= 0) x.labels_b = -1;  // NT-Xent has one label array
    v.push_back(x);
  }
  return v;
}

std::vector<std::string> cuda_messages(const std::vector<bad_input>& cases) {
  std::vector<std::string> out;
  static const std::int64_t labels[64] = {};
  for (const bad_input& c : cases) {
    std::string msg = "no exception";
    try {
      const contrastive::matrix_view<const float, contrastive::device_memory> a =
          fake(0, c.n_a, c.d_a);
      const contrastive::matrix_view<const float, contrastive::device_memory> b =
          fake(1, c.n_b, c.d_b);
      const auto ga = c.grad_a_is_a ? fake(0, c.n_a, c.d_a)
                                    : fake(2, c.n_a, c.grad_cols >= 0 ? c.grad_cols : c.d_a);
      const auto gb = fake(3, c.n_a, c.d_a);
      const auto red = c.reduction == 0   ? contrastive::loss_reduction::mean
                       : c.reduction == 1 ? contrastive::loss_reduction::sum
                                          : static_cast<contrastive::loss_reduction>(c.reduction);
      const contrastive::vector_view<const std::int64_t> la =
          c.labels_a >= 0 ? contrastive::vector_view<const std::int64_t>(labels, c.labels_a)
                          : contrastive::vector_view<const std::int64_t>();
      const contrastive::vector_view<const std::int64_t> lb =
          c.labels_b >= 0 ? contrastive::vector_view<const std::int64_t>(labels, c.labels_b)
                          : contrastive::vector_view<const std::int64_t>();
      if (!c.nt_xent) {
        contrastive::info_nce_options o;
        o.temperature = c.temperature;
        o.label_smoothing = c.label_smoothing;
        o.reduction = red;
        o.tile_rows = c.tile_rows;
        o.labels_a = la;
        o.labels_b = lb;
        if (!c.backward) {
          cc::info_nce_forward<float>(a, b, o, cc::math_mode::fp32, nullptr,
                                      cc::sweep_mode::blocked);
        } else {
          cc::info_nce_device_saved saved;
          saved.n = c.n_a;
          saved.d = c.d_a;
          saved.temperature = o.temperature;
          saved.label_smoothing = o.label_smoothing;
          saved.reduction = o.reduction;
          saved.mode = cc::sweep_mode::blocked;
          cc::info_nce_backward<float>(a, b, saved, ga, gb, o, c.upstream);
        }
      } else {
        contrastive::nt_xent_options o;
        o.temperature = c.temperature;
        o.label_smoothing = c.label_smoothing;
        o.reduction = red;
        o.tile_rows = c.tile_rows;
        o.labels = la;
        if (!c.backward) {
          cc::nt_xent_forward<float>(a, b, o, cc::math_mode::fp32, nullptr,
                                     cc::sweep_mode::blocked);
        } else {
          cc::nt_xent_device_saved saved;
          saved.n = c.n_a;
          saved.d = c.d_a;
          saved.temperature = o.temperature;
          saved.label_smoothing = o.label_smoothing;
          saved.reduction = o.reduction;
          saved.mode = cc::sweep_mode::blocked;
          cc::nt_xent_backward<float>(a, b, saved, ga, gb, o, c.upstream);
        }
      }
    } catch (const contrastive::invalid_argument& e) {
      msg = e.what();
    } catch (const std::exception& e) {
      msg = std::string("wrong exception type: ") + e.what();
    }
    out.push_back(msg);
  }
  return out;
}

}  // namespace cuda_test
