#include "support/test_config.hpp"

#include <array>
#include <numeric>
#include <type_traits>
#include <vector>

#include "contrastive/core/matrix_view.hpp"

using contrastive::index_t;
using contrastive::matrix_view;

namespace {

// Buffer holding 0, 1, 2, ... so that an element's value is its offset from the start.
std::vector<float> iota_buffer(std::size_t n) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}

}  // namespace

TEST_CASE("matrix_view: default view is empty", "[matrix_view]") {
  constexpr matrix_view<float> v;
  STATIC_REQUIRE(v.data() == nullptr);
  STATIC_REQUIRE(v.rows() == 0);
  STATIC_REQUIRE(v.cols() == 0);
  STATIC_REQUIRE(v.empty());
  STATIC_REQUIRE(v.size() == 0);
  STATIC_REQUIRE(v.required_span_size() == 0);
  STATIC_REQUIRE(std::is_same<matrix_view<float>::memory_space, contrastive::host_memory>::value);
  STATIC_REQUIRE(std::is_same<contrastive::device_matrix_view<float>::memory_space,
                              contrastive::device_memory>::value);
  STATIC_REQUIRE(std::is_same<matrix_view<const float>::value_type, float>::value);
  STATIC_REQUIRE(std::is_same<matrix_view<const float>::element_type, const float>::value);
}

TEST_CASE("matrix_view: row-major contiguous constructor", "[matrix_view]") {
  auto buf = iota_buffer(12);
  const matrix_view<float> v(buf.data(), 3, 4);
  CHECK(v.data() == buf.data());
  CHECK(v.rows() == 3);
  CHECK(v.cols() == 4);
  CHECK(v.row_stride() == 4);
  CHECK(v.col_stride() == 1);
  CHECK(v.size() == 12);
  CHECK_FALSE(v.empty());
  CHECK(v.is_row_major_contiguous());
  for (index_t i = 0; i < 3; ++i) {
    CHECK(v.row_ptr(i) == buf.data() + 4 * i);
    for (index_t j = 0; j < 4; ++j) CHECK(v(i, j) == static_cast<float>(4 * i + j));
  }
  v(2, 1) = -1.0f;
  CHECK(buf[9] == -1.0f);
}

TEST_CASE("matrix_view: extent and stride use mdspan's numbering", "[matrix_view]") {
  float buf[64] = {};
  const matrix_view<float> v(buf, 3, 5, 7, 2);
  CHECK(v.extent(0) == 3);
  CHECK(v.extent(1) == 5);
  CHECK(v.stride(0) == 7);
  CHECK(v.stride(1) == 2);
  CHECK(v.extent(0) == v.rows());
  CHECK(v.extent(1) == v.cols());
  CHECK(v.stride(0) == v.row_stride());
  CHECK(v.stride(1) == v.col_stride());
  CHECK(&v(2, 4) == buf + 2 * 7 + 4 * 2);
  CHECK_FALSE(v.is_row_major_contiguous());
}

TEST_CASE("matrix_view: column-major strides address the right elements", "[matrix_view]") {
  auto buf = iota_buffer(12);
  const matrix_view<float> v(buf.data(), 3, 4, 1, 3);  // 3 x 4 column-major
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) CHECK(v(i, j) == static_cast<float>(i + 3 * j));
  CHECK_FALSE(v.is_row_major_contiguous());
  CHECK(v.required_span_size() == 12);
}

