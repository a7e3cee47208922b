// The elements of any input range as a std::vector, for front ends that must
// index or re-read what a user passed as a single-pass range.
#pragma once

#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

namespace xjob::detail {

template <std::ranges::input_range Range>
auto to_vector(Range&& range) {
  std::vector<std::remove_cvref_t<std::ranges::range_reference_t<Range>>> values;
  if constexpr (std::ranges::sized_range<Range>) values.reserve(std::ranges::size(range));
  for (auto&& value : range) values.push_back(std::forward<decltype(value)>(value));
  return values;
}

}  // namespace xjob::detail
