// libFuzzer harness: the Brownian-bridge loss (forward, backward, forward_backward) and the
// bridge sampler (points and trajectories, Philox or caller noise, forward and backward): decoded
// t, t range, sigma, steps, ids (negative, repeated), reprojection, layouts and values. A sampler
// forward returns no loss; its contract is on y / x and on the backward's gradients.
#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;

namespace {

void describe_bridge(const c::brownian_bridge_options& b, const char* what) {
  std::fprintf(stderr,
               "%s: t=%g random_t=%d t_range=[%g, %g] noise=%d sigma=%g reproject=%d steps=%td "
               "ids=%d accumulate=%d\n",
               what, b.t, b.random_t, b.t_min, b.t_max, b.noise, b.sigma, b.reproject, b.steps,
               b.ids.data != nullptr, b.accumulate);
}

c::brownian_bridge_options decode_bridge(fuzz::input& in, c::index_t n,
                                         std::vector<std::int64_t>& ids) {
  c::brownian_bridge_options b;
  b.t = in.option(0.5);
  b.random_t = in.flag();
  b.t_min = in.option(0.1);
  b.t_max = in.flag() ? 0.9 : in.option(0.9);
  b.noise = in.flag();
  b.sigma = in.flag() ? 0.0 : in.option(0.1);
  b.reproject = in.flag();
  b.steps = in.range(-1, 4);
  b.seed = in.u64();
  b.step = static_cast<std::uint32_t>(in.byte());
  b.first_id = in.flag() ? 0 : in.u64();
  ids.resize(static_cast<std::size_t>(in.range(0, 15) == 0 ? n + 1 : n));
  for (auto& id : ids) id = in.range(-1, 5);
  if (in.flag()) b.ids = ids;
  b.accumulate = in.flag();
  b.num_threads = in.range(0, 3);
  return b;
}

template <class T>
void run_loss(fuzz::input& in) {
  const c::index_t n = in.range(0, 6), d = in.range(0, 4);
  std::vector<fuzz::matrix<T>> x, g;
  for (int k = 0; k < 3; ++k)
    x.push_back(fuzz::make_input<T>(in, in.range(0, 20) == 0 ? n + 1 : n, d));
  for (int k = 0; k < 3; ++k) g.push_back(fuzz::make_output<T>(in, x[k].rows, d));
  std::vector<std::int64_t> ids;
  c::brownian_bridge_loss_options o;
  o.bridge = decode_bridge(in, n, ids);
  o.nll_weight = in.flag();
  o.detach_a_aug = in.flag();
  o.accumulate = in.flag();
  const int mode = in.range(0, 2);
  const int alias = in.range(0, 7);
  const double upstream = in.flag() ? 1.0 : in.option(1.0);

  fuzz::describe() = [&] {
    describe_bridge(o.bridge, "loss");
    std::fprintf(stderr, "T=%s nll=%d detach=%d accumulate=%d mode=%d alias=%d upstream=%g\n",
                 sizeof(T) == 8 ? "double" : "float", o.nll_weight, o.detach_a_aug, o.accumulate,
                 mode, alias, upstream);
  };
  fuzz::outputs<T> outs;
  for (auto& m : g) outs.add(m);
  for (auto& m : x) outs.add_input(m);
  std::vector<c::matrix_view<T>> gv;
  for (auto& m : g) gv.push_back(m.view());
  if (alias < 3) gv[static_cast<std::size_t>(alias)] = x[static_cast<std::size_t>(alias)].view();
  c::brownian_bridge_loss_parameter_gradients pg;
  fuzz::check_contract(
      outs,
      [&]() -> double {
        if (mode == 0)
          return c::brownian_bridge_loss_forward_backward(x[0].cview(), x[1].cview(), x[2].cview(),
                                                          gv[0], gv[1], gv[2], o, &pg);
        const auto s = c::brownian_bridge_loss_forward(x[0].cview(), x[1].cview(), x[2].cview(), o);
        if (mode == 2) return s.loss;
        pg = c::brownian_bridge_loss_backward(x[0].cview(), x[1].cview(), x[2].cview(), s, gv[0],
                                              gv[1], gv[2], o, upstream);
        return s.loss;
      },
      [&] {
        fuzz::expect_finite(pg.t, "dL/dt");
        for (double v : pg.t_rows) fuzz::expect_finite(v, "dL/dt_j");
      });
}

template <class T>
void run_sampler(fuzz::input& in) {
  const c::index_t n = in.range(0, 6), d = in.range(0, 4);
  auto v = fuzz::make_input<T>(in, n, d);
  auto u = fuzz::make_input<T>(in, in.range(0, 20) == 0 ? n + 1 : n, d);
  std::vector<std::int64_t> ids;
  const c::brownian_bridge_options o = decode_bridge(in, n, ids);
  const bool path = in.flag(), caller_noise = in.flag();
  const c::index_t k = o.steps > 0 ? o.steps : 1;
  const c::index_t out_rows = path ? n * (k + 1) : n;
  const c::index_t noise_rows = path ? n * (k > 1 ? k - 1 : 0) : n;
  auto noise = fuzz::make_input<T>(in, in.range(0, 15) == 0 ? noise_rows + 1 : noise_rows, d);
  auto y = fuzz::make_output<T>(in, in.range(0, 15) == 0 ? out_rows + 1 : out_rows, d);
  auto gy = fuzz::make_input<T>(in, y.rows, d);
  auto gv = fuzz::make_output<T>(in, n, d);
  auto gu = fuzz::make_output<T>(in, u.rows, d);
  const bool backward = in.flag();

  fuzz::describe() = [&] {
    describe_bridge(o, "sampler");
    std::fprintf(stderr, "T=%s path=%d caller_noise=%d backward=%d\n",
                 sizeof(T) == 8 ? "double" : "float", path, caller_noise, backward);
    fuzz::print_matrix<T>("noise", noise.cview());
    fuzz::print_matrix<T>("grad_y", gy.cview());
  };
  fuzz::outputs<T> outs;
  outs.add(y);
  outs.add_input(v);
  outs.add_input(u);
  c::brownian_bridge_saved<T> saved;
  bool forward_ok = false;
  fuzz::check_contract(outs, [&]() -> double {
    if (path)
      saved = caller_noise ? c::brownian_bridge_trajectory_with_noise(v.cview(), u.cview(),
                                                                      noise.cview(), y.view(), o)
                           : c::brownian_bridge_trajectory(v.cview(), u.cview(), y.view(), o);
    else
      saved = caller_noise ? c::brownian_bridge_sample_with_noise(v.cview(), u.cview(),
                                                                  noise.cview(), y.view(), o)
                           : c::brownian_bridge_sample(v.cview(), u.cview(), y.view(), o);
    forward_ok = true;
    return 0.0;
  });
  if (!forward_ok || !backward) return;
  fuzz::outputs<T> gouts;
  gouts.add(gv);
  gouts.add(gu);
  gouts.add_input(y);
  c::brownian_bridge_gradient g;
  fuzz::check_contract(
      gouts,
      [&]() -> double {
        if (path)
          g = caller_noise ? c::brownian_bridge_trajectory_with_noise_backward(
                                 v.cview(), u.cview(), noise.cview(), saved, gy.cview(), gv.view(),
                                 gu.view(), o)
                           : c::brownian_bridge_trajectory_backward(
                                 v.cview(), u.cview(), saved, gy.cview(), gv.view(), gu.view(), o);
        else
          g = caller_noise ? c::brownian_bridge_sample_with_noise_backward(
                                 v.cview(), u.cview(), noise.cview(), saved, gy.cview(), gv.view(),
                                 gu.view(), o)
                           : c::brownian_bridge_sample_backward(
                                 v.cview(), u.cview(), saved, gy.cview(), gv.view(), gu.view(), o);
        return 0.0;
      },
      [&] {
        fuzz::expect_finite(g.t, "dL/dt");
        fuzz::expect_finite(g.sigma, "dL/dsigma");
        for (double x : g.t_rows) fuzz::expect_finite(x, "dL/dt_j");
      });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::input in(data, size);
  const int which = in.range(0, 3);
  if (which == 0) run_loss<double>(in);
  if (which == 1) run_loss<float>(in);
  if (which == 2) run_sampler<double>(in);
  if (which == 3) run_sampler<float>(in);
  return 0;
}
