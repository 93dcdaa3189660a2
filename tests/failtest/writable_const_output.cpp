// Compile-fail test: a const tensor is not a writable output.
// failtest/writable_const_output_ok passes a non-const lvalue and must compile;
// failtest/writable_const_output_ko passes the same matrix through a const reference.
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

#ifdef CONTRASTIVE_FAILTEST_KO
#  define CONTRASTIVE_CV const
#else
#  define CONTRASTIVE_CV
#endif

int main() {
  Eigen::MatrixXf m = Eigen::MatrixXf::Zero(2, 2);
  CONTRASTIVE_CV Eigen::MatrixXf& out = m;
  write_gradient(out);
  return static_cast<int>(m(0, 0)) - 1;
}
