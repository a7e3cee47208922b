// How a process_pool map chunk crosses to a worker and back: the item count,
// then the items; the result count, then the results. Private to the process
// layer (templates over the user's types, so a header); process_pool.hpp
// only calls it.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <xjob/detail/remote_call.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>

namespace xjob::detail {

// Appends the arguments of one chunk: the count, then the items.
template <class Item, class Items>
void encode_chunk_arguments(std::string& bytes, Items const& items) {
  std::uint64_t const n = static_cast<std::uint64_t>(std::ranges::size(items));
  bytes.append(reinterpret_cast<char const*>(&n), sizeof n);
  encode_sequence<Item>(bytes, items);
}

// The results of one chunk of a map, as the worker sends them: the count,
// then the values (see encode_sequence).
template <class R>
struct chunk_results {
  using value_type = R;
  std::vector<R> values;
};
template <class T>
inline constexpr bool is_chunk_results_v = false;
template <class R>
inline constexpr bool is_chunk_results_v<chunk_results<R>> = true;

template <class T>
T decode_result(std::string_view bytes) {
  if constexpr (is_chunk_results_v<T>) {
    using R = typename decltype(T::values)::value_type;
    std::uint64_t count = 0;
    if (bytes.size() < sizeof count) throw error("the results of a map chunk arrived malformed");
    std::memcpy(&count, bytes.data(), sizeof count);
    return T{decode_sequence<R>(bytes.substr(sizeof count), static_cast<std::size_t>(count),
                                "the results of a map chunk")};
  } else {
    return decode_value<T>(bytes, "the result of a task");
  }
}

// In a pool worker, a word in memory the pool shares: 1 + the position of
// the item of a map chunk being run (0 before the first), so that the pool
// can name the item whose crash killed the worker. Null elsewhere.
inline std::atomic<std::uint64_t>* chunk_item_note = nullptr;

// Thrown in a worker when an item of a map chunk throws; task_index is the
// item's position in the chunk.
struct chunk_item_failure {
  task_failure failure;
};

// The worker side of a map chunk: `args` holds the item count, then the
// items; each item is passed to f (or unpacked into its arguments when
// `Star`, for starmap), and the results are encoded in order.
template <class F, class Item, bool Star>
void run_remote_chunk(void const* function, std::string_view args, std::string& result) {
  std::uint64_t count = 0;
  if (args.size() < sizeof count) throw error("the arguments of a map chunk arrived malformed");
  std::memcpy(&count, args.data(), sizeof count);
  auto items = decode_sequence<Item>(args.substr(sizeof count), static_cast<std::size_t>(count),
                                     "the arguments of a map chunk");
  auto&& callable = callable_object<F>(function);
  auto call_one = [&](Item& item) -> decltype(auto) {
    if constexpr (Star) {
      return std::apply(callable, item);
    } else {
      return std::invoke(callable, item);
    }
  };
  using R = std::remove_cvref_t<decltype(call_one(items.front()))>;
  std::conditional_t<std::is_void_v<R>, int, std::vector<std::conditional_t<std::is_void_v<R>, int, R>>> out{};
  if constexpr (!std::is_void_v<R>) out.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (chunk_item_note != nullptr) chunk_item_note->store(i + 1, std::memory_order_relaxed);
    try {
      if constexpr (std::is_void_v<R>) {
        call_one(items[i]);
      } else {
        out.push_back(call_one(items[i]));
      }
    } catch (...) {
      throw chunk_item_failure{describe_current_exception(i)};
    }
  }
  // The count, then the results (none for void functions).
  if constexpr (std::is_void_v<R>) {
    std::uint64_t const n = 0;
    result.append(reinterpret_cast<char const*>(&n), sizeof n);
  } else {
    std::uint64_t const n = out.size();
    result.append(reinterpret_cast<char const*>(&n), sizeof n);
    encode_sequence<R>(result, out);
  }
}

template <class F, class Item, bool Star>
struct chunk_result {
  using type = std::invoke_result_t<std::decay_t<F> const&, Item&>;
};
template <class F, class Item>
struct chunk_result<F, Item, true> {
  using type = decltype(std::apply(std::declval<std::decay_t<F> const&>(), std::declval<Item&>()));
};
template <class F, class Item, bool Star>
using chunk_result_t = std::remove_cvref_t<typename chunk_result<F, Item, Star>::type>;
}  // namespace xjob::detail
