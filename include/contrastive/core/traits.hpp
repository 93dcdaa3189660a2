#ifndef CONTRASTIVE_CORE_TRAITS_HPP
#define CONTRASTIVE_CORE_TRAITS_HPP

#include <type_traits>
#include <utility>

#include "contrastive/core/config.hpp"
#include "contrastive/core/matrix_view.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Customisation point: specialise with static `view(T&)` and `view(const T&)` returning a
/// matrix_view. The primary template is undefined, which means "not a tensor".
template <class T, class Enable = void>
struct tensor_traits;

/// Views are tensors of themselves.
template <class T, class Space>
struct tensor_traits<matrix_view<T, Space>> {
  static constexpr matrix_view<T, Space> view(const matrix_view<T, Space>& v) noexcept { return v; }
};

namespace detail {
struct as_view_fn {
  template <class T>
  constexpr auto operator()(T&& t) const
      noexcept(noexcept(tensor_traits<remove_cvref_t<T>>::view(std::forward<T>(t))))
          -> decltype(tensor_traits<remove_cvref_t<T>>::view(std::forward<T>(t))) {
    return tensor_traits<remove_cvref_t<T>>::view(std::forward<T>(t));
  }
};
}  // namespace detail

/// as_view(x): the matrix_view of any supported tensor (a function object, so it is not found
/// by ADL and cannot be hijacked).
inline constexpr detail::as_view_fn as_view{};

/// The view type as_view gives for an expression of type T (T may be a reference type).
template <class T>
using view_t = decltype(as_view(std::declval<T>()));

template <class T, class = void>
struct is_tensor_like : std::false_type {};
template <class T>
struct is_tensor_like<T, std::void_t<decltype(as_view(std::declval<const T&>()))>>
    : std::true_type {};

/// A tensor whose view (from the expression type T, e.g. `M&` or a Map temporary) is writable.
template <class T, class = void>
struct is_writable_tensor : std::false_type {};
template <class T>
struct is_writable_tensor<T, std::void_t<decltype(as_view(std::declval<T>()))>>
    : std::bool_constant<!std::is_const<typename view_t<T>::element_type>::value> {};

/// Element type of a tensor (without const).
template <class T>
using tensor_value_t =
    typename decltype(as_view(std::declval<const remove_cvref_t<T>&>()))::value_type;

namespace detail {

/// The element-type check of a public function: every view in Views (as returned by as_view,
/// input_view or output_view) has element type T. A compile-time check only.
template <class T, class... Views>
constexpr void require_same_value_type() noexcept {
  static_assert((std::is_same<T, typename Views::value_type>::value && ...),
                "contrastive: the tensor arguments (inputs, gradients, noise, saved state) must "
                "share one element type");
}

}  // namespace detail

#if CONTRASTIVE_HAS_CONCEPTS
template <class T>
concept tensor_like = is_tensor_like<remove_cvref_t<T>>::value;
template <class T>
concept writable_tensor = is_writable_tensor<T>::value;
#endif

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_TRAITS_HPP
