#include "support/test_config.hpp"

#include <type_traits>
#include <vector>

#include "contrastive/adapters/eigen.hpp"
#include "contrastive/adapters/raw.hpp"

using contrastive::as_view;
using contrastive::index_t;
using contrastive::is_tensor_like;
using contrastive::is_writable_tensor;
using contrastive::matrix_view;

namespace {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowArrayXXd = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Distinct values everywhere, so a wrong stride shows up as a wrong value.
template <class M>
void fill_distinct(M& m) {
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<typename M::Scalar>(100 * i + j + 1);
}

// Shape, strides and data pointer as given, and every element equal to the expression's.
template <class V, class M>
void check_view(const V& v, const M& expr, const void* data, index_t row_stride,
                index_t col_stride) {
  CHECK(static_cast<const void*>(v.data()) == data);
  REQUIRE(v.rows() == static_cast<index_t>(expr.rows()));
  REQUIRE(v.cols() == static_cast<index_t>(expr.cols()));
  CHECK(v.row_stride() == row_stride);
  CHECK(v.col_stride() == col_stride);
  for (index_t i = 0; i < v.rows(); ++i)
    for (index_t j = 0; j < v.cols(); ++j) CHECK(v(i, j) == expr(i, j));
}

// The view is field-for-field the one make_view builds for the same memory.
template <class V, class W>
bool same_view(const V& a, const W& b) {
  return static_cast<const void*>(a.data()) == static_cast<const void*>(b.data()) &&
         a.rows() == b.rows() && a.cols() == b.cols() && a.row_stride() == b.row_stride() &&
         a.col_stride() == b.col_stride();
}

template <class T>
using view_type = std::remove_const_t<T>;

}  // namespace

TEMPLATE_TEST_CASE("eigen: column-major Matrix", "[eigen]", float, double) {
  Eigen::Matrix<TestType, Eigen::Dynamic, Eigen::Dynamic> m(3, 5);
  fill_distinct(m);
  const auto v = as_view(m);
  STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<TestType>>::value);
  check_view(v, m, m.data(), 1, 3);
  CHECK(same_view(v, contrastive::make_view(m.data(), 3, 5, 1, 3)));
}

TEMPLATE_TEST_CASE("eigen: row-major Matrix", "[eigen]", float, double) {
  Eigen::Matrix<TestType, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(3, 5);
  fill_distinct(m);
  const auto v = as_view(m);
  check_view(v, m, m.data(), 5, 1);
  CHECK(v.is_row_major_contiguous());
  CHECK(same_view(v, contrastive::make_view(m.data(), 3, 5)));
}

TEST_CASE("eigen: fixed-size matrices and vectors", "[eigen]") {
  Eigen::Matrix<double, 2, 3> f;
  fill_distinct(f);
  check_view(as_view(f), f, f.data(), 1, 2);

  Eigen::VectorXf col(4);
  fill_distinct(col);
  check_view(as_view(col), col, col.data(), 1, 4);

  Eigen::RowVectorXf row(4);
  fill_distinct(row);
  check_view(as_view(row), row, row.data(), 4, 1);
}

TEST_CASE("eigen: Array in both storage orders", "[eigen]") {
  Eigen::ArrayXXf a(4, 2);
  fill_distinct(a);
  const auto va = as_view(a);
  STATIC_REQUIRE(std::is_same<view_type<decltype(va)>, matrix_view<float>>::value);
  check_view(va, a, a.data(), 1, 4);

  RowArrayXXd r(4, 2);
  fill_distinct(r);
  const auto vr = as_view(r);
  STATIC_REQUIRE(std::is_same<view_type<decltype(vr)>, matrix_view<double>>::value);
  check_view(vr, r, r.data(), 2, 1);
}

