// Result streams: the results of a parallel call as they complete, for
// joblib's return_as="generator" (in input order) and
// "generator_unordered" (in completion order). The call runs in the
// background while the caller consumes; dropping the stream early cancels
// the tasks that have not started.
#pragma once

#include <xjob/detail/config.hpp>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <xjob/batch_call.hpp>
#include <xjob/errors.hpp>

namespace xjob {

// Tags choosing what a parallel call returns.
struct return_as_generator_t {
  explicit return_as_generator_t() = default;
};
struct return_as_generator_unordered_t {
  explicit return_as_generator_unordered_t() = default;
};
// Results in input order, each as soon as it and those before it are done.
inline constexpr return_as_generator_t return_as_generator{};
// Results in the order they complete, each with its task index.
inline constexpr return_as_generator_unordered_t return_as_generator_unordered{};

// One result of an unordered stream.
template <class R>
struct completed {
  std::size_t index;
  R value;
};

namespace detail {

// What a stream shares with the thread that runs its call.
template <class R>
class stream_state {
 public:
  explicit stream_state(std::size_t count) : slots_(count), ready_(count, 0) {}
  stream_state(stream_state const&) = delete;
  stream_state& operator=(stream_state const&) = delete;

  ~stream_state() {
    if (call_) call_->cancel();
    if (thread_.joinable()) thread_.join();
  }

  std::vector<std::optional<R>>& slots() noexcept { return slots_; }

  // Starts `run` (which runs `call` to the end) on a thread of its own.
  template <class Run>
  void start(std::unique_ptr<batch_call> call, std::shared_ptr<void> keep_alive, Run run) {
    call_ = std::move(call);
    keep_alive_ = std::move(keep_alive);
    thread_ = std::thread([this, run = std::move(run)]() mutable {
      std::exception_ptr backend_error;
      try {
        run(*call_);
      } catch (...) {
        backend_error = std::current_exception();
      }
      std::lock_guard lock(mutex_);
      backend_error_ = backend_error;
      finished_ = true;
      changed_.notify_all();
    });
  }

  void batch_done(batch_range done) {
    std::lock_guard lock(mutex_);
    completions_.push_back(done);
    changed_.notify_all();
  }

  // Blocks until task `index` is done; false if it never will be (the call
  // failed), after which rethrow() explains why.
  bool wait_for(std::size_t index) {
    std::unique_lock lock(mutex_);
    for (;;) {
      drain_completions();
      if (ready_[index]) return true;
      if (finished_) return false;
      changed_.wait(lock);
    }
  }

  // Blocks until some task not yet taken is done; nullopt once none is left.
  std::optional<std::size_t> wait_for_any() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!completions_.empty()) {
        batch_range& front = completions_.front();
        std::size_t const index = front.begin++;
        if (front.empty()) completions_.pop_front();
        return index;
      }
      if (finished_) return std::nullopt;
      changed_.wait(lock);
    }
  }

  // Throws why the call ended without every result: a backend error or the
  // first failed task. Returns only if the call succeeded.
  void rethrow() const {
    if (backend_error_) std::rethrow_exception(backend_error_);
    call_->rethrow_if_failed();
  }

 private:
  void drain_completions() {
    for (batch_range const& r : completions_)
      for (std::size_t i = r.begin; i < r.end; ++i) ready_[i] = 1;
    completions_.clear();
  }

  std::vector<std::optional<R>> slots_;
  std::vector<char> ready_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<batch_range> completions_;
  bool finished_ = false;
  std::exception_ptr backend_error_;
  std::unique_ptr<batch_call> call_;
  std::shared_ptr<void> keep_alive_;  // the tasks and backend the call uses
  std::thread thread_;
};

}  // namespace detail

// Results in input order. An input range, iterated once; move-only.
// Iterating blocks until the next result is ready; a failed task throws
// xjob::task_error when the stream reaches it. Destroying the stream before
// the end cancels the rest and waits for running tasks.
//   for (int sq : par.map([](int i) { return i * i; }, std::views::iota(0, 20),
//                         xjob::return_as_generator))
//     std::cout << sq << "\n";
template <class R>
class ordered_results {
 public:
  explicit ordered_results(std::unique_ptr<detail::stream_state<R>> state) : state_(std::move(state)) {}

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    R operator*() const { return std::move(*owner_->state_->slots()[index_]); }
    iterator& operator++() {
      ++index_;
      owner_->settle(index_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(iterator const& it, std::default_sentinel_t) noexcept { return it.at_end(); }

   private:
    [[nodiscard]] bool at_end() const noexcept { return owner_->state_->slots().size() <= index_; }
    friend class ordered_results;
    explicit iterator(ordered_results* owner) : owner_(owner) {}
    ordered_results* owner_ = nullptr;
    std::size_t index_ = 0;
  };

  [[nodiscard]] iterator begin() {
    settle(0);
    return iterator(this);
  }
  [[nodiscard]] std::default_sentinel_t end() const noexcept { return {}; }
  [[nodiscard]] std::size_t size() const noexcept { return state_->slots().size(); }

 private:
  void settle(std::size_t index) {
    if (index >= state_->slots().size() || state_->wait_for(index)) return;
    state_->rethrow();
    // The call succeeded without this task's result: its backend never ran it.
    throw error("the call ended without the result of task " + std::to_string(index) +
                ": its backend did not run it (see the conformance suite, xjob/testing/conformance.hpp)");
  }
  std::unique_ptr<detail::stream_state<R>> state_;
};

// Results in completion order, each as completed<R>{index, value}. Same
// rules as ordered_results.
//   for (auto [i, value] : par(calls, xjob::return_as_generator_unordered))
//     store(i, value);
template <class R>
class unordered_results {
 public:
  explicit unordered_results(std::unique_ptr<detail::stream_state<R>> state) : state_(std::move(state)) {}

  class iterator {
   public:
    using value_type = completed<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    completed<R> operator*() const {
      return completed<R>{*owner_->current_, std::move(*owner_->state_->slots()[*owner_->current_])};
    }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(iterator const& it, std::default_sentinel_t) noexcept { return it.at_end(); }

   private:
    [[nodiscard]] bool at_end() const noexcept { return !owner_->current_.has_value(); }
    friend class unordered_results;
    explicit iterator(unordered_results* owner) : owner_(owner) {}
    unordered_results* owner_ = nullptr;
  };

  [[nodiscard]] iterator begin() {
    advance();
    return iterator(this);
  }
  [[nodiscard]] std::default_sentinel_t end() const noexcept { return {}; }
  [[nodiscard]] std::size_t size() const noexcept { return state_->slots().size(); }

 private:
  void advance() {
    current_ = state_->wait_for_any();
    if (!current_) state_->rethrow();
  }
  std::unique_ptr<detail::stream_state<R>> state_;
  std::optional<std::size_t> current_;
};

}  // namespace xjob
