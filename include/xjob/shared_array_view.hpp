// shared_array<T>::view(): the array as an xtensor adaptor over its mapped
// memory (no copy), with a dynamic rank or, as view<N>(), a fixed rank N.
// This is the part of shared_array that parses xtensor; <xjob/xjob.hpp> and
// <xjob/map_chunks.hpp> include it. The adaptor is valid while the array
// lives; it may be read concurrently and written concurrently at disjoint
// elements, like the array.
//   #include <xjob/shared_array_view.hpp>
//   xjob::shared_array<double> a({1000, 3});
//   auto v = a.view<2>();  v(2, 1) = 4.0;  double s = xt::sum(v)();
#pragma once

#include <xjob/detail/config.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>

#include <xtensor/xadapt.hpp>

#include <xjob/shared_array.hpp>

namespace xjob::detail {

template <class T>
[[nodiscard]] auto make_xtensor_view(xtensor_view_hook, shared_array<T> const& array) {
  return xt::adapt(array.data(), array.size(), xt::no_ownership(), array.shape());
}

// The rank was checked by view<N>().
template <class T, std::size_t N>
[[nodiscard]] auto make_xtensor_view(xtensor_view_hook, shared_array<T> const& array,
                                     std::integral_constant<std::size_t, N>) {
  std::array<std::size_t, N> fixed{};
  std::copy(array.shape().begin(), array.shape().end(), fixed.begin());
  return xt::adapt(array.data(), array.size(), xt::no_ownership(), fixed);
}

}  // namespace xjob::detail