TEST_CASE("eigen: Map with outer and inner strides", "[eigen]") {
  std::vector<float> buf(64);
  for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = static_cast<float>(k);

  SECTION("plain Map") {
    Eigen::Map<Eigen::MatrixXf> m(buf.data() + 2, 3, 4);
    check_view(as_view(m), m, buf.data() + 2, 1, 3);
  }
  SECTION("row-major Map with padded rows") {
    Eigen::Map<RowMatrixXf, 0, Eigen::OuterStride<>> m(buf.data(), 3, 4, Eigen::OuterStride<>(7));
    check_view(as_view(m), m, buf.data(), 7, 1);
  }
  SECTION("column-major Map with both strides") {
    using S = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    Eigen::Map<Eigen::MatrixXf, 0, S> m(buf.data() + 1, 3, 4, S(10, 2));
    check_view(as_view(m), m, buf.data() + 1, 2, 10);
  }
  SECTION("row-major Map with both strides") {
    using S = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    Eigen::Map<RowMatrixXf, 0, S> m(buf.data(), 3, 4, S(12, 3));
    check_view(as_view(m), m, buf.data(), 12, 3);
  }
  SECTION("Map of const gives a view of const") {
    Eigen::Map<const Eigen::MatrixXf> m(buf.data(), 4, 4);
    const auto v = as_view(m);
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<const float>>::value);
    check_view(v, m, buf.data(), 1, 4);
  }
}

TEST_CASE("eigen: Ref", "[eigen]") {
  Eigen::MatrixXd big(6, 5);
  fill_distinct(big);
  SECTION("Ref<MatrixXd> to a block") {
    Eigen::Ref<Eigen::MatrixXd> r = big.block(1, 1, 4, 3);
    const auto v = as_view(r);
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<double>>::value);
    check_view(v, big.block(1, 1, 4, 3), &big(1, 1), 1, 6);
  }
  SECTION("Ref<const MatrixXd>") {
    Eigen::Ref<const Eigen::MatrixXd> r = big.middleCols(2, 2);
    const auto v = as_view(r);
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<const double>>::value);
    check_view(v, big.middleCols(2, 2), &big(0, 2), 1, 6);
  }
  SECTION("Ref with dynamic inner and outer strides") {
    using S = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    std::vector<double> buf(40, 0.0);
    for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = static_cast<double>(k);
    Eigen::Map<Eigen::MatrixXd, 0, S> m(buf.data() + 1, 3, 4, S(9, 2));
    Eigen::Ref<Eigen::MatrixXd, 0, S> r = m;
    check_view(as_view(r), m, buf.data() + 1, 2, 9);
  }
}

TEST_CASE("eigen: Block in both storage orders", "[eigen]") {
  SECTION("column-major") {
    Eigen::MatrixXf m(5, 6);
    fill_distinct(m);
    auto b = m.block(1, 2, 3, 2);
    const auto v = as_view(b);
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<float>>::value);
    check_view(v, b, &m(1, 2), 1, 5);
    check_view(as_view(m.row(3)), m.row(3), &m(3, 0), 1, 5);
    check_view(as_view(m.col(4)), m.col(4), &m(0, 4), 1, 5);
  }
  SECTION("row-major") {
    RowMatrixXf m(5, 6);
    fill_distinct(m);
    check_view(as_view(m.block(1, 2, 3, 2)), m.block(1, 2, 3, 2), &m(1, 2), 6, 1);
    check_view(as_view(m.middleRows(2, 2)), m.middleRows(2, 2), &m(2, 0), 6, 1);
  }
  SECTION("a block of a block") {
    Eigen::MatrixXf m(8, 8);
    fill_distinct(m);
    auto inner = m.block(1, 1, 6, 6).block(2, 1, 3, 3);
    check_view(as_view(inner), inner, &m(3, 2), 1, 8);
  }
}

TEST_CASE("eigen: vector segments (VectorBlock) and classes derived from Matrix", "[eigen]") {
  Eigen::VectorXf v(6);
  fill_distinct(v);
  // A segment keeps the outer stride of its vector (irrelevant for a single column).
  check_view(as_view(v.segment(1, 3)), v.segment(1, 3), v.data() + 1, 1, 6);
  check_view(as_view(v.tail(2)), v.tail(2), v.data() + 4, 1, 6);
  STATIC_REQUIRE(is_writable_tensor<decltype(v.head(2))>::value);

  struct derived_matrix : Eigen::MatrixXf {
    using Eigen::MatrixXf::MatrixXf;
  };
  derived_matrix d(2, 3);
  fill_distinct(d);
  check_view(as_view(d), d, d.data(), 1, 2);
  STATIC_REQUIRE(is_writable_tensor<derived_matrix&>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<derived_matrix>::value);  // still an owning temporary
}

TEST_CASE("eigen: transposes have direct access with swapped strides", "[eigen]") {
  Eigen::MatrixXf m(3, 4);
  fill_distinct(m);
  check_view(as_view(m.transpose()), m.transpose(), m.data(), 3, 1);
}

