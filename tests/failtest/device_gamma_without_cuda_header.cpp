// Compile-fail test: the generic gamma loss sends device views to cuda/gamma_nce.cuh, which only
// nvcc sees. Without it, a device view is a compile error that names the header.
// failtest/device_gamma_without_cuda_header_ok passes host views and must compile;
// failtest/device_gamma_without_cuda_header_ko passes the same memory as device views.
#include <cstdint>
#include <vector>

#include "contrastive/adapters/raw.hpp"
#include "contrastive/losses/gamma_nce.hpp"

int main() {
  std::vector<float> a(8, 0.5f), b(8, 0.25f);
  const std::vector<std::int64_t> ids = {0, 1};
  contrastive::gamma_nce_options o;
  o.rate_source = contrastive::gamma_rate_source::same_batch;
#ifdef CONTRASTIVE_FAILTEST_KO
  const auto va = contrastive::make_device_view(a.data(), 2, 4);
  const auto vb = contrastive::make_device_view(b.data(), 2, 4);
#else
  const auto va = contrastive::make_view(a.data(), 2, 4);
  const auto vb = contrastive::make_view(b.data(), 2, 4);
#endif
  const auto saved = contrastive::gamma_nce_forward(va, vb, ids, o);
  return saved.loss > -1e9 ? 0 : 1;
}
