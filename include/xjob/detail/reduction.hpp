// The fixed tree of parallel::map_reduce and parallel::reduce_chunks, and
// the task runner that combines its nodes as they come.
//
// The tree depends on the number of leaves alone. Leaf i's value is a left
// fold over its items in order; level 0 holds the leaves, and node j of
// level k+1 combines nodes 2j and 2j+1 of level k (left first), or is node
// 2j itself when that one is the last of its level. So the combinations,
// and their order, are the same whichever worker ran which leaf and
// whenever it finished: the result is bitwise the same on every backend,
// n_jobs and batch size.
//
// A batch of leaves combines the subtrees it covers whole where it ran (in
// a worker process too), and hands on only their roots; the caller's side
// puts them into the tree as their batches are done, combining a node with
// its sibling as soon as both are there. Nothing holds one value per leaf.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <xjob/batch_call.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/transfer.hpp>

namespace xjob::detail {

// The leaves of map_reduce over `count` items: at most this many, so the
// tree and the order of its combinations depend on the count alone.
inline constexpr std::size_t max_reduction_leaves = 4096;

[[nodiscard]] constexpr std::size_t reduction_leaf_items(std::size_t count) noexcept {
  return std::max<std::size_t>(1, (count + max_reduction_leaves - 1) / max_reduction_leaves);
}

// The shape of a tree over `leaves` leaves: how many nodes each level has.
class reduction_tree_shape {
 public:
  explicit reduction_tree_shape(std::size_t leaves) : leaves_(leaves) {
    while ((std::size_t(1) << top_) < leaves_) ++top_;
  }
  [[nodiscard]] std::uint32_t top() const noexcept { return top_; }
  [[nodiscard]] std::size_t nodes_at(std::uint32_t level) const noexcept {
    return (leaves_ + (std::size_t(1) << level) - 1) >> level;
  }
  // A node without a right sibling (the last of its level, at an even
  // index) is its own parent.
  void lift(std::uint32_t& level, std::uint64_t& index) const noexcept {
    while (level < top_ && index % 2 == 0 && index + 1 == nodes_at(level)) {
      ++level;
      index /= 2;
    }
  }

 private:
  std::size_t leaves_;
  std::uint32_t top_ = 0;
};

// Runs leaves as tasks (`leaf(i)` gives leaf i's value) and combines them
// in the tree. Thread-safe as task_runner requires. The call's
// on_batch_done must hand each finished batch to take_batch(); the result
// is then root().
template <class T, class Leaf, class Combine>
class reduction_loop final : public task_runner {
 public:
  reduction_loop(std::size_t leaf_count, Leaf leaf, Combine const& combine)
      : shape_(leaf_count), leaf_(std::move(leaf)), combine_(combine) {}

  batch_outcome run(std::size_t begin, std::size_t end, std::atomic<bool> const& stop,
                    std::atomic<std::size_t>* current_task) noexcept override {
    std::vector<node> roots;
    std::size_t i = begin;
    try {
      for (; i < end && !stop.load(std::memory_order_relaxed); ++i) {
        if (current_task != nullptr) current_task->store(i, std::memory_order_relaxed);
        push(roots, node{0, i, leaf_(i)});
      }
    } catch (...) {
      keep(begin, std::move(roots));
      return {i, describe_current_exception(i)};
    }
    keep(begin, std::move(roots));
    return {i, std::nullopt};
  }

  // A batch's subtree roots travel as: their count, levels and indices,
  // then the values.
  void save_results(std::size_t begin, std::size_t end, std::string& bytes) const override {
    if constexpr (in_process_only<T>) {
      throw error(results_stay_in_process());
    } else {
      save_roots(release(begin, end), bytes);
    }
  }

  [[nodiscard]] bool saving_moves_results() const noexcept override { return true; }

  void load_results(std::size_t begin, std::size_t end, std::string_view bytes) override {
    if constexpr (in_process_only<T>) {
      throw error(results_stay_in_process());
    } else {
      keep(begin, load_roots(begin, end, bytes));
    }
  }

  [[nodiscard]] std::string results_stay_in_process() const override {
    if constexpr (in_process_only<T>)
      return "partial results of a reduction whose type is declared xjob::in_process_only cannot come back from a "
             "worker process; use a backend that runs tasks in the caller's process";
    return {};
  }

  // Puts the subtree roots of the batches run in `done` into the tree,
  // combining each with its sibling if that is there.
  void take_batch(batch_range done) {
    for (node& n : release(done.begin, done.end)) insert(std::move(n));
  }

  // The tree's root, once every leaf was taken; nothing for no leaves.
  [[nodiscard]] std::optional<T> root() {
    std::lock_guard lock(mutex_);
    return std::move(root_);
  }

 private:
  struct node {
    std::uint32_t level = 0;
    std::uint64_t index = 0;
    T value;
  };

  static void save_roots(std::vector<node> const& roots, std::string& bytes) {
    std::uint64_t const count = roots.size();
    bytes.append(reinterpret_cast<char const*>(&count), sizeof count);
    for (node const& n : roots) {
      bytes.append(reinterpret_cast<char const*>(&n.level), sizeof n.level);
      bytes.append(reinterpret_cast<char const*>(&n.index), sizeof n.index);
    }
    encode_sequence<T>(bytes, roots | std::views::transform(&node::value));
  }

