#ifndef CONTRASTIVE_ADAPTERS_EIGEN_HPP
#define CONTRASTIVE_ADAPTERS_EIGEN_HPP

#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "contrastive/core/config.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// Derived-to-base deduction rather than is_base_of<DenseBase<M>, M>: some Eigen classes inherit
// the CRTP base of another (VectorBlock, what head/tail/segment return, derives from
// DenseBase<Block<...>>), as do user classes derived from Eigen::Matrix.
template <class D>
std::true_type eigen_dense_test(const Eigen::DenseBase<D>*);
std::false_type eigen_dense_test(...);
template <class D>
std::true_type eigen_plain_test(const Eigen::PlainObjectBase<D>*);
std::false_type eigen_plain_test(...);

// Two steps, because `M::Flags` is a hard error for non-Eigen types (traits do not short-circuit).
template <class M>
struct is_eigen_dense : decltype(eigen_dense_test(std::declval<M*>())) {};

template <class M, bool = is_eigen_dense<M>::value>
struct is_eigen_direct : std::false_type {};
template <class M>
struct is_eigen_direct<M, true>
    : std::bool_constant<(static_cast<unsigned>(M::Flags) & Eigen::DirectAccessBit) != 0> {};

// Matrix and Array own their storage; Map, Ref and Block do not.
template <class M>
struct eigen_owns_storage : decltype(eigen_plain_test(std::declval<M*>())) {};

}  // namespace detail

/// Eigen dense expressions with direct access: Matrix, Array, Map, Ref, Block (any storage order).
template <class M>
struct tensor_traits<M, std::enable_if_t<detail::is_eigen_direct<M>::value>> {
  template <class Obj>
  static auto make(Obj& m) noexcept {
    using E = std::remove_pointer_t<decltype(m.data())>;
    return matrix_view<E>(m.data(), static_cast<index_t>(m.rows()), static_cast<index_t>(m.cols()),
                          static_cast<index_t>(m.rowStride()), static_cast<index_t>(m.colStride()));
  }
  static auto view(M& m) noexcept { return make(m); }
  static auto view(const M& m) noexcept { return make(m); }
  /// Map / Block / Ref temporaries view memory that outlives them: allowed (and writable).
  template <class U = M, std::enable_if_t<!detail::eigen_owns_storage<U>::value, int> = 0>
  static auto view(M&& m) noexcept {
    return make(m);
  }
  /// An owning temporary (e.g. `Eigen::MatrixXf{}` as an output) would dangle: rejected.
  template <class U = M, std::enable_if_t<detail::eigen_owns_storage<U>::value, int> = 0>
  static void view(M&& m) = delete;
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_ADAPTERS_EIGEN_HPP
