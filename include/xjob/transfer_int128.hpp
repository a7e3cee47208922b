// 128-bit integers (exact sums of squares and the like) as task results,
// arguments and IPC messages: `__int128` and `unsigned __int128` travel as
// their 16 bytes under -std=c++20 and -std=gnu++20 alike. Included by
// <xjob/transfer.hpp>; needs nothing else, throws nothing of its own.
//   auto sums = xjob::parallel(2).map([](int n) { return static_cast<unsigned __int128>(n) * n; }, ns);
//   // a std::pair<int, unsigned __int128> result travels too
#pragma once

#include <xjob/detail/config.hpp>

#include <type_traits>

#include <cereal/cereal.hpp>

namespace cereal {

namespace xjob_detail {
// Under -std=gnu++20 GCC counts __int128 as arithmetic, and cereal's binary
// archives already save every arithmetic type as its bytes: a second
// overload would make the two ambiguous (cereal then reports "could not
// find any output serialization functions"). Under -std=c++20 it is not
// arithmetic, and cereal knows nothing of it: these overloads fill the gap.
template <class T>
concept int128_cereal_lacks = (std::is_same_v<T, __int128> || std::is_same_v<T, unsigned __int128>) &&
                              !std::is_arithmetic_v<T>;
}  // namespace xjob_detail

template <class Archive, xjob_detail::int128_cereal_lacks T>
void save(Archive& archive, T const& value) {
  archive(cereal::binary_data(&value, sizeof value));
}
template <class Archive, xjob_detail::int128_cereal_lacks T>
void load(Archive& archive, T& value) {
  archive(cereal::binary_data(&value, sizeof value));
}

}  // namespace cereal
