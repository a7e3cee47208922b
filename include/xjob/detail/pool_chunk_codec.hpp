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

// How a pool worker runs the map chunk it was given; set by the worker
// around each task, left as is elsewhere.
struct chunk_run_settings {
  // A word the pool shares: 1 + the position of the item being run (0
  // before the first), so that the pool can name the item whose crash or
  // timeout killed the worker, and resume the chunk there.
  std::atomic<std::uint64_t>* note = nullptr;
  // Items before this one finished in an earlier attempt (retries).
  std::size_t first_item = 0;
  // With retries: sends one item's encoded result (encode_sequence of one
  // value) as soon as it is known, so that a crash loses no finished item;
  // false if the pool is gone. Null: results go back with the chunk.
  bool (*send_item)(std::string_view encoded) = nullptr;
};
inline chunk_run_settings chunk_run;

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
  if constexpr (!std::is_void_v<R>)
    if (chunk_run.send_item == nullptr) out.reserve(items.size());
  std::string encoded;
  for (std::size_t i = chunk_run.first_item; i < items.size(); ++i) {
    if (chunk_run.note != nullptr) chunk_run.note->store(i + 1, std::memory_order_relaxed);
    try {
      if constexpr (std::is_void_v<R>) {
        call_one(items[i]);
      } else if (chunk_run.send_item != nullptr) {
        R value = call_one(items[i]);
        encoded.clear();
        encode_sequence<R>(encoded, std::ranges::single_view<R>(std::move(value)));
      } else {
        out.push_back(call_one(items[i]));
      }
    } catch (...) {
      throw chunk_item_failure{describe_current_exception(i)};
    }
    if constexpr (!std::is_void_v<R>)
      if (chunk_run.send_item != nullptr && !chunk_run.send_item(encoded))
        throw error("the process pool went away while its map ran");
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
