// The elements of any input range as a std::vector, for front ends that must
// index or re-read what a user passed as a single-pass range.
#pragma once

#include <cstddef>
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

// The `count` elements of `items`, each converted to Item (what a call
// sends warm workers: its items as the task's parameter type).
template <class Item, class Items>
std::vector<Item> items_as(Items& items, std::size_t count) {
  std::vector<Item> copies;
  copies.reserve(count);
  for (auto&& item : items) copies.push_back(item);
  return copies;
}

}  // namespace xjob::detail