TEST_CASE("eigen: writes through views of Map and Block temporaries reach the matrix", "[eigen]") {
  Eigen::MatrixXf big = Eigen::MatrixXf::Zero(4, 6);
  const auto left = as_view(big.leftCols(3));
  STATIC_REQUIRE(std::is_same<view_type<decltype(left)>, matrix_view<float>>::value);
  for (index_t i = 0; i < left.rows(); ++i)
    for (index_t j = 0; j < left.cols(); ++j) left(i, j) = static_cast<float>(10 * i + j + 1);
  for (Eigen::Index i = 0; i < 4; ++i) {
    for (Eigen::Index j = 0; j < 3; ++j) CHECK(big(i, j) == static_cast<float>(10 * i + j + 1));
    for (Eigen::Index j = 3; j < 6; ++j) CHECK(big(i, j) == 0.0f);
  }

  std::vector<float> buf(12, 0.0f);
  const auto mv = as_view(Eigen::Map<RowMatrixXf>(buf.data(), 3, 4));
  mv(2, 1) = 5.0f;
  CHECK(buf[9] == 5.0f);

  const auto rv = as_view(big.row(1).segment(2, 3));
  rv(0, 2) = -3.0f;
  CHECK(big(1, 4) == -3.0f);
}

TEST_CASE("eigen: const objects give views of const", "[eigen]") {
  Eigen::MatrixXf m(2, 3);
  fill_distinct(m);
  const Eigen::MatrixXf& cm = m;
  const auto v = as_view(cm);
  STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<const float>>::value);
  check_view(v, m, m.data(), 1, 2);

  const Eigen::Map<Eigen::MatrixXf> map(m.data(), 2, 3);
  STATIC_REQUIRE(std::is_same<view_type<decltype(as_view(map))>, matrix_view<const float>>::value);
  STATIC_REQUIRE(
      std::is_same<view_type<decltype(as_view(cm.leftCols(2)))>, matrix_view<const float>>::value);

  const RowArrayXXd a = RowArrayXXd::Ones(2, 2);
  STATIC_REQUIRE(std::is_same<view_type<decltype(as_view(a))>, matrix_view<const double>>::value);
}

TEST_CASE("eigen: what is (writable) tensor-like", "[eigen]") {
  STATIC_REQUIRE(is_tensor_like<Eigen::MatrixXf>::value);
  STATIC_REQUIRE(is_tensor_like<Eigen::ArrayXXd>::value);
  STATIC_REQUIRE(is_tensor_like<Eigen::Map<Eigen::MatrixXf>>::value);
  STATIC_REQUIRE(is_tensor_like<Eigen::Ref<const Eigen::MatrixXf>>::value);
  STATIC_REQUIRE(is_tensor_like<Eigen::Block<Eigen::MatrixXf>>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<std::vector<float>>::value);
  // Expressions without direct access are not tensors (they would have to be evaluated first).
  STATIC_REQUIRE_FALSE(is_tensor_like<decltype(Eigen::MatrixXf() + Eigen::MatrixXf())>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<decltype(Eigen::MatrixXf() * Eigen::MatrixXf())>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<decltype(Eigen::MatrixXf::Zero(2, 2))>::value);

  STATIC_REQUIRE(is_writable_tensor<Eigen::MatrixXf&>::value);
  STATIC_REQUIRE(is_writable_tensor<Eigen::Map<Eigen::MatrixXf>>::value);    // rvalue Map
  STATIC_REQUIRE(is_writable_tensor<Eigen::Block<Eigen::MatrixXf>>::value);  // rvalue Block
  STATIC_REQUIRE(is_writable_tensor<Eigen::Ref<Eigen::MatrixXf>>::value);
  STATIC_REQUIRE(is_writable_tensor<RowArrayXXd&>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<Eigen::MatrixXf>::value);  // owning temporary
  STATIC_REQUIRE_FALSE(is_writable_tensor<Eigen::MatrixXf&&>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<Eigen::ArrayXXf>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<Eigen::Matrix3f>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<const Eigen::MatrixXf&>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<Eigen::Map<const Eigen::MatrixXf>>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<Eigen::Block<const Eigen::MatrixXf>>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<const Eigen::Map<Eigen::MatrixXf>&>::value);

  STATIC_REQUIRE(std::is_same<contrastive::tensor_value_t<Eigen::MatrixXd>, double>::value);
  STATIC_REQUIRE(noexcept(as_view(std::declval<Eigen::MatrixXf&>())));
}
