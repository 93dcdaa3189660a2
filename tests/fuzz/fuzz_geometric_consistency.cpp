// libFuzzer harness: geometric consistency, plain (a, b) and augmented (a, b, a_aug, b_aug),
// forward, backward and forward_backward, every algorithm, weights, detach flags, tile sizes,
// layouts, zero rows and edge values.
#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;

namespace {

template <class T>
void run(fuzz::input& in) {
  const c::index_t n = in.range(0, 7), d = in.range(0, 5);
  std::vector<fuzz::matrix<T>> x, g;
  for (int k = 0; k < 4; ++k)
    x.push_back(fuzz::make_input<T>(in, in.range(0, 20) == 0 ? n + 1 : n,
                                    in.range(0, 20) == 0 ? d + 1 : d));
  for (int k = 0; k < 4; ++k) g.push_back(fuzz::make_output<T>(in, x[k].rows, x[k].cols));

  c::geometric_consistency_options o;
  o.tile_rows = in.range(0, 7) == 0 ? 0 : in.range(1, 6);
  o.num_threads = in.range(0, 3);
  o.cross_modal_weight = in.option(1.0);
  o.in_modal_weight = in.flag() ? o.cross_modal_weight : in.option(1.0);
  o.detach_a_aug = in.flag();
  o.detach_b_aug = in.flag();
  o.algorithm = static_cast<c::gc_algorithm>(in.range(0, 4));
  o.accumulate = in.flag();
  const bool augmented = in.flag();
  const int mode = in.range(0, 2);
  const int alias = in.range(0, 15);
  const double upstream = in.flag() ? 1.0 : in.option(1.0);

  fuzz::describe() = [&] {
    std::fprintf(stderr,
                 "T=%s weights=%g,%g detach=%d,%d algorithm=%d accumulate=%d augmented=%d mode=%d "
                 "alias=%d upstream=%g tile_rows=%td\n",
                 sizeof(T) == 8 ? "double" : "float", o.cross_modal_weight, o.in_modal_weight,
                 o.detach_a_aug, o.detach_b_aug, int(o.algorithm), o.accumulate, augmented, mode,
                 alias, upstream, o.tile_rows);
  };
  fuzz::outputs<T> outs;
  for (auto& m : g) outs.add(m);
  for (auto& m : x) outs.add_input(m);
  std::vector<c::matrix_view<T>> gv;
  for (auto& m : g) gv.push_back(m.view());
  if (alias < 4) gv[static_cast<std::size_t>(alias)] = x[static_cast<std::size_t>(alias)].view();
  if (alias == 4) gv[1] = gv[0];
  fuzz::check_contract(outs, [&]() -> double {
    if (augmented) {
      if (mode == 0)
        return c::geometric_consistency_augmented_forward_backward(
            x[0].cview(), x[1].cview(), x[2].cview(), x[3].cview(), gv[0], gv[1], gv[2], gv[3], o);
      const auto s = c::geometric_consistency_augmented_forward(x[0].cview(), x[1].cview(),
                                                                x[2].cview(), x[3].cview(), o);
      if (mode == 2) return s.loss;
      c::geometric_consistency_augmented_backward(x[0].cview(), x[1].cview(), x[2].cview(),
                                                  x[3].cview(), s, gv[0], gv[1], gv[2], gv[3], o,
                                                  upstream);
      return s.loss;
    }
    if (mode == 0)
      return c::geometric_consistency_forward_backward(x[0].cview(), x[1].cview(), gv[0], gv[1], o);
    const auto s = c::geometric_consistency_forward(x[0].cview(), x[1].cview(), o);
    if (mode == 2) return s.loss;
    c::geometric_consistency_backward(x[0].cview(), x[1].cview(), s, gv[0], gv[1], o, upstream);
    return s.loss;
  });
}

}  // namespace

CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)
