// The consumer built by the package/* tests: include the umbrella, use the library, report.
#include <contrastive/contrastive.hpp>

#include <Eigen/Core>
#include <iostream>

int main() {
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(8, 4);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> b = a;
  const auto va = contrastive::as_view(a);
  const auto vb = contrastive::as_view(b);
  std::cout << "contrastive " << CONTRASTIVE_VERSION_MAJOR << '.' << CONTRASTIVE_VERSION_MINOR << '.'
            << CONTRASTIVE_VERSION_PATCH << ": views " << va.rows() << 'x' << va.cols() << ", "
            << vb.rows() << 'x' << vb.cols() << '\n';
  return (va.rows() == 8 && va.cols() == 4 && vb.rows() == 8 && vb.cols() == 4) ? 0 : 1;
}
