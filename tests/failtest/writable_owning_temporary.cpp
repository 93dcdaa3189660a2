// Compile-fail test: an owning temporary is not a writable tensor (the result would be lost).
// failtest/writable_owning_temporary_ok passes a Map temporary and must compile;
// failtest/writable_owning_temporary_ko passes `Eigen::MatrixXf{}` and must not.
#include <Eigen/Core>

#include "contrastive/adapters/eigen.hpp"

// Mirrors what the loss entry points do with their gradient outputs.
template <class G>
void write_gradient(G&& grad) {
  static_assert(contrastive::is_writable_tensor<G&&>::value,
                "grad: must be a writable tensor (an lvalue, or a Map/Block/Ref of one)");
  auto v = contrastive::as_view(std::forward<G>(grad));
  if (!v.empty()) v(0, 0) = 1.0f;
}

int main() {
  float storage[4] = {};
#ifdef CONTRASTIVE_FAILTEST_KO
  write_gradient(Eigen::MatrixXf{});
#else
  write_gradient(Eigen::Map<Eigen::MatrixXf>(storage, 2, 2));
#endif
  return static_cast<int>(storage[0]) - 1;
}
