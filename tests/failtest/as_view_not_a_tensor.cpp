// Compile-fail test: as_view has no overload for types without tensor_traits.
// failtest/as_view_not_a_tensor_ok views a matrix_view temporary and must compile;
// failtest/as_view_not_a_tensor_ko views a std::vector<float> temporary and must not.
#include <vector>

#include "contrastive/adapters/raw.hpp"

#ifdef CONTRASTIVE_FAILTEST_KO
using tensor = std::vector<float>;
#else
using tensor = contrastive::matrix_view<float>;
#endif

int main() {
  auto v = contrastive::as_view(tensor{});
  return static_cast<int>(v.rows());
}
