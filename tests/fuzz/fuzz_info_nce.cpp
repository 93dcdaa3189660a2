// libFuzzer harness: InfoNCE / CLIP (info_nce_forward, _backward, _forward_backward) on decoded
// shapes, layouts, options, labels, workspaces and values; contract in fuzz_support.hpp.
#include <cstdint>
#include <utility>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_pairwise.hpp"

namespace c = contrastive;

namespace {

struct info_nce_calls {
  using options = c::info_nce_options;
  /// Symmetry and labels: none, both, one side only, or one span of the wrong length.
  static int decode(fuzz::input& in, options& o, c::index_t n, c::index_t nb,
                    std::vector<std::int64_t> (&labels)[2]) {
    o.symmetric = in.flag();
    const int mode = in.range(0, 4);
    labels[0] = fuzz::make_labels(in, mode == 3 ? n + 1 : n);
    labels[1] = fuzz::make_labels(in, nb);
    if (mode >= 1) o.labels_a = labels[0];
    if (mode == 1 || mode >= 3) o.labels_b = labels[1];
    return mode;
  }
  CONTRASTIVE_FUZZ_PAIRWISE_CALLS(info_nce)
};

template <class T>
void run(fuzz::input& in) {
  fuzz::run_pairwise<T, info_nce_calls>(in);
}

}  // namespace

CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)
