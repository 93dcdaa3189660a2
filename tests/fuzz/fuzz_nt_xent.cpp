// libFuzzer harness: NT-Xent (nt_xent_forward, _backward, _forward_backward) on decoded shapes,
// layouts, options, labels, workspaces and values; contract in fuzz_support.hpp.
#include <cstdint>
#include <utility>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_pairwise.hpp"

namespace c = contrastive;

namespace {

struct nt_xent_calls {
  using options = c::nt_xent_options;
  /// Labels: none, one per sample, or a span of the wrong length.
  static int decode(fuzz::input& in, options& o, c::index_t n, c::index_t,
                    std::vector<std::int64_t> (&labels)[2]) {
    const int mode = in.range(0, 3);
    labels[0] = fuzz::make_labels(in, mode == 2 ? n + 1 : n);
    if (mode >= 1) o.labels = labels[0];
    return mode;
  }
  CONTRASTIVE_FUZZ_PAIRWISE_CALLS(nt_xent)
};

template <class T>
void run(fuzz::input& in) {
  fuzz::run_pairwise<T, nt_xent_calls>(in);
}

}  // namespace

CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)
