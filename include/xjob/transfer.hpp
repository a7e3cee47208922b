// Which task results can travel from a worker process back to the caller,
// and how: trivially copyable types as their bytes; everything else through
// cereal's binary archives (the std types cereal knows, xtensor containers,
// and user types with a cereal serialize() or save()/load()). Arguments never
// travel: workers are forked, so they already hold them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

namespace xjob {

// Declares a result type that must never leave the caller's process (a
// handle, a type holding a mutex): parallel calls then accept it, and a
// backend running tasks in worker processes refuses the call at run time
// with xjob::invalid_argument.
//   template <> inline constexpr bool xjob::in_process_only<my_handle> = true;
template <class T>
inline constexpr bool in_process_only = false;

namespace detail {
// Copied as bytes. (GCC counts a class whose copies are all deleted, such as
// std::mutex, as trivially copyable; such a class does not travel.)
template <class T>
inline constexpr bool travels_as_bytes = std::is_trivially_copyable_v<T> && std::is_copy_constructible_v<T>;
}  // namespace detail

// A result that can come back from a worker process. Trivially copyable
// types are copied as bytes (a pointer then still points into the worker's
// copy of memory: fine for memory mapped before the fork, dangling for
// memory the task allocated).
//   struct stats { double mean; std::vector<double> hist;
//                  template <class A> void serialize(A& a) { a(mean, hist); } };
template <class T>
concept transferable =
    detail::travels_as_bytes<T> ||
    (std::is_default_constructible_v<T> && std::is_move_assignable_v<T> &&
     cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
     cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value);

}  // namespace xjob

// 128-bit integers (exact sums of squares and the like) as their bytes, and
// xtensor containers as the shape, then the elements (as one block of bytes
// when they are arithmetic).
namespace cereal {

template <class Archive>
void save(Archive& archive, __int128 const& value) {
  archive(cereal::binary_data(&value, sizeof value));
}
template <class Archive>
void load(Archive& archive, __int128& value) {
  archive(cereal::binary_data(&value, sizeof value));
}
template <class Archive>
void save(Archive& archive, unsigned __int128 const& value) {
  archive(cereal::binary_data(&value, sizeof value));
}
template <class Archive>
void load(Archive& archive, unsigned __int128& value) {
  archive(cereal::binary_data(&value, sizeof value));
}

namespace xjob_detail {
template <class Archive, class Container>
void save_elements(Archive& archive, Container const& a) {
  using value_type = typename Container::value_type;
  if constexpr (std::is_arithmetic_v<value_type>) {
    archive(cereal::binary_data(a.data(), a.size() * sizeof(value_type)));
  } else {
    for (auto const& element : a) archive(element);
  }
}
template <class Archive, class Container>
void load_elements(Archive& archive, Container& a) {
  using value_type = typename Container::value_type;
  if constexpr (std::is_arithmetic_v<value_type>) {
    archive(cereal::binary_data(a.data(), a.size() * sizeof(value_type)));
  } else {
    for (auto& element : a) archive(element);
  }
}
}  // namespace xjob_detail

template <class Archive, class EC, std::size_t N, xt::layout_type L, class Tag>
void save(Archive& archive, xt::xtensor_container<EC, N, L, Tag> const& a) {
  for (std::size_t extent : a.shape()) archive(static_cast<std::uint64_t>(extent));
  xjob_detail::save_elements(archive, a);
}

template <class Archive, class EC, std::size_t N, xt::layout_type L, class Tag>
void load(Archive& archive, xt::xtensor_container<EC, N, L, Tag>& a) {
  std::array<std::size_t, N> shape{};
  for (std::size_t& extent : shape) {
    std::uint64_t value = 0;
    archive(value);
    extent = static_cast<std::size_t>(value);
  }
  a.resize(shape);
  xjob_detail::load_elements(archive, a);
}

template <class Archive, class EC, xt::layout_type L, class SC, class Tag>
void save(Archive& archive, xt::xarray_container<EC, L, SC, Tag> const& a) {
  archive(static_cast<std::uint64_t>(a.dimension()));
  for (std::size_t extent : a.shape()) archive(static_cast<std::uint64_t>(extent));
  xjob_detail::save_elements(archive, a);
}

template <class Archive, class EC, xt::layout_type L, class SC, class Tag>
void load(Archive& archive, xt::xarray_container<EC, L, SC, Tag>& a) {
  std::uint64_t rank = 0;
  archive(rank);
  SC shape;
  shape.resize(static_cast<std::size_t>(rank));
  for (auto& extent : shape) {
    std::uint64_t value = 0;
    archive(value);
    extent = static_cast<typename SC::value_type>(value);
  }
  a.resize(shape);
  xjob_detail::load_elements(archive, a);
}

}  // namespace cereal
