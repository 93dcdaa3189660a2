// libFuzzer harness: NT-Xent (nt_xent_forward, _backward, _forward_backward) on decoded
// shapes, layouts, options, labels, workspaces and values; contract in fuzz_support.hpp.
#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;

namespace {

template <class T>
void run(fuzz::input& in) {
  const c::index_t n = in.range(0, 7), d = in.range(0, 5);
  const c::index_t nb = in.range(0, 15) == 0 ? n + 1 : n;
  const c::index_t db = in.range(0, 15) == 0 ? d + 1 : d;
  auto a = fuzz::make_input<T>(in, n, d);
  auto b = fuzz::make_input<T>(in, nb, db);
  auto ga = fuzz::make_output<T>(in, n, d, in.range(0, 15) == 0);
  auto gb = fuzz::make_output<T>(in, nb, db);

  c::nt_xent_options o;
  fuzz::decode_tiling(in, o);
  o.temperature = in.option(0.1);
  o.label_smoothing = in.flag() ? in.option(0.1) : 0.0;
  const int label_mode = in.range(0, 3);
  const std::vector<std::int64_t> labels = fuzz::make_labels(in, label_mode == 2 ? n + 1 : n);
  if (label_mode >= 1) o.labels = labels;
  o.reduction = static_cast<c::loss_reduction>(in.range(0, 2));
  o.accumulate = in.flag();
  o.cache_logits = in.range(0, 3) == 0;
  const int mode = in.range(0, 2);
  const int alias = in.range(0, 15);
  const int ws_mode = in.range(0, 5);
  const double upstream = in.flag() ? 1.0 : in.option(1.0);
  c::nt_xent_options ob = o;
  if (in.range(0, 7) == 0) ob.temperature = in.option(0.1);

  fuzz::describe() = [&] {
    std::fprintf(stderr,
                 "T=%s tau=%g smoothing=%g label_mode=%d reduction=%d accumulate=%d cache=%d "
                 "mode=%d alias=%d ws_mode=%d upstream=%g tiles=%td x %td threads=%d\n",
                 sizeof(T) == 8 ? "double" : "float", o.temperature, o.label_smoothing, label_mode,
                 int(o.reduction), o.accumulate, o.cache_logits, mode, alias, ws_mode, upstream,
                 o.tile_rows, o.tile_cols, o.num_threads);
  };
  fuzz::outputs<T> outs;
  outs.add(ga);
  outs.add(gb);
  outs.add_input(a);
  outs.add_input(b);
  c::matrix_view<T> vga = ga.view(), vgb = gb.view();
  if (alias == 0) vgb = b.view();   // gradient over its own input
  if (alias == 1) vgb = ga.view();  // both gradients in one buffer
  std::vector<unsigned char> wbuf;
  c::nt_xent_parameter_gradients pg;
  const auto ws = [&]() -> c::workspace {
    if (ws_mode == 3) return {nullptr, 4096};
    if (ws_mode < 1 || ws_mode > 2) return {};
    std::size_t bytes = c::nt_xent_workspace_bytes(a.cview(), b.cview(), o);
    if (ws_mode == 2) bytes /= 2;
    wbuf.assign(bytes + 64, 0);
    return {wbuf.data(), bytes};
  };
  fuzz::check_contract(
      outs,
      [&]() -> double {
        const c::workspace w = ws();
        if (mode == 0)
          return c::nt_xent_forward_backward(a.cview(), b.cview(), vga, vgb, o, &pg, w);
        const auto saved = c::nt_xent_forward(a.cview(), b.cview(), o, w);
        if (mode == 2) return saved.loss;
        pg = c::nt_xent_backward(a.cview(), b.cview(), saved, vga, vgb, ob, upstream, w);
        return saved.loss;
      },
      [&] {
        if (!std::isfinite(pg.log_scale) || !std::isfinite(pg.temperature))
          fuzz::finding("a non-finite temperature gradient after a successful call");
      });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::input in(data, size);
  if (in.flag())
    run<double>(in);
  else
    run<float>(in);
  return 0;
}
