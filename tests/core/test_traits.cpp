#include "support/test_config.hpp"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/traits.hpp"

using contrastive::index_t;
using contrastive::is_tensor_like;
using contrastive::is_writable_tensor;
using contrastive::matrix_view;

namespace traits_test {

// A user's own tensor type: row-major doubles in a std::vector.
struct toy_matrix {
  std::vector<double> values;
  index_t rows = 0, cols = 0;
  toy_matrix(index_t r, index_t c) : values(static_cast<std::size_t>(r * c)), rows(r), cols(c) {}
};

// Looks like a tensor (data, rows, cols) but nobody specialised tensor_traits for it.
struct lookalike {
  float* data() { return nullptr; }
  index_t rows() const { return 0; }
  index_t cols() const { return 0; }
};

}  // namespace traits_test

// What the documentation asks a user to write: view(T&) and view(const T&).
template <>
struct contrastive::tensor_traits<traits_test::toy_matrix> {
  static matrix_view<double> view(traits_test::toy_matrix& m) noexcept {
    return {m.values.data(), m.rows, m.cols, m.cols, 1};
  }
  static matrix_view<const double> view(const traits_test::toy_matrix& m) noexcept {
    return {m.values.data(), m.rows, m.cols, m.cols, 1};
  }
};

TEST_CASE("traits: types without tensor_traits are not tensors", "[traits]") {
  STATIC_REQUIRE_FALSE(is_tensor_like<std::vector<float>>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<float>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<float*>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<std::string>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<traits_test::lookalike>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<std::vector<float>&>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<traits_test::lookalike&>::value);
}

TEST_CASE("traits: a matrix_view is a tensor of itself", "[traits]") {
  STATIC_REQUIRE(is_tensor_like<matrix_view<float>>::value);
  STATIC_REQUIRE(is_tensor_like<matrix_view<const double>>::value);
  STATIC_REQUIRE(is_writable_tensor<matrix_view<float>>::value);
  STATIC_REQUIRE(is_writable_tensor<matrix_view<float>&>::value);
  STATIC_REQUIRE(is_writable_tensor<const matrix_view<float>&>::value);  // shallow const
  STATIC_REQUIRE_FALSE(is_writable_tensor<matrix_view<const float>>::value);
  STATIC_REQUIRE(std::is_same<contrastive::view_t<matrix_view<float>&>, matrix_view<float>>::value);
  STATIC_REQUIRE(std::is_same<contrastive::tensor_value_t<matrix_view<const float>>, float>::value);
  STATIC_REQUIRE(noexcept(contrastive::as_view(std::declval<matrix_view<float>&>())));

  float buf[12] = {};
  const matrix_view<float> v(buf + 1, 2, 3, 5, 1);
  const auto w = contrastive::as_view(v);
  CHECK(w.data() == v.data());
  CHECK(w.rows() == 2);
  CHECK(w.cols() == 3);
  CHECK(w.row_stride() == 5);
  CHECK(w.col_stride() == 1);
}

TEST_CASE("traits: a user type becomes a tensor by specialising tensor_traits", "[traits]") {
  using traits_test::toy_matrix;
  STATIC_REQUIRE(is_tensor_like<toy_matrix>::value);
  STATIC_REQUIRE(is_writable_tensor<toy_matrix&>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<const toy_matrix&>::value);
  // Only view(T&) and view(const T&) were written, so a temporary gets a read-only view.
  STATIC_REQUIRE_FALSE(is_writable_tensor<toy_matrix>::value);
  STATIC_REQUIRE(std::is_same<contrastive::tensor_value_t<toy_matrix>, double>::value);
  STATIC_REQUIRE(std::is_same<contrastive::view_t<toy_matrix&>, matrix_view<double>>::value);
  STATIC_REQUIRE(
      std::is_same<contrastive::view_t<const toy_matrix&>, matrix_view<const double>>::value);

  toy_matrix m(2, 3);
  for (std::size_t k = 0; k < m.values.size(); ++k) m.values[k] = static_cast<double>(k);
  const auto v = contrastive::as_view(m);
  CHECK(v.data() == m.values.data());
  CHECK(v.rows() == 2);
  CHECK(v.cols() == 3);
  CHECK(v.row_stride() == 3);
  CHECK(v.col_stride() == 1);
  CHECK(v(1, 2) == 5.0);
  v(1, 0) = -1.0;
  CHECK(m.values[3] == -1.0);

  const toy_matrix& cm = m;
  const auto cv = contrastive::as_view(cm);
  STATIC_REQUIRE(std::is_same<std::remove_const_t<decltype(cv)>, matrix_view<const double>>::value);
  CHECK(cv.data() == m.values.data());
  CHECK(cv(1, 0) == -1.0);
}

#if CONTRASTIVE_HAS_CONCEPTS
TEST_CASE("traits: concepts agree with the traits", "[traits]") {
  STATIC_REQUIRE(contrastive::tensor_like<traits_test::toy_matrix>);
  STATIC_REQUIRE(contrastive::tensor_like<const traits_test::toy_matrix&>);
  STATIC_REQUIRE_FALSE(contrastive::tensor_like<std::vector<float>>);
  STATIC_REQUIRE(contrastive::writable_tensor<traits_test::toy_matrix&>);
  STATIC_REQUIRE_FALSE(contrastive::writable_tensor<const traits_test::toy_matrix&>);
}
#endif
