#include "support/test_config.hpp"

#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "contrastive/adapters/raw.hpp"
#include "contrastive/adapters/xtensor.hpp"

#if __has_include(<xtensor/containers/xadapt.hpp>)  // xtensor >= 0.26
#  include <xtensor/containers/xadapt.hpp>
#  include <xtensor/containers/xarray.hpp>
#  include <xtensor/containers/xfixed.hpp>
#  include <xtensor/containers/xtensor.hpp>
#  include <xtensor/generators/xbuilder.hpp>
#  include <xtensor/misc/xmanipulation.hpp>
#else
#  include <xtensor/xadapt.hpp>
#  include <xtensor/xarray.hpp>
#  include <xtensor/xbuilder.hpp>
#  include <xtensor/xfixed.hpp>
#  include <xtensor/xmanipulation.hpp>
#  include <xtensor/xtensor.hpp>
#endif

using contrastive::as_view;
using contrastive::index_t;
using contrastive::is_tensor_like;
using contrastive::is_writable_tensor;
using contrastive::matrix_view;

namespace {

using tensor_f = xt::xtensor<float, 2>;
using tensor_cm = xt::xtensor<float, 2, xt::layout_type::column_major>;
using shape2 = std::array<std::size_t, 2>;

template <class T>
using view_type = std::remove_const_t<T>;

template <class E>
void fill_distinct(E& e) {
  for (std::size_t i = 0; i < e.shape()[0]; ++i)
    for (std::size_t j = 0; j < e.shape()[1]; ++j)
      e(i, j) = static_cast<typename E::value_type>(100 * i + j + 1);
}

// Shape, strides and data pointer as given, and every element equal to the expression's.
template <class V, class E>
void check_view(const V& v, const E& expr, const void* data, index_t row_stride,
                index_t col_stride) {
  CHECK(static_cast<const void*>(v.data()) == data);
  REQUIRE(v.rows() == static_cast<index_t>(expr.shape()[0]));
  REQUIRE(v.cols() == static_cast<index_t>(expr.shape()[1]));
  CHECK(v.row_stride() == row_stride);
  CHECK(v.col_stride() == col_stride);
  for (index_t i = 0; i < v.rows(); ++i)
    for (index_t j = 0; j < v.cols(); ++j)
      CHECK(v(i, j) == expr(static_cast<std::size_t>(i), static_cast<std::size_t>(j)));
}

}  // namespace

TEMPLATE_TEST_CASE("xtensor: row-major xtensor", "[xtensor]", float, double) {
  xt::xtensor<TestType, 2> t = xt::zeros<TestType>({3, 5});
  fill_distinct(t);
  const auto v = as_view(t);
  STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<TestType>>::value);
  check_view(v, t, t.data(), 5, 1);
  CHECK(v.is_row_major_contiguous());
}

TEST_CASE("xtensor: column-major xtensor", "[xtensor]") {
  tensor_cm t = xt::zeros<float>({3, 5});
  fill_distinct(t);
  check_view(as_view(t), t, t.data(), 1, 3);
}

TEST_CASE("xtensor: xarray and xtensor_fixed", "[xtensor]") {
  xt::xarray<double> a = xt::zeros<double>({4, 2});
  fill_distinct(a);
  const auto v = as_view(a);
  STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<double>>::value);
  check_view(v, a, a.data(), 2, 1);

  xt::xarray<float, xt::layout_type::column_major> c = xt::zeros<float>({4, 2});
  fill_distinct(c);
  check_view(as_view(c), c, c.data(), 1, 4);

  xt::xtensor_fixed<float, xt::xshape<2, 3>> f;
  fill_distinct(f);
  check_view(as_view(f), f, f.data(), 3, 1);
}

TEST_CASE("xtensor: dimensions of extent 1 get the strides of a contiguous tensor", "[xtensor]") {
  // xtensor 0.24 itself reports stride 0 for these dimensions.
  tensor_f row = xt::zeros<float>({1, 4});
  check_view(as_view(row), row, row.data(), 4, 1);

  tensor_f col = xt::zeros<float>({4, 1});
  check_view(as_view(col), col, col.data(), 1, 1);

  tensor_cm ccol = xt::zeros<float>({4, 1});
  check_view(as_view(ccol), ccol, ccol.data(), 1, 4);
  tensor_cm crow = xt::zeros<float>({1, 4});
  check_view(as_view(crow), crow, crow.data(), 1, 1);

  // The same views make_view builds for that memory.
  const auto expect_row = contrastive::make_view(row.data(), 1, 4);
  CHECK(as_view(row).row_stride() == expect_row.row_stride());
  const auto expect_col = contrastive::make_view(col.data(), 4, 1);
  CHECK(as_view(col).col_stride() == expect_col.col_stride());
}