TEST_CASE("matrix_view: required_span_size", "[matrix_view]") {
  float buf[64] = {};
  SECTION("contiguous row-major") {
    CHECK(matrix_view<float>(buf, 3, 4).required_span_size() == 12);
  }
  SECTION("padded rows: the last row ends before the padding") {
    CHECK(matrix_view<float>(buf, 3, 4, 6, 1).required_span_size() == 1 + 2 * 6 + 3);
  }
  SECTION("column stride > 1") {
    CHECK(matrix_view<float>(buf, 2, 3, 10, 2).required_span_size() == 1 + 10 + 4);
  }
  SECTION("broadcast (zero) stride") {
    CHECK(matrix_view<float>(buf, 5, 4, 0, 1).required_span_size() == 4);
  }
  SECTION("empty views span nothing") {
    CHECK(matrix_view<float>(buf, 0, 4, 4, 1).required_span_size() == 0);
    CHECK(matrix_view<float>(buf, 3, 0, 4, 1).required_span_size() == 0);
  }
  SECTION("negative strides: span from the lowest element") {
    // Rows reversed: data() points at the start of the last row in memory.
    const matrix_view<float> v(buf + 8, 3, 4, -4, 1);
    CHECK(v.required_span_size() == 12);
    CHECK(v.lowest() == buf);
    CHECK(&v(2, 0) == buf);
    // Both strides negative: data() is the highest element.
    const matrix_view<float> w(buf + 11, 3, 4, -4, -1);
    CHECK(w.lowest() == buf);
    CHECK(w.required_span_size() == 12);
  }
  SECTION("lowest() is data() for non-negative strides") {
    const matrix_view<float> v(buf + 3, 3, 4, 5, 1);
    CHECK(v.lowest() == buf + 3);
  }
}

TEST_CASE("matrix_view: conversion to a view of const", "[matrix_view]") {
  STATIC_REQUIRE(std::is_convertible<matrix_view<float>, matrix_view<const float>>::value);
  STATIC_REQUIRE_FALSE(std::is_convertible<matrix_view<const float>, matrix_view<float>>::value);
  STATIC_REQUIRE_FALSE(std::is_constructible<matrix_view<float>, matrix_view<const float>>::value);
  STATIC_REQUIRE_FALSE(std::is_convertible<matrix_view<double>, matrix_view<const float>>::value);
  STATIC_REQUIRE_FALSE(std::is_convertible<matrix_view<float, contrastive::device_memory>,
                                           matrix_view<const float>>::value);

  float buf[20] = {};
  const matrix_view<float> v(buf + 1, 3, 4, 6, 1);
  const matrix_view<const float> c = v;
  CHECK(c.data() == v.data());
  CHECK(c.rows() == 3);
  CHECK(c.cols() == 4);
  CHECK(c.row_stride() == 6);
  CHECK(c.col_stride() == 1);
}

TEST_CASE("matrix_view: block and middle_rows", "[matrix_view]") {
  auto buf = iota_buffer(30);
  const matrix_view<float> v(buf.data(), 5, 6);

  const auto mid = v.middle_rows(1, 3);
  CHECK(mid.data() == buf.data() + 6);
  CHECK(mid.rows() == 3);
  CHECK(mid.cols() == 6);
  CHECK(mid.row_stride() == 6);
  CHECK(mid.col_stride() == 1);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 6; ++j) CHECK(&mid(i, j) == &v(i + 1, j));

  const auto blk = v.block(2, 1, 2, 3);
  CHECK(blk.data() == &v(2, 1));
  CHECK(blk.rows() == 2);
  CHECK(blk.cols() == 3);
  CHECK(blk.row_stride() == 6);
  CHECK(blk.col_stride() == 1);
  CHECK_FALSE(blk.is_row_major_contiguous());
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) CHECK(blk(i, j) == v(i + 2, j + 1));
  CHECK(blk.required_span_size() == 1 + 6 + 2);

  // A block of a column-major view keeps its strides too.
  const matrix_view<float> cm(buf.data(), 5, 6, 1, 5);
  const auto cblk = cm.block(1, 2, 3, 2);
  CHECK(cblk.data() == buf.data() + 1 + 2 * 5);
  CHECK(cblk.row_stride() == 1);
  CHECK(cblk.col_stride() == 5);
  CHECK(cblk(2, 1) == cm(3, 3));
}

