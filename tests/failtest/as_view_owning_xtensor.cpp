// Compile-fail test: an owning xtensor temporary cannot be viewed (the view would dangle).
// failtest/as_view_owning_xtensor_ok views an xt::adapt temporary over external memory and
// must compile; failtest/as_view_owning_xtensor_ko views `xt::xtensor<float, 2>{}` and must not.
#include <array>
#include <cstddef>

#if __has_include(<xtensor/containers/xadapt.hpp>)
#  include <xtensor/containers/xadapt.hpp>
#  include <xtensor/containers/xtensor.hpp>
#else
#  include <xtensor/xadapt.hpp>
#  include <xtensor/xtensor.hpp>
#endif

#include "contrastive/adapters/xtensor.hpp"

int main() {
  float storage[4] = {};
  float* external = storage;
#ifdef CONTRASTIVE_FAILTEST_KO
  auto v = contrastive::as_view(xt::xtensor<float, 2>{});
#else
  auto v = contrastive::as_view(
      xt::adapt(external, std::size_t{4}, xt::no_ownership(), std::array<std::size_t, 2>{2, 2}));
#endif
  return static_cast<int>(v.rows()) - 2 + static_cast<int>(*external);
}
