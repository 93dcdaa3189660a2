// Compile-fail test: the generic entry points send device views to the CUDA path, which exists
// only where cuda/info_nce.cuh is included (nvcc). Without it, a device view is a compile error
// that names the header, never a host loop over device memory.
// failtest/device_view_without_cuda_header_ok passes host views and must compile;
// failtest/device_view_without_cuda_header_ko passes the same memory as device views.
#include <vector>

#include "contrastive/adapters/raw.hpp"
#include "contrastive/losses/info_nce.hpp"

int main() {
  std::vector<float> a(8, 0.5f), b(8, 0.25f);
#ifdef CONTRASTIVE_FAILTEST_KO
  const auto va = contrastive::make_device_view(a.data(), 2, 4);
  const auto vb = contrastive::make_device_view(b.data(), 2, 4);
#else
  const auto va = contrastive::make_view(a.data(), 2, 4);
  const auto vb = contrastive::make_view(b.data(), 2, 4);
#endif
  const auto saved = contrastive::info_nce_forward(va, vb);
  return saved.loss > 0 ? 0 : 1;
}