TEST_CASE("matrix_view: is_row_major_contiguous", "[matrix_view]") {
  float buf[16] = {};
  CHECK(matrix_view<float>(buf, 3, 4, 4, 1).is_row_major_contiguous());
  CHECK_FALSE(matrix_view<float>(buf, 3, 4, 5, 1).is_row_major_contiguous());
  CHECK_FALSE(matrix_view<float>(buf, 3, 4, 4, 2).is_row_major_contiguous());
  // A single row is contiguous whatever its row stride.
  CHECK(matrix_view<float>(buf, 1, 4, 0, 1).is_row_major_contiguous());
}

TEST_CASE("matrix_view: views_overlap", "[matrix_view]") {
  using contrastive::detail::views_overlap;
  std::array<float, 40> buf{};
  const matrix_view<float> top(buf.data(), 2, 10);
  const matrix_view<float> bottom(buf.data() + 20, 2, 10);
  const matrix_view<float> middle(buf.data() + 15, 1, 10);

  CHECK_FALSE(views_overlap(top, bottom));
  CHECK_FALSE(views_overlap(bottom, top));
  CHECK(views_overlap(top, top));
  CHECK(views_overlap(top, middle));
  CHECK(views_overlap(middle, bottom));

  SECTION("adjacent ranges do not overlap") {
    const matrix_view<float> first(buf.data(), 1, 10);
    const matrix_view<float> second(buf.data() + 10, 1, 10);
    CHECK_FALSE(views_overlap(first, second));
    CHECK_FALSE(views_overlap(second, first));
  }
  SECTION("a view of const and a view of non-const of the same memory overlap") {
    const matrix_view<const float> c = top;
    CHECK(views_overlap(top, c));
  }
  SECTION("different element types are compared by address") {
    const matrix_view<const char> bytes(reinterpret_cast<const char*>(buf.data() + 19), 1, 1);
    CHECK(views_overlap(top, bytes));
    const matrix_view<const char> after(reinterpret_cast<const char*>(buf.data() + 20), 1, 1);
    CHECK_FALSE(views_overlap(top, after));
  }
  SECTION("interleaved columns with equal strides are told apart exactly") {
    const matrix_view<float> even(buf.data(), 4, 5, 10, 2);
    const matrix_view<float> odd(buf.data() + 1, 4, 5, 10, 2);
    CHECK_FALSE(views_overlap(even, odd));
    CHECK_FALSE(views_overlap(odd, even));
    const matrix_view<float> shifted(buf.data() + 12, 2, 3, 10, 2);  // element (1, 1) of even
    CHECK(views_overlap(even, shifted));
    CHECK(views_overlap(shifted, even));
  }
  SECTION("top and bottom halves of a column-major matrix do not overlap") {
    const matrix_view<float> all(buf.data(), 8, 5, 1, 8);
    CHECK_FALSE(views_overlap(all.middle_rows(0, 4), all.middle_rows(4, 4)));
    CHECK(views_overlap(all.middle_rows(0, 5), all.middle_rows(4, 4)));
  }
  SECTION("different strides: conservatively overlapping when the bounding ranges meet") {
    const matrix_view<float> even(buf.data(), 4, 5, 10, 2);
    const matrix_view<float> odd_cols(buf.data() + 1, 5, 4, 2, 10);  // odd, transposed
    CHECK(views_overlap(even, odd_cols));
  }
  SECTION("negative strides use the lowest element") {
    const matrix_view<float> reversed(buf.data() + 10, 2, 10, -10, 1);  // rows 1 and 0
    CHECK(views_overlap(reversed, top));
    CHECK_FALSE(views_overlap(reversed, bottom));
  }
  SECTION("empty views overlap nothing") {
    const matrix_view<float> empty(buf.data(), 0, 10);
    CHECK_FALSE(views_overlap(empty, top));
    CHECK_FALSE(views_overlap(top, empty));
  }
}

TEST_CASE("vector_view: strided element access", "[matrix_view]") {
  auto buf = iota_buffer(10);
  const contrastive::vector_view<float> v{buf.data() + 1, 3, 3};
  CHECK(v[0] == 1.0f);
  CHECK(v[1] == 4.0f);
  CHECK(v[2] == 7.0f);
  v[1] = -2.0f;
  CHECK(buf[4] == -2.0f);
}
