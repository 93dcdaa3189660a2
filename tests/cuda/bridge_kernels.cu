// nvcc side of test_brownian_bridge.cpp.

#include "cuda/bridge_kernels.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/cuda/brownian_bridge.cuh>
#include <contrastive/cuda/error.cuh>
#include <contrastive/losses/brownian_bridge.hpp>
#include <contrastive/sampling/brownian_bridge.hpp>

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
      s = cc::brownian_bridge_trajectory_async<T>(vv, vu, y, o, {ws.data(), ws.bytes()}, nullptr);
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

namespace {

template <class T>
loss_result bridge_loss_t(const std::vector<double>& v, const std::vector<double>& u,
                          const std::vector<double>& a, index_t n, index_t d,
                          contrastive::brownian_bridge_loss_options o,
                          const std::vector<std::int64_t>& ids, bool generic, double upstream) {
  loss_result r;
  try {
    const cc::device_buffer dv = upload<T>(v, n, d, false), du = upload<T>(u, n, d, false),
                            da = upload<T>(a, n, d, false);
    const double init = o.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> start(static_cast<std::size_t>(n * d), init);
    cc::device_buffer g[3] = {upload<T>(start, n, d, false), upload<T>(start, n, d, false),
                              upload<T>(start, n, d, false)};
    cc::device_buffer did(ids.size() * sizeof(std::int64_t));
    if (!ids.empty()) {
      check(cudaMemcpy(did.data(), ids.data(), ids.size() * sizeof(std::int64_t),
                       cudaMemcpyHostToDevice),
            "cudaMemcpy");
      o.bridge.ids = {did.as<const std::int64_t>(), static_cast<index_t>(ids.size())};
    }
    const auto vv = contrastive::make_device_view(dv.as<const T>(), n, d);
    const auto vu = contrastive::make_device_view(du.as<const T>(), n, d);
    const auto va = contrastive::make_device_view(da.as<const T>(), n, d);
    const auto gv = contrastive::make_device_view(g[0].as<T>(), n, d);
    const auto gu = contrastive::make_device_view(g[1].as<T>(), n, d);
    const auto ga = contrastive::make_device_view(g[2].as<T>(), n, d);
    const cc::brownian_bridge_loss_device_saved s =
        generic ? contrastive::brownian_bridge_loss_forward(vv, vu, va, o)
                : cc::brownian_bridge_loss_forward<T>(vv, vu, va, o);
    r.loss = s.loss;
    r.t.resize(static_cast<std::size_t>(n));
    check(cudaMemcpy(r.t.data(), s.t.data(), s.t.bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy");
    const contrastive::brownian_bridge_loss_parameter_gradients pg =
        generic ? contrastive::brownian_bridge_loss_backward(vv, vu, va, s, gv, gu, ga, o, upstream)
                : cc::brownian_bridge_loss_backward<T>(vv, vu, va, s, gv, gu, ga, o, upstream);
    r.dt = pg.t;
    r.dt_rows = pg.t_rows;
    std::vector<double>* outs[3] = {&r.ga, &r.gb, &r.gaa};
    for (int k = 0; k < 3; ++k) {
      std::vector<T> h(static_cast<std::size_t>(n * d));
      check(cudaMemcpy(h.data(), g[k].data(), h.size() * sizeof(T), cudaMemcpyDeviceToHost),
            "cudaMemcpy");
      outs[k]->assign(h.begin(), h.end());
    }
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

loss_result bridge_loss(const std::vector<double>& v, const std::vector<double>& u,
                        const std::vector<double>& a, index_t n, index_t d,
                        contrastive::brownian_bridge_loss_options o,
                        const std::vector<std::int64_t>& ids, bool single, bool generic,
                        double upstream) {
  return single ? bridge_loss_t<float>(v, u, a, n, d, o, ids, generic, upstream)
                : bridge_loss_t<double>(v, u, a, n, d, o, ids, generic, upstream);
}

loss_result bridge_loss_rows_on_host(const std::vector<double>& v, const std::vector<double>& u,
                                     const std::vector<double>& a, index_t n, index_t d,
                                     const contrastive::brownian_bridge_loss_options& o,
                                     double upstream) {
  using view = contrastive::matrix_view<const double, contrastive::device_memory>;
  using out_view = contrastive::matrix_view<double, contrastive::device_memory>;
  const view vv = contrastive::make_device_view(v.data(), n, d);
  const view vu = contrastive::make_device_view(u.data(), n, d);
  const view va = contrastive::make_device_view(a.data(), n, d);
  loss_result r;
  const auto un = static_cast<std::size_t>(n);
  std::vector<double> terms(un);
  r.t.resize(un);
  r.dt_rows.resize(un);
  const double init = o.accumulate ? 0.5 : 0.0;
  r.ga.assign(un * static_cast<std::size_t>(d), init);
  r.gb = r.ga;
  r.gaa = r.ga;
  const contrastive::brownian_bridge_options b = contrastive::detail::bridge_loss_time_options(o);
  for (index_t j = 0; j < n; ++j)
    cc::detail::bridge_loss_forward_row<double>(vv, vu, va, b, o.nll_weight, j, r.t.data(),
                                                terms.data());
  for (const double x : terms) r.loss += x;  // the kernel's tree differs only in rounding
  r.loss /= static_cast<double>(n);
  const out_view gv = contrastive::make_device_view(r.ga.data(), n, d);
  const out_view gu = contrastive::make_device_view(r.gb.data(), n, d);
  const out_view ga = contrastive::make_device_view(r.gaa.data(), n, d);
  for (index_t j = 0; j < n; ++j)
    cc::detail::bridge_loss_backward_row<double>(
        vv, vu, va, r.t.data(), gv, gu, ga, o.nll_weight, o.detach_a_aug, o.accumulate,
        upstream / static_cast<double>(n), j, r.dt_rows.data());
  for (const double x : r.dt_rows) r.dt += x;
  return r;
}

namespace {

template <class T>
sampler_gradient sampler_backward_t(const std::vector<double>& v, const std::vector<double>& u,
                                    const std::vector<double>& g, index_t n, index_t d,
                                    const contrastive::brownian_bridge_options& o, bool trajectory,
                                    bool generic) {
  sampler_gradient r;
  try {
    const index_t g_rows = trajectory ? n * (o.steps + 1) : n;
    const cc::device_buffer dv = upload<T>(v, n, d, false), du = upload<T>(u, n, d, false),
                            dg = upload<T>(g, g_rows, d, false);
    const double init = o.accumulate ? 0.5 : std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> start(static_cast<std::size_t>(n * d), init);
    const cc::device_buffer ga = upload<T>(start, n, d, false), gb = upload<T>(start, n, d, false);
    const auto vv = contrastive::make_device_view(dv.as<const T>(), n, d);
    const auto vu = contrastive::make_device_view(du.as<const T>(), n, d);
    const auto vg = contrastive::make_device_view(dg.as<const T>(), g_rows, d);
    const auto oa = contrastive::make_device_view(ga.as<T>(), n, d);
    const auto ob = contrastive::make_device_view(gb.as<T>(), n, d);
    contrastive::brownian_bridge_gradient out;
    if (generic) {  // the sample (discarded) gives the `saved` the generic backward checks
      cc::device_buffer ys(static_cast<std::size_t>(g_rows * d) * sizeof(T));
      const auto y = contrastive::make_device_view(ys.as<T>(), g_rows, d);
      if (trajectory) {
        const auto saved = contrastive::brownian_bridge_trajectory(vv, vu, y, o);
        out = contrastive::brownian_bridge_trajectory_backward(vv, vu, saved, vg, oa, ob, o);
      } else {
        const auto saved = contrastive::brownian_bridge_sample(vv, vu, y, o);
        out = contrastive::brownian_bridge_sample_backward(vv, vu, saved, vg, oa, ob, o);
      }
    } else {
      out = trajectory ? cc::brownian_bridge_trajectory_backward<T>(vv, vu, vg, oa, ob, o)
                       : cc::brownian_bridge_sample_backward<T>(vv, vu, vg, oa, ob, o);
    }
    r.dt = out.t;
    r.dt_rows = out.t_rows;
    r.dsigma = out.sigma;
    for (auto* x : {&r.ga, &r.gb}) {
      std::vector<T> h(static_cast<std::size_t>(n * d));
      check(cudaMemcpy(h.data(), (x == &r.ga ? ga : gb).data(), h.size() * sizeof(T),
                       cudaMemcpyDeviceToHost),
            "cudaMemcpy");
      x->assign(h.begin(), h.end());
    }
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

sampler_gradient sampler_backward(const std::vector<double>& v, const std::vector<double>& u,
                                  const std::vector<double>& g, index_t n, index_t d,
                                  const contrastive::brownian_bridge_options& o, bool trajectory,
                                  bool single, bool generic) {
  return single ? sampler_backward_t<float>(v, u, g, n, d, o, trajectory, generic)
                : sampler_backward_t<double>(v, u, g, n, d, o, trajectory, generic);
}

sampler_gradient sampler_backward_rows_on_host(const std::vector<double>& v,
                                               const std::vector<double>& u,
                                               const std::vector<double>& g, index_t n, index_t d,
                                               const contrastive::brownian_bridge_options& o,
                                               bool trajectory) {
  using view = contrastive::matrix_view<const double, contrastive::device_memory>;
  using out_view = contrastive::matrix_view<double, contrastive::device_memory>;
  const index_t g_rows = trajectory ? n * (o.steps + 1) : n;
  const view vv = contrastive::make_device_view(v.data(), n, d);
  const view vu = contrastive::make_device_view(u.data(), n, d);
  const view vg = contrastive::make_device_view(g.data(), g_rows, d);
  sampler_gradient r;
  const auto un = static_cast<std::size_t>(n);
  r.ga.assign(un * static_cast<std::size_t>(d), o.accumulate ? 0.5 : 0.0);
  r.gb = r.ga;
  const out_view oa = contrastive::make_device_view(r.ga.data(), n, d);
  const out_view ob = contrastive::make_device_view(r.gb.data(), n, d);
  const double sigma = contrastive::detail::bridge_sigma(o, d);
  std::vector<double> ds(un),
      ws(trajectory && o.steps > 1 ? 4 * static_cast<std::size_t>(o.steps - 1) * un
                                   : std::size_t(1));
  if (!trajectory) r.dt_rows.resize(un);
  for (index_t j = 0; j < n; ++j) {
    if (trajectory)
      cc::detail::bridge_path_backward_row<double>(vv, vu, vg, oa, ob, o, sigma, ws.data(), j,
                                                   ds.data());
    else
      cc::detail::bridge_point_backward_row<double>(vv, vu, vg, oa, ob, o, sigma, j,
                                                    r.dt_rows.data(), ds.data());
  }
  for (const double x : r.dt_rows) r.dt += x;
  for (const double x : ds) r.dsigma += x;
  return r;
}

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
