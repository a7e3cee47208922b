// Which task results can travel from a worker process back to the caller,
// and how: trivially copyable types as their bytes; everything else through
// cereal's binary archives (the std types cereal knows, 128-bit integers,
// and user types with a cereal serialize() or save()/load()). xtensor
// containers travel once <xjob/transfer_xtensor.hpp> is included (as
// <xjob/xjob.hpp> and <xjob/map_chunks.hpp> do); this header parses no
// xtensor. Arguments never travel: workers are forked, so they already hold
// them.
#pragma once

#include <xjob/detail/config.hpp>

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
#include <xjob/transfer_int128.hpp>

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
