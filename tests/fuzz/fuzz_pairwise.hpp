// The body of the InfoNCE/CLIP and NT-Xent harnesses, which share their whole API shape: decoded
// shapes, layouts, options, workspaces, aliasing and call sequence; `Loss` adds its own options
// (symmetry, labels) and names the calls.
#ifndef CONTRASTIVE_TESTS_FUZZ_PAIRWISE_HPP
#define CONTRASTIVE_TESTS_FUZZ_PAIRWISE_HPP

#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

/// The four calls of loss X (X_forward, X_backward, X_forward_backward, X_workspace_bytes) as the
/// static members run_pairwise uses.
#define CONTRASTIVE_FUZZ_PAIRWISE_CALLS(X)                             \
  template <class... A>                                                \
  static auto forward(A&&... a) {                                      \
    return ::contrastive::X##_forward(std::forward<A>(a)...);          \
  }                                                                    \
  template <class... A>                                                \
  static auto backward(A&&... a) {                                     \
    return ::contrastive::X##_backward(std::forward<A>(a)...);         \
  }                                                                    \
  template <class... A>                                                \
  static auto forward_backward(A&&... a) {                             \
    return ::contrastive::X##_forward_backward(std::forward<A>(a)...); \
  }                                                                    \
  template <class... A>                                                \
  static auto workspace_bytes(A&&... a) {                              \
    return ::contrastive::X##_workspace_bytes(std::forward<A>(a)...);  \
  }

namespace fuzz {

template <class T, class Loss>
void run_pairwise(input& in) {
  namespace c = contrastive;
  const c::index_t n = in.range(0, 7), d = in.range(0, 5);
  const c::index_t nb = in.range(0, 15) == 0 ? n + 1 : n;
  const c::index_t db = in.range(0, 15) == 0 ? d + 1 : d;
  auto a = make_input<T>(in, n, d);
  auto b = make_input<T>(in, nb, db);
  auto ga = make_output<T>(in, n, d, in.range(0, 15) == 0);
  auto gb = make_output<T>(in, nb, db);

  typename Loss::options o;
  decode_tiling(in, o);
  o.temperature = in.option(0.1);
  o.label_smoothing = in.flag() ? in.option(0.1) : 0.0;
  std::vector<std::int64_t> labels[2];
  const int label_mode = Loss::decode(in, o, n, nb, labels);
  o.reduction = static_cast<c::loss_reduction>(in.range(0, 2));
  o.accumulate = in.flag();
  o.cache_logits = in.range(0, 3) == 0;
  const int mode = in.range(0, 2);
  const int alias = in.range(0, 15);
  const int ws_mode = in.range(0, 5);
  const double upstream = in.flag() ? 1.0 : in.option(1.0);
  typename Loss::options ob = o;
  if (in.range(0, 7) == 0) ob.temperature = in.option(0.1);

  describe() = [&] {
    std::fprintf(stderr,
                 "T=%s tau=%g smoothing=%g label_mode=%d reduction=%d accumulate=%d cache=%d "
                 "mode=%d alias=%d ws_mode=%d upstream=%g tiles=%td x %td threads=%d\n",
                 sizeof(T) == 8 ? "double" : "float", o.temperature, o.label_smoothing, label_mode,
                 int(o.reduction), o.accumulate, o.cache_logits, mode, alias, ws_mode, upstream,
                 o.tile_rows, o.tile_cols, o.num_threads);
  };
  outputs<T> outs;
  outs.add(ga);
  outs.add(gb);
  outs.add_input(a);
  outs.add_input(b);
  c::matrix_view<T> vga = ga.view(), vgb = gb.view();
  if (alias == 0) vgb = b.view();   // gradient over its own input
  if (alias == 1) vgb = ga.view();  // both gradients in one buffer
  std::vector<unsigned char> wbuf;
  c::temperature_gradient pg;
  const auto ws = [&]() -> c::workspace {
    if (ws_mode == 3) return {nullptr, 4096};
    if (ws_mode < 1 || ws_mode > 2) return {};
    std::size_t bytes = Loss::workspace_bytes(a.cview(), b.cview(), o);
    if (ws_mode == 2) bytes /= 2;
    wbuf.assign(bytes + 64, 0);
    return {wbuf.data(), bytes};
  };
  check_contract(
      outs,
      [&]() -> double {
        const c::workspace w = ws();
        if (mode == 0) return Loss::forward_backward(a.cview(), b.cview(), vga, vgb, o, &pg, w);
        const auto saved = Loss::forward(a.cview(), b.cview(), o, w);
        if (mode == 2) return saved.loss;
        pg = Loss::backward(a.cview(), b.cview(), saved, vga, vgb, ob, upstream, w);
        return saved.loss;
      },
      [&] { expect_finite(pg.log_scale + pg.temperature, "temperature gradient"); });
}

}  // namespace fuzz

#endif  // CONTRASTIVE_TESTS_FUZZ_PAIRWISE_HPP