TEST_CASE("xtensor: xt::adapt over external memory", "[xtensor]") {
  std::vector<float> buf(12);
  for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = static_cast<float>(k);

  SECTION("adapt(pointer, size, no_ownership, shape)") {
    auto a = xt::adapt(buf.data(), buf.size(), xt::no_ownership(), shape2{3, 4});
    check_view(as_view(a), a, buf.data(), 4, 1);
  }
  SECTION("adapt(pointer, shape) as a temporary, written through") {
    const auto v = as_view(xt::adapt(buf.data(), shape2{4, 3}));
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<float>>::value);
    CHECK(v.data() == buf.data());
    CHECK(v.row_stride() == 3);
    v(3, 2) = -1.0f;
    CHECK(buf[11] == -1.0f);
  }
  SECTION("adapt(vector&, shape) in column-major order") {
    auto a = xt::adapt<xt::layout_type::column_major>(buf, shape2{3, 4});
    check_view(as_view(a), a, buf.data(), 1, 3);
    as_view(xt::adapt(buf, shape2{2, 6}))(1, 0) = -2.0f;
    CHECK(buf[6] == -2.0f);
  }
  SECTION("adapt with explicit strides") {
    // xtensor wants the size to be the number of elements (2 * 3), whatever the strides.
    auto a = xt::adapt(buf.data(), std::size_t{6}, xt::no_ownership(), shape2{2, 3},
                       std::array<std::ptrdiff_t, 2>{6, 2});
    check_view(as_view(a), a, buf.data(), 6, 2);
  }
  SECTION("adapt over a const vector gives a view of const") {
    const std::vector<float>& cbuf = buf;
    auto a = xt::adapt(cbuf, shape2{3, 4});
    const auto v = as_view(a);
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<const float>>::value);
    check_view(v, a, buf.data(), 4, 1);
    const auto w = as_view(xt::view(a, xt::all(), xt::range(1, 3)));
    STATIC_REQUIRE(std::is_same<view_type<decltype(w)>, matrix_view<const float>>::value);
    CHECK(w.data() == buf.data() + 1);
  }
}

TEST_CASE("xtensor: views with ranges", "[xtensor]") {
  tensor_f m = xt::zeros<float>({5, 4});
  fill_distinct(m);

  SECTION("a range of rows") {
    auto v = xt::view(m, xt::range(1, 3), xt::all());
    check_view(as_view(v), v, &m(1, 0), 4, 1);
  }
  SECTION("a range of columns") {
    auto v = xt::view(m, xt::all(), xt::range(1, 3));
    check_view(as_view(v), v, &m(0, 1), 4, 1);
  }
  SECTION("stepped ranges") {
    auto v = xt::view(m, xt::range(1, 5, 2), xt::range(0, 4, 3));
    check_view(as_view(v), v, &m(1, 0), 8, 3);
  }
  SECTION("a single column keeps the column stride of a contiguous tensor") {
    auto v = xt::view(m, xt::all(), xt::range(2, 3));
    check_view(as_view(v), v, &m(0, 2), 4, 1);
  }
  SECTION("writes through a view temporary reach the tensor") {
    const auto v = as_view(xt::view(m, xt::range(2, 4), xt::range(1, 3)));
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<float>>::value);
    v(1, 1) = -5.0f;
    CHECK(m(3, 2) == -5.0f);
  }
  SECTION("a view of a const tensor gives a view of const") {
    const tensor_f& cm = m;
    const auto v = as_view(xt::view(cm, xt::range(1, 3), xt::all()));
    STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<const float>>::value);
    CHECK(v.data() == &m(1, 0));
  }
}

