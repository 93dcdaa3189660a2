// libFuzzer harness: the distributed InfoNCE / CLIP, NT-Xent and gamma losses on a
// self_communicator, where the argument agreement runs with one rank. Besides the contract of
// fuzz_support.hpp, a distributed call must agree with the single-process call on the same
// batch: both throw, or both succeed with the same loss (to rounding).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/gamma_nce.hpp>
#include <contrastive/distributed/info_nce.hpp>
#include <contrastive/distributed/nt_xent.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;
namespace cd = contrastive::distributed;

namespace {

template <class T, class Options>
void decode_common(fuzz::input& in, Options& o) {
  fuzz::decode_tiling(in, o);
  o.temperature = in.option(0.1);
  o.reduction = static_cast<c::loss_reduction>(in.range(0, 2));
  o.accumulate = in.flag();
}

template <class T>
void run(fuzz::input& in) {
  const c::index_t n = in.range(0, 6), d = in.range(0, 4);
  auto a = fuzz::make_input<T>(in, n, d);
  auto b = fuzz::make_input<T>(in, in.range(0, 15) == 0 ? n + 1 : n, d);
  auto ga = fuzz::make_output<T>(in, n, d);
  auto gb = fuzz::make_output<T>(in, b.rows, d);
  auto ga1 = ga, gb1 = gb;  // the single-process call's outputs
  const std::vector<std::int64_t> la = fuzz::make_labels(in, in.range(0, 15) == 0 ? n + 1 : n);
  const std::vector<std::int64_t> lb = fuzz::make_labels(in, n);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = in.range(0, 7) == 0 ? in.range(-1, 8) : static_cast<std::int64_t>(i);
  c::normalizer_state state(8, 2), state1(8, 2);
  const int loss = in.range(0, 2);
  const cd::self_communicator comm;

  fuzz::outputs<T> outs;
  outs.add(ga);
  outs.add(gb);
  double single = 0, temperature = 1;
  bool single_ok = true;
  std::function<double()> dist_call;
  if (loss == 0) {
    c::info_nce_options o;
    decode_common<T>(in, o);
    temperature = o.temperature;
    o.symmetric = in.flag();
    o.label_smoothing = in.flag() ? in.option(0.1) : 0.0;
    if (in.flag()) {
      o.labels_a = la;
      o.labels_b = lb;
    }
    try {
      single = c::info_nce_forward_backward(a.cview(), b.cview(), ga1.view(), gb1.view(), o);
    } catch (const c::invalid_argument&) {
      single_ok = false;
    }
    dist_call = [&, o] {
      return double(
          cd::info_nce_forward_backward(comm, a.cview(), b.cview(), ga.view(), gb.view(), o));
    };
  } else if (loss == 1) {
    c::nt_xent_options o;
    decode_common<T>(in, o);
    temperature = o.temperature;
    o.label_smoothing = in.flag() ? in.option(0.1) : 0.0;
    if (in.flag()) o.labels = la;
    try {
      single = c::nt_xent_forward_backward(a.cview(), b.cview(), ga1.view(), gb1.view(), o);
    } catch (const c::invalid_argument&) {
      single_ok = false;
    }
    dist_call = [&, o] {
      return double(
          cd::nt_xent_forward_backward(comm, a.cview(), b.cview(), ga.view(), gb.view(), o));
    };
  } else {
    c::gamma_nce_options o;
    decode_common<T>(in, o);
    temperature = o.temperature;
    o.symmetric = in.flag();
    o.alpha = in.flag() ? c::gamma_nce_options::deterministic : in.option(1.0);
    o.beta = in.option(0.5);
    o.seed = in.u64();
    o.rate_source = static_cast<c::gamma_rate_source>(in.range(0, 1));
    try {
      single = c::gamma_nce_forward_backward(a.cview(), b.cview(), ids, state1, ga1.view(),
                                             gb1.view(), o);
    } catch (const c::invalid_argument&) {
      single_ok = false;
    }
    cd::gamma_nce_options od;
    static_cast<c::gamma_nce_options&>(od) = o;
    dist_call = [&, od] {
      return double(cd::gamma_nce_forward_backward(comm, a.cview(), b.cview(), ids, state,
                                                   ga.view(), gb.view(), od));
    };
  }
  fuzz::describe() = [&] {
    std::fprintf(stderr, "T=%s loss=%d single_ok=%d\n", sizeof(T) == 8 ? "double" : "float", loss,
                 single_ok);
  };
  bool dist_ok = false;
  double dist = 0;
  fuzz::check_contract(outs, [&] {
    dist = dist_call();
    dist_ok = true;
    return dist;
  });
  if (dist_ok != single_ok)
    fuzz::finding("the distributed call and the single-process call disagree on throwing");
  // To rounding: of the loss, and of each anchor's lse minus target, terms as large as the
  // largest logit D max|x|^2 / tau, which the two calls sum in different orders.
  const double tol = sizeof(T) == 8 ? 1e-9 : 1e-3;
  double max_x = 0;
  for (const auto* m : {&a, &b})
    for (c::index_t i = 0; i < m->rows; ++i)
      for (c::index_t j = 0; j < d; ++j)
        max_x = std::max(max_x, std::abs(double(m->cview()(i, j))));
  const double logits = double(d) * max_x * max_x / temperature;
  const double cancel = 64 * double(std::numeric_limits<T>::epsilon()) * double(2 * n + 2) * logits;
  if (dist_ok && !(std::abs(dist - single) <= tol * (1 + std::abs(single)) + cancel))
    fuzz::finding("the distributed loss differs from the single-process loss");
}

}  // namespace

CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)
