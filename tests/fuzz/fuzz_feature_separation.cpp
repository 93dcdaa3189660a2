// libFuzzer harness: deep feature separation (feature_separation_forward, _backward,
// _forward_backward): six decoded inputs (zero rows, layouts, edge values), six gradient outputs
// (one sometimes aliasing an input or another output), weights, temperature, t, form, tiling.
#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;

namespace {

template <class T>
void run(fuzz::input& in) {
  const c::index_t n = in.range(0, 6), d = in.range(0, 4);
  std::vector<fuzz::matrix<T>> x, g;
  for (int k = 0; k < 6; ++k)
    x.push_back(fuzz::make_input<T>(in, in.range(0, 20) == 0 ? n + 1 : n, d));
  for (int k = 0; k < 6; ++k) g.push_back(fuzz::make_output<T>(in, x[k].rows, d));

  c::feature_separation_options o;
  fuzz::decode_tiling(in, o);
  o.orthogonality_weight = in.option(1.0);
  o.contrastive_weight = in.option(1.0);
  o.uniformity_weight = in.option(1.0);
  o.temperature = in.option(0.1);
  o.uniformity_t = in.option(2.0);
  o.uniformity = static_cast<c::uniformity_form>(in.range(0, 2));
  o.accumulate = in.flag();
  const int mode = in.range(0, 2);
  const int alias = in.range(0, 23);
  const double upstream = in.flag() ? 1.0 : in.option(1.0);

  fuzz::describe() = [&] {
    std::fprintf(stderr,
                 "T=%s weights=%g,%g,%g tau=%g t=%g form=%d accumulate=%d mode=%d alias=%d "
                 "upstream=%g\n",
                 sizeof(T) == 8 ? "double" : "float", o.orthogonality_weight, o.contrastive_weight,
                 o.uniformity_weight, o.temperature, o.uniformity_t, int(o.uniformity),
                 o.accumulate, mode, alias, upstream);
  };
  fuzz::outputs<T> outs;
  for (auto& m : g) outs.add(m);
  for (auto& m : x) outs.add_input(m);
  std::vector<c::matrix_view<T>> gv;
  for (auto& m : g) gv.push_back(m.view());
  if (alias < 6) gv[static_cast<std::size_t>(alias)] = x[static_cast<std::size_t>(alias)].view();
  if (alias == 6) gv[1] = gv[0];
  c::feature_separation_parameter_gradients pg;
  fuzz::check_contract(
      outs,
      [&]() -> double {
        if (mode == 0)
          return c::feature_separation_forward_backward(
              x[0].cview(), x[1].cview(), x[2].cview(), x[3].cview(), x[4].cview(), x[5].cview(),
              gv[0], gv[1], gv[2], gv[3], gv[4], gv[5], o, &pg);
        const auto s = c::feature_separation_forward(x[0].cview(), x[1].cview(), x[2].cview(),
                                                     x[3].cview(), x[4].cview(), x[5].cview(), o);
        if (mode == 2) return s.loss;
        pg = c::feature_separation_backward(x[0].cview(), x[1].cview(), x[2].cview(), x[3].cview(),
                                            x[4].cview(), x[5].cview(), s, gv[0], gv[1], gv[2],
                                            gv[3], gv[4], gv[5], o, upstream);
        return s.loss;
      },
      [&] { fuzz::expect_finite(pg.log_scale, "temperature gradient"); });
}

}  // namespace

CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)