TEST_CASE("xtensor: transposes and strided views", "[xtensor]") {
  tensor_f m = xt::zeros<float>({3, 4});
  fill_distinct(m);

  auto t = xt::transpose(m);
  check_view(as_view(t), t, m.data(), 1, 4);
  as_view(xt::transpose(m))(3, 0) = -1.0f;
  CHECK(m(0, 3) == -1.0f);

  auto s = xt::strided_view(m, {xt::range(1, 3), xt::range(0, 4, 2)});
  check_view(as_view(s), s, &m(1, 0), 4, 2);

  tensor_cm c = xt::zeros<float>({3, 4});
  fill_distinct(c);
  auto ct = xt::transpose(c);
  check_view(as_view(ct), ct, c.data(), 3, 1);
}

TEST_CASE("xtensor: const tensors give views of const", "[xtensor]") {
  const tensor_f m = xt::ones<float>({2, 3});
  const auto v = as_view(m);
  STATIC_REQUIRE(std::is_same<view_type<decltype(v)>, matrix_view<const float>>::value);
  check_view(v, m, m.data(), 3, 1);
}

TEST_CASE("xtensor: only 2-D expressions can be viewed", "[xtensor]") {
  xt::xarray<double> a3 = xt::zeros<double>({2, 3, 4});
  REQUIRE_THROWS_AS(as_view(a3), contrastive::invalid_argument);
  REQUIRE_THROWS_WITH(as_view(a3), Catch::Contains("3 dimensions, expected 2"));
  xt::xtensor<float, 1> t1 = xt::zeros<float>({4});
  REQUIRE_THROWS_AS(as_view(t1), contrastive::invalid_argument);
  xt::xarray<float> a2 = xt::zeros<float>({2, 3});
  REQUIRE_NOTHROW(as_view(a2));
}

TEST_CASE("xtensor: what is (writable) tensor-like", "[xtensor]") {
  using rvalue_view = decltype(xt::view(std::declval<tensor_f>(), xt::all(), xt::all()));
  using lvalue_view = decltype(xt::view(std::declval<tensor_f&>(), xt::all(), xt::all()));
  using pointer_adaptor =
      decltype(xt::adapt(std::declval<float*>(), std::size_t{4}, xt::no_ownership(), shape2{}));
  using owning_pointer_adaptor = decltype(xt::adapt(std::declval<float*>(), std::size_t{4},
                                                    xt::acquire_ownership(), shape2{}));
  using vector_ref_adaptor = decltype(xt::adapt(std::declval<std::vector<float>&>(), shape2{}));
  using vector_owning_adaptor = decltype(xt::adapt(std::declval<std::vector<float>>(), shape2{}));
  using lvalue_transpose = decltype(xt::transpose(std::declval<tensor_f&>()));
  using rvalue_transpose = decltype(xt::transpose(std::declval<tensor_f>()));

  STATIC_REQUIRE(is_tensor_like<tensor_f>::value);
  STATIC_REQUIRE(is_tensor_like<xt::xarray<float>>::value);
  STATIC_REQUIRE(is_tensor_like<rvalue_view>::value);  // as a (const) lvalue it may be viewed
  STATIC_REQUIRE_FALSE(is_tensor_like<std::vector<float>>::value);
  // No data interface: lazy arithmetic, non-strided views.
  STATIC_REQUIRE_FALSE(
      is_tensor_like<decltype(std::declval<tensor_f&>() + std::declval<tensor_f&>())>::value);
  STATIC_REQUIRE_FALSE(is_tensor_like<decltype(xt::view(std::declval<tensor_f&>(), xt::keep(0, 2),
                                                        xt::all()))>::value);

  STATIC_REQUIRE(is_writable_tensor<tensor_f&>::value);
  STATIC_REQUIRE(is_writable_tensor<xt::xarray<double>&>::value);
  STATIC_REQUIRE(is_writable_tensor<lvalue_view>::value);
  STATIC_REQUIRE(is_writable_tensor<pointer_adaptor>::value);
  STATIC_REQUIRE(is_writable_tensor<vector_ref_adaptor>::value);
  STATIC_REQUIRE(is_writable_tensor<lvalue_transpose>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<tensor_f>::value);  // owning temporaries
  STATIC_REQUIRE_FALSE(is_writable_tensor<xt::xarray<float>>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<xt::xtensor_fixed<float, xt::xshape<2, 2>>>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<rvalue_view>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<rvalue_transpose>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<owning_pointer_adaptor>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<vector_owning_adaptor>::value);
  STATIC_REQUIRE_FALSE(is_writable_tensor<const tensor_f&>::value);
  STATIC_REQUIRE(is_writable_tensor<owning_pointer_adaptor&>::value);  // lvalues are fine
}