  std::vector<node> load_roots(std::size_t begin, std::size_t end, std::string_view bytes) const {
    auto malformed = [&] {
      return error(fmt::format("the partial results of tasks {} to {} came back from their worker malformed ({} bytes)",
                               begin, end - 1, bytes.size()));
    };
    std::uint64_t count = 0;
    constexpr std::size_t position_bytes = sizeof(std::uint32_t) + sizeof(std::uint64_t);
    if (bytes.size() < sizeof count) throw malformed();
    std::memcpy(&count, bytes.data(), sizeof count);
    if (count > end - begin || bytes.size() - sizeof count < count * position_bytes) throw malformed();
    std::vector<node> roots;
    roots.reserve(static_cast<std::size_t>(count));
    std::string_view values = bytes.substr(sizeof count + count * position_bytes);
    std::vector<T> decoded = decode_sequence<T>(values, static_cast<std::size_t>(count), "partial results");
    for (std::size_t k = 0; k < count; ++k) {
      node n{0, 0, std::move(decoded[k])};
      std::memcpy(&n.level, bytes.data() + sizeof count + k * position_bytes, sizeof n.level);
      std::memcpy(&n.index, bytes.data() + sizeof count + k * position_bytes + sizeof n.level, sizeof n.index);
      if (n.level > shape_.top() || n.index >= shape_.nodes_at(n.level)) throw malformed();
      roots.push_back(std::move(n));
    }
    return roots;
  }

  T combine(T&& left, T&& right) const { return static_cast<T>(std::invoke(combine_, std::move(left), std::move(right))); }

  // Adds a node to a batch's roots, which cover the batch's leaves so far
  // in order: it combines with the last root while that is its left sibling.
  void push(std::vector<node>& roots, node n) const {
    for (;;) {
      shape_.lift(n.level, n.index);
      if (n.index % 2 == 0 || roots.empty() || roots.back().level != n.level || roots.back().index + 1 != n.index)
        break;
      node left = std::move(roots.back());
      roots.pop_back();
      n = node{n.level + 1, n.index / 2, combine(std::move(left.value), std::move(n.value))};
    }
    roots.push_back(std::move(n));
  }

  void insert(node n) {
    for (;;) {
      shape_.lift(n.level, n.index);
      std::optional<T> sibling;
      {
        std::lock_guard lock(mutex_);
        if (n.level == shape_.top()) {
          root_.emplace(std::move(n.value));
          return;
        }
        auto found = waiting_.find({n.level, n.index ^ 1});
        if (found == waiting_.end()) {
          waiting_.emplace(std::pair{n.level, n.index}, std::move(n.value));
          return;
        }
        sibling.emplace(std::move(found->second));
        waiting_.erase(found);
      }
      // Combined outside the lock: other batches go on meanwhile.
      T parent = n.index % 2 == 1 ? combine(std::move(*sibling), std::move(n.value))
                                  : combine(std::move(n.value), std::move(*sibling));
      n = node{n.level + 1, n.index / 2, std::move(parent)};
    }
  }

  void keep(std::size_t begin, std::vector<node> roots) {
    if (roots.empty()) return;
    std::lock_guard lock(mutex_);
    batches_.insert_or_assign(begin, std::move(roots));
  }

  // The roots of the batches run within [begin, end), in order (a part of
  // a batch may be run, or reported, as several).
  std::vector<node> release(std::size_t begin, std::size_t end) const {
    std::lock_guard lock(mutex_);
    auto first = batches_.lower_bound(begin);
    auto last = batches_.lower_bound(end);
    if (first == last) return {};
    std::vector<node> roots = std::move(first->second);
    for (auto it = std::next(first); it != last; ++it)
      std::move(it->second.begin(), it->second.end(), std::back_inserter(roots));
    batches_.erase(first, last);
    return roots;
  }

  reduction_tree_shape shape_;
  Leaf leaf_;
  Combine const& combine_;
  mutable std::mutex mutex_;
  // Batches run but not yet taken, by their first leaf.
  mutable std::map<std::size_t, std::vector<node>> batches_;
  // Nodes whose sibling has not come yet, by (level, index).
  std::map<std::pair<std::uint32_t, std::uint64_t>, T> waiting_;
  std::optional<T> root_;
};

// Runs `leaf_count` leaves through `run(runner, leaf_count, take)`, which
// runs the runner's tasks and, on the caller's side, hands each finished
// batch to `take`; returns the root there (nothing in a worker process,
// whose part left with its results).
template <class T, class Leaf, class Combine, class Run>
[[nodiscard]] std::optional<T> reduce_leaves(std::size_t leaf_count, Leaf leaf, Combine const& combine, Run const& run) {
  if (leaf_count == 0) return std::nullopt;
  reduction_loop<T, Leaf, Combine> loop(leaf_count, std::move(leaf), combine);
  run(static_cast<task_runner&>(loop), leaf_count,
      std::function<void(batch_range)>([&loop](batch_range done) { loop.take_batch(done); }));
  return loop.root();
}

// map_reduce's leaves over `count` items, `item_at(i)` giving item i: a left
// fold of f's values from the leaf's first item.
template <class T, class F, class Combine, class ItemAt>
[[nodiscard]] auto map_reduce_leaf(F const& f, Combine const& combine, ItemAt item_at, std::size_t count) {
  std::size_t const per_leaf = reduction_leaf_items(count);
  return [&f, &combine, item_at, count, per_leaf](std::size_t leaf) -> T {
    std::size_t const begin = leaf * per_leaf;
    std::size_t const end = std::min(count, begin + per_leaf);
    T value = static_cast<T>(std::invoke(f, item_at(begin)));
    for (std::size_t i = begin + 1; i < end; ++i)
      value = static_cast<T>(std::invoke(combine, std::move(value), static_cast<T>(std::invoke(f, item_at(i)))));
    return value;
  };
}

[[nodiscard]] constexpr std::size_t map_reduce_leaf_count(std::size_t count) noexcept {
  return (count + reduction_leaf_items(count) - 1) / reduction_leaf_items(count);
}

}  // namespace xjob::detail
