// The consumer built by the package/* tests: include the umbrella, compute a loss, report.
#include <contrastive/contrastive.hpp>

#include <Eigen/Core>
#include <cmath>
#include <iostream>

int main() {
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(16, 8);  // column-major
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> b =
      a + 0.1f * Eigen::MatrixXf::Random(16, 8);  // row-major
  a.rowwise().normalize();
  b.rowwise().normalize();
  auto saved = contrastive::info_nce_forward(a, b, contrastive::info_nce_options{});
  std::cout << "contrastive " << CONTRASTIVE_VERSION_MAJOR << '.' << CONTRASTIVE_VERSION_MINOR
            << '.' << CONTRASTIVE_VERSION_PATCH << ": info_nce loss = " << saved.loss << '\n';
  return std::isfinite(saved.loss) ? 0 : 1;
}