TEST_CASE("xtensor: views equal the raw view of the same memory", "[xtensor]") {
  tensor_f m = xt::zeros<float>({6, 5});
  const auto a = as_view(xt::view(m, xt::range(1, 5), xt::range(2, 5)));
  const auto b = contrastive::make_view(m.data() + 7, 4, 3, 5, 1);
  CHECK(a.data() == b.data());
  CHECK(a.rows() == b.rows());
  CHECK(a.cols() == b.cols());
  CHECK(a.row_stride() == b.row_stride());
  CHECK(a.col_stride() == b.col_stride());
}

#include "contrastive/adapters/eigen.hpp"
#include "contrastive/losses/info_nce.hpp"
#include "contrastive/losses/nt_xent.hpp"

TEST_CASE("xtensor, Eigen and raw inputs give bitwise identical losses and gradients",
          "[xtensor][info_nce]") {
  const std::size_t n = 29, d = 7;
  xt::xtensor<float, 2> a = xt::zeros<float>({n, d}), b = xt::zeros<float>({n, d});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) {
      a(i, j) = static_cast<float>(std::sin(0.37 * double(i * d + j)));
      b(i, j) = static_cast<float>(std::cos(0.21 * double(i * d + j) + 0.5));
    }
  contrastive::info_nce_options o;
  o.temperature = 0.3;
  o.tile_rows = 8;
  o.tile_cols = 5;
  // Raw memory.
  std::vector<float> gar(n * d), gbr(n * d);
  const auto va =
      contrastive::make_view(static_cast<const float*>(a.data()), index_t(n), index_t(d));
  const auto vb =
      contrastive::make_view(static_cast<const float*>(b.data()), index_t(n), index_t(d));
  const float raw = contrastive::info_nce_forward_backward(
      va, vb, contrastive::make_view(gar.data(), index_t(n), index_t(d)),
      contrastive::make_view(gbr.data(), index_t(n), index_t(d)), o);
  // xtensor (row-major containers and a column-major copy).
  xt::xtensor<float, 2> gax = xt::zeros<float>({n, d}), gbx = xt::zeros<float>({n, d});
  CHECK(contrastive::info_nce_forward_backward(a, b, gax, gbx, o) == raw);
  xt::xtensor<float, 2, xt::layout_type::column_major> ac = a, bc = b;
  xt::xtensor<float, 2, xt::layout_type::column_major> gac = xt::zeros<float>({n, d}),
                                                       gbc = xt::zeros<float>({n, d});
  CHECK(contrastive::info_nce_forward_backward(ac, bc, gac, gbc, o) == raw);
  // Eigen.
  using emat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const emat ae = Eigen::Map<const emat>(a.data(), index_t(n), index_t(d));
  const emat be = Eigen::Map<const emat>(b.data(), index_t(n), index_t(d));
  emat gae(n, d), gbe(n, d);
  CHECK(contrastive::info_nce_forward_backward(ae, be, gae, gbe, o) == raw);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) {
      CHECK(gax(i, j) == gar[i * d + j]);
      CHECK(gac(i, j) == gar[i * d + j]);
      CHECK(gae(index_t(i), index_t(j)) == gar[i * d + j]);
      CHECK(gbx(i, j) == gbr[i * d + j]);
    }
  // NT-Xent through an xt::view pair of halves of one 2N x D tensor.
  xt::xtensor<float, 2> z = xt::concatenate(xt::xtuple(a, b), 0);
  xt::xtensor<float, 2> gz = xt::zeros<float>({2 * n, d});
  contrastive::nt_xent_options no;
  const float nz = contrastive::nt_xent_forward_backward(
      xt::view(z, xt::range(0, n), xt::all()), xt::view(z, xt::range(n, 2 * n), xt::all()),
      xt::view(gz, xt::range(0, n), xt::all()), xt::view(gz, xt::range(n, 2 * n), xt::all()), no);
  xt::xtensor<float, 2> ga2 = xt::zeros<float>({n, d}), gb2 = xt::zeros<float>({n, d});
  CHECK(contrastive::nt_xent_forward_backward(a, b, ga2, gb2, no) == nz);
  CHECK(gz(3, 2) == ga2(3, 2));
  CHECK(gz(n + 4, 1) == gb2(4, 1));
}
