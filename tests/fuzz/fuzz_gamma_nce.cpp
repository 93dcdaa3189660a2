// libFuzzer harness: the gamma-auxiliary loss (gamma_nce_forward, _backward, _forward_backward)
// with and without a normalizer_state: decoded ids (out of range, negative, repeated), rate
// sources, update orders, alpha/beta/temperature edge values, exact log-normalisers, layouts and
// values. Besides the outputs, a throwing call must leave the state exactly as it was.
#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;

namespace {

struct state_snapshot {
  std::vector<double> zeta;
  std::vector<bool> visited;
  explicit state_snapshot(const c::normalizer_state& s) {
    for (int dir = 0; dir < s.directions(); ++dir)
      for (std::int64_t id = 0; id < s.samples(); ++id) {
        visited.push_back(s.visited(id, dir));
        zeta.push_back(s.visited(id, dir) ? s.log_normalizer(id, dir) : 0.0);
      }
  }
  bool operator==(const state_snapshot& o) const {
    if (visited != o.visited || zeta.size() != o.zeta.size()) return false;
    for (std::size_t k = 0; k < zeta.size(); ++k)
      if (std::memcmp(&zeta[k], &o.zeta[k], sizeof(double)) != 0) return false;
    return true;
  }
};

template <class T>
void run(fuzz::input& in) {
  const c::index_t n = in.range(0, 6), d = in.range(0, 4);
  const c::index_t nb = in.range(0, 15) == 0 ? n + 1 : n;
  auto a = fuzz::make_input<T>(in, n, d);
  auto b = fuzz::make_input<T>(in, nb, d);
  auto ga = fuzz::make_output<T>(in, n, d);
  auto gb = fuzz::make_output<T>(in, in.range(0, 15) == 0 ? nb + 1 : nb, d);

  const std::int64_t samples = in.range(0, 10);
  c::normalizer_state state(samples, in.range(1, 2));
  // Warm some entries so that the EMA path runs, sometimes with extreme values.
  for (std::int64_t id = 0; id < samples; ++id) {
    if (!in.flag()) continue;
    try {
      state.set(id, in.range(0, 1), in.value());
    } catch (const c::invalid_argument&) {  // a non-finite value or direction 1 of a 1-way state
    }
  }
  std::vector<std::int64_t> ids(static_cast<std::size_t>(in.range(0, 15) == 0 ? n + 1 : n));
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = in.range(0, 7) == 0 ? in.range(-1, 12) : static_cast<std::int64_t>(i);

  c::gamma_nce_options o;
  fuzz::decode_tiling(in, o);
  o.temperature = in.option(0.1);
  o.symmetric = in.flag();
  o.alpha = in.range(0, 3) == 0 ? c::gamma_nce_options::deterministic : in.option(1.0);
  o.beta = in.option(0.5);
  o.seed = in.u64();
  o.step = static_cast<std::uint32_t>(in.byte());
  o.rate_source = static_cast<c::gamma_rate_source>(in.range(0, 3));
  o.order = static_cast<c::gamma_update_order>(in.range(0, 2));
  o.positive_in_normaliser = in.flag();
  std::vector<double> za(static_cast<std::size_t>(in.range(0, 7) == 0 ? n + 1 : n));
  std::vector<double> zb(static_cast<std::size_t>(n));
  for (auto& z : za) z = in.value();
  for (auto& z : zb) z = in.value();
  if (in.range(0, 3) != 0) o.exact_log_normalizer_a = za;
  if (in.range(0, 3) != 0) o.exact_log_normalizer_b = zb;
  o.reduction = static_cast<c::loss_reduction>(in.range(0, 2));
  o.accumulate = in.flag();
  const bool with_state = in.range(0, 3) != 0;
  const int mode = in.range(0, 2);
  const double upstream = in.flag() ? 1.0 : in.option(1.0);

  fuzz::describe() = [&] {
    std::fprintf(stderr,
                 "T=%s tau=%g symmetric=%d alpha=%g beta=%g source=%d order=%d positive=%d "
                 "reduction=%d accumulate=%d with_state=%d mode=%d upstream=%g\n",
                 sizeof(T) == 8 ? "double" : "float", o.temperature, o.symmetric, o.alpha, o.beta,
                 int(o.rate_source), int(o.order), o.positive_in_normaliser, int(o.reduction),
                 o.accumulate, with_state, mode, upstream);
  };
  fuzz::outputs<T> outs;
  outs.add(ga);
  outs.add(gb);
  c::gamma_nce_parameter_gradients pg;
  const state_snapshot before(state);
  bool threw = false;
  fuzz::check_contract(
      outs,
      [&]() -> double {
        try {
          if (mode == 0) {
            return with_state ? c::gamma_nce_forward_backward(a.cview(), b.cview(), ids, state,
                                                              ga.view(), gb.view(), o, &pg)
                              : c::gamma_nce_forward_backward(a.cview(), b.cview(), ids, ga.view(),
                                                              gb.view(), o, &pg);
          }
          const auto saved = with_state ? c::gamma_nce_forward(a.cview(), b.cview(), ids, state, o)
                                        : c::gamma_nce_forward(a.cview(), b.cview(), ids, o);
          if (mode == 2) return saved.loss;
          pg =
              c::gamma_nce_backward(a.cview(), b.cview(), saved, ga.view(), gb.view(), o, upstream);
          return saved.loss;
        } catch (const c::invalid_argument&) {
          threw = true;
          throw;
        }
      },
      [&] { fuzz::expect_finite(pg.log_scale, "temperature gradient"); });
  // A forward that succeeded may update the state before a separate backward throws (mode 1);
  // a single throwing call must not.
  if (threw && mode != 1 && !(state_snapshot(state) == before))
    fuzz::finding("the normalizer_state changed although the call threw");
}

}  // namespace

CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)
