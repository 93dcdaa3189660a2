#include "support/test_config.hpp"

#include <type_traits>
#include <vector>

#include "contrastive/adapters/raw.hpp"

using contrastive::index_t;
using contrastive::matrix_view;

TEMPLATE_TEST_CASE("raw: make_view of contiguous row-major memory", "[raw]", float, double) {
  std::vector<TestType> buf(15);
  for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = static_cast<TestType>(k);
  const auto v = contrastive::make_view(buf.data(), 3, 5);
  STATIC_REQUIRE(std::is_same<std::remove_const_t<decltype(v)>, matrix_view<TestType>>::value);
  CHECK(v.data() == buf.data());
  CHECK(v.rows() == 3);
  CHECK(v.cols() == 5);
  CHECK(v.row_stride() == 5);
  CHECK(v.col_stride() == 1);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 5; ++j) CHECK(v(i, j) == static_cast<TestType>(5 * i + j));
  v(2, 3) = TestType(-7);
  CHECK(buf[13] == TestType(-7));
}

TEST_CASE("raw: make_view with explicit strides", "[raw]") {
  std::vector<float> buf(24);
  for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = static_cast<float>(k);
  SECTION("column-major") {
    const auto v = contrastive::make_view(buf.data(), 4, 6, 1, 4);
    CHECK(v.row_stride() == 1);
    CHECK(v.col_stride() == 4);
    CHECK(v(3, 2) == 11.0f);
  }
  SECTION("every other column of a padded matrix") {
    const auto v = contrastive::make_view(buf.data() + 1, 3, 3, 8, 2);
    CHECK(v.data() == buf.data() + 1);
    CHECK(v(0, 0) == 1.0f);
    CHECK(v(1, 2) == 13.0f);
    CHECK(v(2, 1) == 19.0f);
    CHECK(v.required_span_size() == 1 + 2 * 8 + 2 * 2);
  }
}

TEST_CASE("raw: pointers to const give views of const", "[raw]") {
  const std::vector<float> buf(6, 1.5f);
  const auto v = contrastive::make_view(buf.data(), 2, 3);
  STATIC_REQUIRE(std::is_same<std::remove_const_t<decltype(v)>, matrix_view<const float>>::value);
  STATIC_REQUIRE_FALSE(contrastive::is_writable_tensor<decltype(v)>::value);
  STATIC_REQUIRE(contrastive::is_tensor_like<decltype(v)>::value);
  CHECK(v(1, 2) == 1.5f);
}

TEST_CASE("raw: make_view is usable in constant expressions", "[raw]") {
  static constexpr float table[6] = {0, 1, 2, 3, 4, 5};
  constexpr auto v = contrastive::make_view(table, 2, 3);
  STATIC_REQUIRE(v(1, 1) == 4.0f);
  STATIC_REQUIRE(v.required_span_size() == 6);
  constexpr auto t = contrastive::make_view(table, 3, 2, 1, 3);  // the transpose
  STATIC_REQUIRE(t(2, 1) == 5.0f);
  STATIC_REQUIRE(t(1, 0) == 1.0f);
}

TEST_CASE("raw: device views carry the device tag", "[raw]") {
  float* fake_device_ptr = nullptr;
  const auto v = contrastive::make_device_view(fake_device_ptr, 4, 8, 8, 1);
  STATIC_REQUIRE(std::is_same<std::remove_const_t<decltype(v)>,
                              contrastive::device_matrix_view<float>>::value);
  STATIC_REQUIRE_FALSE(
      std::is_convertible<contrastive::device_matrix_view<float>, matrix_view<const float>>::value);
  CHECK(v.rows() == 4);
  CHECK(v.cols() == 8);
  CHECK(v.row_stride() == 8);
  CHECK(v.col_stride() == 1);
}

#if defined(__cpp_lib_span) && __cpp_lib_span >= 202002L
TEST_CASE("raw: make_view of a std::span", "[raw]") {
  std::vector<float> buf(6);
  const auto v = contrastive::make_view(std::span<float>(buf), 2, 3);
  CHECK(v.data() == buf.data());
  CHECK(v.row_stride() == 3);
  REQUIRE_THROWS_AS(contrastive::make_view(std::span<float>(buf), 2, 4),
                    contrastive::invalid_argument);
  REQUIRE_THROWS_AS(contrastive::make_view(std::span<float>(buf), -2, -3),
                    contrastive::invalid_argument);
}
#endif
