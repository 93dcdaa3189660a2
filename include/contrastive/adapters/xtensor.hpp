#ifndef CONTRASTIVE_ADAPTERS_XTENSOR_HPP
#define CONTRASTIVE_ADAPTERS_XTENSOR_HPP

// xtensor adapter (optional; not included by the umbrella header). One specialisation covers every
// xtensor expression with a strided data interface, detected by capability rather than by name:
// xt::xtensor, xt::xarray, xt::xtensor_fixed, xt::adapt results, xt::view with ranges,
// xt::strided_view, xt::transpose. Expressions without a data interface (xt::view with
// xt::keep, lazy arithmetic such as `a + b`) are not tensors; evaluate them first.

#include <cstddef>
#include <type_traits>
#include <utility>

// xtensor 0.26 moved its headers into containers/, core/, views/ and utils/.
#if __has_include(<xtensor/containers/xbuffer_adaptor.hpp>)
#  include <xtensor/containers/xbuffer_adaptor.hpp>
#  include <xtensor/core/xexpression.hpp>
#  include <xtensor/core/xlayout.hpp>
#  include <xtensor/utils/xutils.hpp>
#  include <xtensor/views/xstrided_view.hpp>
#  include <xtensor/views/xview.hpp>
#else
#  include <xtensor/xbuffer_adaptor.hpp>
#  include <xtensor/xexpression.hpp>
#  include <xtensor/xlayout.hpp>
#  include <xtensor/xstrided_view.hpp>
#  include <xtensor/xutils.hpp>
#  include <xtensor/xview.hpp>
#endif

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// Two steps, as in the Eigen adapter: the member checks run only on xtensor expressions.
template <class E, class = void>
struct xt_has_data_offset : std::false_type {};
template <class E>
struct xt_has_data_offset<E, std::void_t<decltype(std::declval<const E&>().data_offset())>>
    : std::true_type {};

// data() must point at elements of the expression's value_type; a functor view exposing the
// buffer of another type would otherwise be viewed with the wrong element type.
template <class E, class = void>
struct xt_data_matches_value : std::false_type {};
template <class E>
struct xt_data_matches_value<E, std::void_t<typename E::value_type>>
    : std::is_same<remove_cvref_t<decltype(*std::declval<const E&>().data())>,
                   typename E::value_type> {};

template <class E, bool = xt::is_xexpression<E>::value>
struct is_xtensor_strided : std::false_type {};
template <class E>
struct is_xtensor_strided<E, true>
    : std::conjunction<xt::has_data_interface<E>, xt::has_strides<E>, xt_has_data_offset<E>,
                       xt_data_matches_value<E>> {};

// Is the storage seen through E const (e.g. xt::adapt over a `const std::vector&`, or a view of
// one)? xtensor 0.24 declares a non-const data() there that does not compile (and views call it
// even from their const data()), so such tensors are viewed as const through storage().data().
template <class E, class = void>
struct xt_storage_is_const : std::false_type {};
template <class E>
struct xt_storage_is_const<E, std::void_t<decltype(std::declval<E&>().storage())>>
    : std::is_const<std::remove_reference_t<decltype(std::declval<E&>().storage())>> {};

// Ownership of a closure held by value: a reference, or an xbuffer_adaptor over a plain pointer
// with xt::no_ownership, views memory owned elsewhere; anything else held by value (std::vector,
// xt::uvector, a buffer that acquired ownership or holds a smart pointer) owns it.
template <class A, class = void>
struct xt_is_allocator : std::false_type {};
template <class A>
struct xt_is_allocator<A, std::void_t<decltype(std::declval<A&>().allocate(std::size_t{1}))>>
    : std::true_type {};

// xtensor, xarray, xtensor_fixed (and any other expression not recognised below) own their storage.
template <class E, class = void>
struct xt_owns_storage : std::true_type {};

template <class C>
struct xt_closure_owns
    : std::conditional_t<std::is_reference<C>::value, std::false_type, xt_owns_storage<C>> {};

// Adaptors and xtensor_view expose the closure of their storage as container_closure_type.
template <class E>
struct xt_owns_storage<E, std::void_t<typename E::container_closure_type>>
    : xt_closure_owns<typename E::container_closure_type> {};
template <class CP, class A>
struct xt_owns_storage<xt::xbuffer_adaptor<CP, xt::no_ownership, A>>
    : std::negation<xt_is_allocator<A>> {};
// Views hold their expression by reference when made from an lvalue, by value from an rvalue.
template <class CT, class... S>
struct xt_owns_storage<xt::xview<CT, S...>> : xt_closure_owns<CT> {};
template <class CT, class S, xt::layout_type L, class FST>
struct xt_owns_storage<xt::xstrided_view<CT, S, L, FST>> : xt_closure_owns<CT> {};

}  // namespace detail

/// xtensor expressions with a strided data interface (xt::has_data_interface and xt::has_strides).
/// The view starts at data() + data_offset(); xtensor strides are already in elements. xtensor
/// gives stride 0 to dimensions of extent 1; those are replaced by the stride a contiguous tensor
/// of the same layout would have, so a (1, n) row-major tensor is viewed exactly as
/// make_view(p, 1, n). Only 2-D expressions are accepted (checked at run time, throwing
/// contrastive::invalid_argument).
template <class E>
struct tensor_traits<E, std::enable_if_t<detail::is_xtensor_strided<E>::value>> {
  template <class Obj>
  static auto make(Obj& e) {
    constexpr bool const_storage = detail::xt_storage_is_const<remove_cvref_t<Obj>>::value;
    using value_type = typename E::value_type;
    using element = std::conditional_t<std::is_const<Obj>::value || const_storage, const value_type,
                                       value_type>;
    CONTRASTIVE_CHECK(e.dimension() == 2, "as_view: xtensor expression has ", e.dimension(),
                      " dimensions, expected 2");
    element* base;
    if constexpr (const_storage) {
      base = std::as_const(e).storage().data();  // data() itself does not compile there
    } else {
      base = e.data();
    }
    const auto& shape = e.shape();
    const auto& strides = e.strides();
    const auto rows = static_cast<index_t>(shape[0]);
    const auto cols = static_cast<index_t>(shape[1]);
    auto rs = static_cast<index_t>(strides[0]);
    auto cs = static_cast<index_t>(strides[1]);
    if (e.layout() == xt::layout_type::column_major) {
      if (rows == 1 && rs == 0) rs = 1;
      if (cols == 1 && cs == 0) cs = rows * rs;
    } else {
      if (cols == 1 && cs == 0) cs = 1;
      if (rows == 1 && rs == 0) rs = cols * cs;
    }
    return matrix_view<element>(base + e.data_offset(), rows, cols, rs, cs);
  }

  static auto view(E& e) { return make(e); }
  static auto view(const E& e) { return make(e); }
  /// Adaptors over external memory and views of lvalues view memory that outlives them: allowed.
  template <class U = E, std::enable_if_t<!detail::xt_owns_storage<U>::value, int> = 0>
  static auto view(E&& e) {
    return make(e);
  }
  /// An owning temporary (xt::xtensor, xt::xarray, a view of one) would dangle: rejected.
  template <class U = E, std::enable_if_t<detail::xt_owns_storage<U>::value, int> = 0>
  static void view(E&& e) = delete;
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_ADAPTERS_XTENSOR_HPP
