// headers/cxx20: all_headers.cpp (generated) includes every public header; this TU checks that
// C++20 is really in use and that the concepts path of config.hpp is the one taken.
#include <contrastive/contrastive.hpp>

#include <Eigen/Core>
#include <cstdio>

static_assert(__cplusplus >= 202002L, "headers/cxx20 must be compiled as C++20");
static_assert(CONTRASTIVE_HAS_CONCEPTS == 1, "C++20 should enable CONTRASTIVE_REQUIRES");

int main() {
  Eigen::MatrixXf a = Eigen::MatrixXf::Zero(3, 2);
  const auto v = contrastive::as_view(a);
  std::printf("C++%ld: view %tdx%td\n", static_cast<long>(__cplusplus), v.rows(), v.cols());
  return (v.rows() == 3 && v.cols() == 2) ? 0 : 1;
}
