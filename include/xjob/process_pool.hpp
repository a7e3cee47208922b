// process_pool: worker processes that stay alive across calls, like Python's
// multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor. An
// initializer runs once per worker (load a model, open a file), and tasks
// are then fed to the same workers: the price of starting a process and
// initialising it is paid once, not per call.
//
// Because the workers started before the tasks were made, a task is a plain
// function or a lambda without captures plus arguments that are copied to
// the worker (transferable: see xjob/transfer.hpp); anything else is a
// compile-time error saying so. For closures over the caller's state, use
// xjob::parallel({.backend = "processes"}), which forks at each call.
#pragma once

#include <xjob/detail/config.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <xjob/delayed.hpp>
#include <xjob/detail/deadline.hpp>
#include <xjob/detail/pool_chunk_codec.hpp>
#include <xjob/detail/remote_call.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/detail/to_vector.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/start_method.hpp>
#include <xjob/transfer.hpp>

namespace xjob {

// What each worker runs once when it starts (multiprocessing.Pool's
// initializer and initargs): a plain function or captureless lambda and its
// transferable arguments. State it sets up lives in the worker's globals.
//   .initializer = xjob::pool_initializer(load_model, std::string("model.bin"))
//   .initializer = xjob::delayed(load_model)(std::string("model.bin"))
class pool_initializer {
 public:
  pool_initializer() = default;
  template <class F, class... Args>
    requires(!std::same_as<std::decay_t<F>, pool_initializer>)
  explicit pool_initializer(F const& function, Args const&... args)
      : call_(detail::make_remote_call(function, args...)) {}
  template <class F, class... Args>
  pool_initializer(delayed_call<F, Args...> const& call)  // NOLINT: implicit, as in `.initializer = delayed(f)(x)`
      : call_(std::apply([&](auto const&... a) { return detail::make_remote_call(call.function(), a...); },
                         call.arguments())) {}

  [[nodiscard]] explicit operator bool() const noexcept { return call_.has_value(); }
  [[nodiscard]] detail::remote_call const* call() const noexcept { return call_ ? &*call_ : nullptr; }

 private:
  std::optional<detail::remote_call> call_;
};

// Options of a process_pool; designated initialisers name what differs.
//   xjob::process_pool pool({.processes = 4, .initializer = xjob::delayed(init)(10)});
struct pool_options {
  // Worker count, joblib's rule: n > 0 exactly n, -1 all CPUs, -2 all but
  // one. 0 and counts below -cpu_count() are xjob::invalid_argument.
  int processes = -1;
  // How workers are started (see start_method.hpp); forkserver and spawn
  // need xjob::init(argc, argv) at the top of main.
  xjob::start_method start_method = xjob::start_method::fork;
  // Run once in each worker before its first task. If it throws, the pool
  // is broken: waiting and later tasks fail with xjob::pool_broken.
  pool_initializer initializer = {};
  // A worker that has run this many tasks is replaced by a fresh one (a
  // leaky library's memory is given back); 0: never.
  std::size_t max_tasks_per_child = 0;
  // A worker idle this long exits; workers are started again on demand.
  std::optional<std::chrono::duration<double>> idle_timeout = std::nullopt;
  // A task whose worker died (or was killed for task_timeout) runs again on
  // another worker, up to this many times; then its future fails with
  // xjob::worker_crashed (attempts() says how often it ran) or
  // xjob::timeout_error. In a map only the item that was running runs
  // again, never one that finished: with retries, workers send each item's
  // result as soon as it is known. Negative: xjob::invalid_argument.
  int retries = 0;
  // A task (in a map: an item) running longer than this has its worker
  // killed (SIGKILL) and, unless retries are left, fails with
  // xjob::timeout_error naming it; other tasks and workers go on. Checked
  // every tenth of it (1-100 ms). Not positive: xjob::invalid_argument.
  std::optional<std::chrono::duration<double>> task_timeout = std::nullopt;
};

// How shutdown() treats tasks that have not finished.
enum class shutdown_mode {
  finish_pending,  // run every submitted task, then stop the workers
  cancel_pending,  // cancel tasks not yet started; let running ones finish
  kill_workers,    // kill the workers now; unfinished tasks fail with pool_broken
};

// Which futures xjob::wait waits for (concurrent.futures.wait's return_when).
enum class return_when { all_completed, first_completed, first_exception };

namespace detail {

enum class job_status : std::uint8_t { pending, running, finished, failed, cancelled };

// What futures of one pool wait on: one mutex and condition for all its
// jobs, so waits across futures (wait, as_completed) need no more.
struct pool_board {
  std::mutex mutex;
  std::condition_variable changed;
};

// One submitted task (or chunk of a map), shared by its future and the pool.
struct pool_job {
  std::shared_ptr<pool_board> board;
  std::string request;         // the encoded remote_call
  std::size_t first_task = 0;  // index of the (first) task, for errors
  // Shared memory holding its large arguments, until it is done.
  std::vector<std::shared_ptr<void const>> staged;
  // Guarded by board->mutex.
  job_status status = job_status::pending;
  std::string result;
  // Throws the job's failure, a new exception object at each call: an
  // exception_ptr would share one object between the pool's thread and
  // every caller of get(), whose reference count (in libsupc++) neither
  // the caller's code nor ThreadSanitizer can see.
  std::function<void()> raise;
  // The supervisor's alone.
  bool chunk = false;               // a map chunk, whose items are tasks of their own
  std::size_t resume_at = 0;        // the item a retry starts from (items before it finished)
  int attempts = 0;                 // runs from resume_at that ended with the worker's death
  std::uint64_t streamed_count = 0; // results sent item by item (with retries), in order
  std::string streamed;
};

[[nodiscard]] bool job_done(job_status status) noexcept;
void wait_job(pool_job& job);
[[nodiscard]] bool wait_job_until(pool_job& job, deadline until);
[[nodiscard]] bool cancel_job(pool_job& job) noexcept;
[[nodiscard]] job_status job_status_of(pool_job& job) noexcept;

// Waits until `done(statuses of jobs)` holds or `until`; `jobs` may come
// from several pools. Returns whether the predicate held.
using jobs_predicate = std::function<bool(std::span<job_status const>)>;
[[nodiscard]] bool wait_jobs(std::span<pool_job* const> jobs, jobs_predicate const& done,
                             std::optional<deadline> until);

class pool_core;

}  // namespace detail

// The result of a task submitted to a process_pool (std::future's wait and
// get, concurrent.futures' cancel and done). Copies share the task.
// Thread-safe.
//   auto f = pool.submit(square, 7);
//   if (f.wait_for(std::chrono::seconds(1))) std::cout << f.get();
template <class R>
class pool_future {
 public:
  using value_type = R;
  pool_future() = default;
  explicit pool_future(std::shared_ptr<detail::pool_job> job) : job_(std::move(job)) {}

  // Waits, then returns the result; throws xjob::task_error if the task
  // threw (its type name and message), xjob::worker_crashed if its worker
  // died, xjob::task_cancelled or xjob::pool_broken.
  R get() const {
    detail::wait_job(*job_);
    std::lock_guard lock(job_->board->mutex);
    if (job_->raise) job_->raise();
    if constexpr (!std::is_void_v<R>) return detail::decode_result<R>(job_->result);
  }
  void wait() const { detail::wait_job(*job_); }
  // True if the task is done (finished, failed or cancelled) within `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return detail::wait_job_until(
        *job_, std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  // Cancels the task if it has not started; returns whether it did.
  bool cancel() const noexcept { return detail::cancel_job(*job_); }
  [[nodiscard]] bool done() const noexcept { return detail::job_done(detail::job_status_of(*job_)); }
  [[nodiscard]] bool running() const noexcept {
    return detail::job_status_of(*job_) == detail::job_status::running;
  }
  [[nodiscard]] bool cancelled() const noexcept {
    return detail::job_status_of(*job_) == detail::job_status::cancelled;
  }
  [[nodiscard]] bool valid() const noexcept { return job_ != nullptr; }
  [[nodiscard]] detail::pool_job* job() const noexcept { return job_.get(); }

 private:
  std::shared_ptr<detail::pool_job> job_;
};

// Which of `futures` were done when xjob::wait returned, as indices.
struct wait_result {
  std::vector<std::size_t> done;
  std::vector<std::size_t> not_done;
};

namespace detail {
template <class Futures>
std::vector<pool_job*> jobs_of(Futures const& futures) {
  std::vector<pool_job*> jobs;
  for (auto const& f : futures) jobs.push_back(f.job());
  return jobs;
}
wait_result wait_for_jobs(std::span<pool_job* const> jobs, return_when when,
                          std::optional<deadline> until);

// Waits until one of `futures` not yet `taken` is done, marks it taken and
// returns its index; nothing once all are taken. Past `until`, throws
// xjob::timeout_error naming `timeout`.
template <class Futures>
std::optional<std::size_t> take_next_done(Futures const& futures, std::vector<bool>& taken,
                                          std::optional<deadline> until,
                                          std::chrono::duration<double> timeout) {
  if (std::find(taken.begin(), taken.end(), false) == taken.end()) return std::nullopt;
  auto const jobs = jobs_of(futures);
  std::optional<std::size_t> found;
  auto look = [&](std::span<job_status const> statuses) {
    for (std::size_t i = 0; i < statuses.size(); ++i)
      if (!taken[i] && job_done(statuses[i])) {
        found = i;
        return true;
      }
    return false;
  };
  if (!wait_jobs(jobs, look, until))
    throw timeout_error(fmt::format("as_completed: futures were still running after {} s", timeout.count()),
                        std::nullopt, timeout);
  taken[*found] = true;
  return found;
}
}  // namespace detail

// concurrent.futures.wait: blocks until the futures are done as `when` says,
// or `timeout` passes. Thread-safe.
//   auto [done, not_done] = xjob::wait(futures, xjob::return_when::first_completed);
template <std::ranges::forward_range Futures>
wait_result wait(Futures const& futures, return_when when = return_when::all_completed,
                 std::optional<std::chrono::duration<double>> timeout = std::nullopt) {
  std::optional<detail::deadline> until;
  if (timeout) until = detail::deadline_after(*timeout);
  auto const jobs = detail::jobs_of(futures);
  return detail::wait_for_jobs(jobs, when, until);
}

// concurrent.futures.as_completed: the futures in the order they finish.
// Iterating past `timeout` throws xjob::timeout_error.
//   for (auto& f : xjob::as_completed(futures)) std::cout << f.get() << "\n";
template <class Future>
class as_completed_range {
 public:
  as_completed_range(std::vector<Future> futures, std::optional<std::chrono::duration<double>> timeout)
      : futures_(std::move(futures)), yielded_(futures_.size(), false), timeout_(timeout) {
    if (timeout_) deadline_ = detail::deadline_after(*timeout_);
  }

  class iterator {
   public:
    using value_type = Future;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(as_completed_range* range) : range_(range) { advance(); }
    Future& operator*() const { return range_->futures_[current_]; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    friend bool operator==(iterator const& it, std::default_sentinel_t) { return it.range_ == nullptr; }

   private:
    void advance() {
      std::optional<std::size_t> next = range_->next_done();
      if (next) {
        current_ = *next;
      } else {
        range_ = nullptr;
      }
    }
    as_completed_range* range_ = nullptr;
    std::size_t current_ = 0;
  };

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::optional<std::size_t> next_done() {
    return detail::take_next_done(futures_, yielded_, deadline_, timeout_.value_or(std::chrono::duration<double>{}));
  }

  std::vector<Future> futures_;
  std::vector<bool> yielded_;
  std::optional<std::chrono::duration<double>> timeout_;
  std::optional<detail::deadline> deadline_;
};

template <std::ranges::input_range Futures>
auto as_completed(Futures const& futures, std::optional<std::chrono::duration<double>> timeout = std::nullopt) {
  using Future = std::remove_cvref_t<std::ranges::range_reference_t<Futures>>;
  return as_completed_range<Future>(std::vector<Future>(std::ranges::begin(futures), std::ranges::end(futures)),
                                    timeout);
}

// The results of imap (input order) and imap_unordered (completion order),
// produced while you consume them. Dropping it cancels what has not started.
//   for (double v : pool.imap(f, inputs)) use(v);
template <class R>
class pool_results {
 public:
  pool_results(std::vector<pool_future<detail::chunk_results<R>>> chunks, bool ordered)
      : chunks_(std::move(chunks)), yielded_(chunks_.size(), false), ordered_(ordered) {}
  pool_results(pool_results&&) noexcept = default;
  pool_results& operator=(pool_results&&) noexcept = default;
  ~pool_results() {
    for (auto const& chunk : chunks_) chunk.cancel();
  }

  // The next result, or nothing when all were taken. Throws what the task
  // threw (as pool_future::get does).
  std::optional<R> next() {
    while (position_ >= current_.size()) {
      std::optional<std::size_t> chunk = next_chunk();
      if (!chunk) return std::nullopt;
      current_ = chunks_[*chunk].get().values;
      position_ = 0;
    }
    return std::move(current_[position_++]);
  }

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(pool_results* results) : results_(results) { ++*this; }
    R& operator*() const { return *value_; }
    iterator& operator++() {
      value_ = results_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(iterator const& it, std::default_sentinel_t) { return !it.value_; }

   private:
    pool_results* results_ = nullptr;
    mutable std::optional<R> value_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::optional<std::size_t> next_chunk() {
    if (ordered_) {
      if (next_in_order_ >= chunks_.size()) return std::nullopt;
      return next_in_order_++;
    }
    return detail::take_next_done(chunks_, yielded_, std::nullopt, {});
  }

  std::vector<pool_future<detail::chunk_results<R>>> chunks_;
  std::vector<bool> yielded_;
  bool ordered_ = true;
  std::size_t next_in_order_ = 0;
  std::vector<R> current_;
  std::size_t position_ = 0;
};

// A pool of long-lived worker processes. Workers start with the pool (and
// again when one dies, reaches max_tasks_per_child, or is needed after an
// idle timeout); each runs the initializer once, then tasks one at a time.
// A task that throws fails only its future; a worker that dies fails the
// task it ran with xjob::worker_crashed and is replaced. All members are
// thread-safe. The destructor is shutdown(shutdown_mode::finish_pending).
// Only the process that made the pool can use it: in a forked copy of that
// process, submit, map and resize throw xjob::error naming both pids.
//   int square(int x) { return x * x; }
//   xjob::process_pool pool({.processes = 2});
//   std::vector<int> squares = pool.map(square, std::views::iota(0, 20));
//   auto f = pool.submit(square, 7);            // f.get() == 49
class process_pool {
 public:
  // Throws xjob::invalid_argument for a bad worker count or a start method
  // that needs xjob::init(); std::system_error if no worker can start.
  explicit process_pool(pool_options options = {});
  explicit process_pool(int processes) : process_pool(pool_options{.processes = processes}) {}
  process_pool(process_pool&&) noexcept;
  process_pool& operator=(process_pool&&) noexcept;
  ~process_pool();

  // Runs f(args...) in a worker; concurrent.futures' submit, Pool's
  // apply_async. Throws xjob::pool_broken if the pool was shut down.
  template <class F, class... Args>
  [[nodiscard]] auto submit(F const& f, Args const&... args) {
    using R = std::invoke_result_t<std::decay_t<F> const&, std::decay_t<Args>&...>;
    detail::staged_blocks staged;  // large xtensor arguments, through shared memory
    detail::remote_call call;
    {
      detail::staging_scope const scope(staged);
      call = detail::make_remote_call(f, args...);
    }
    return pool_future<std::remove_cvref_t<R>>(enqueue(std::move(call), SIZE_MAX, std::move(staged.keep)));
  }
  template <class F, class... Args>
  [[nodiscard]] auto apply_async(F const& f, Args const&... args) {
    return submit(f, args...);
  }
  // Pool.apply: submit and wait.
  template <class F, class... Args>
  auto apply(F const& f, Args const&... args) {
    return submit(f, args...).get();
  }

  // f(arg) for each arg, results in input order (Pool.map). Items are sent
  // in chunks of `chunksize` (0: automatic, len / (4 * workers) as in
  // Python). The first failure is thrown, as xjob::task_error naming the
  // item's index, or xjob::worker_crashed; the rest is cancelled.
  template <class F, std::ranges::input_range Args>
  auto map(F const& f, Args&& args, std::size_t chunksize = 0) {
    return collect(map_chunks<false>(f, std::forward<Args>(args), chunksize));
  }
  // Pool.starmap: each item is a tuple (or pair) unpacked into f's arguments.
  template <class F, std::ranges::input_range Args>
  auto starmap(F const& f, Args&& args, std::size_t chunksize = 0) {
    return collect(map_chunks<true>(f, std::forward<Args>(args), chunksize));
  }
  // Pool.imap / imap_unordered: results as they come, in input order or in
  // completion order; chunksize defaults to 1 as in Python.
  template <class F, std::ranges::input_range Args>
  auto imap(F const& f, Args&& args, std::size_t chunksize = 1) {
    auto chunks = map_chunks<false>(f, std::forward<Args>(args), chunksize);
    return pool_results<typename decltype(chunks)::value_type::value_type::value_type>(std::move(chunks), true);
  }
  template <class F, std::ranges::input_range Args>
  auto imap_unordered(F const& f, Args&& args, std::size_t chunksize = 1) {
    auto chunks = map_chunks<false>(f, std::forward<Args>(args), chunksize);
    return pool_results<typename decltype(chunks)::value_type::value_type::value_type>(std::move(chunks), false);
  }

  // Grows or shrinks the pool to `processes` workers (joblib's rule, as in
  // the options). Extra workers stop after their current task.
  void resize(int processes);
  // Stops the pool (see shutdown_mode) and waits for its workers to exit.
  // Later submissions throw xjob::pool_broken. Calling it again does nothing.
  void shutdown(shutdown_mode mode = shutdown_mode::finish_pending);

  // The worker count the pool keeps (fewer may be alive after an idle timeout).
  [[nodiscard]] int size() const noexcept;
  // The pids of the workers alive now.
  [[nodiscard]] std::vector<int> pids() const;
  [[nodiscard]] xjob::start_method start_method() const noexcept;

 private:
  std::shared_ptr<detail::pool_job> enqueue(detail::remote_call call, std::size_t first_task = SIZE_MAX,
                                            std::vector<std::shared_ptr<void const>> staged = {});
  [[nodiscard]] std::size_t worker_count_for_chunks() const noexcept;

  // Queues the chunks of a map; returns their futures. Ranges that are not
  // random-access and sized are copied first.
  template <bool Star, class F, class Args>
  auto map_chunks(F const& f, Args&& args, std::size_t chunksize) {
    if constexpr (!(std::ranges::sized_range<Args> && std::ranges::random_access_range<Args>)) {
      auto copy = detail::to_vector(std::forward<Args>(args));
      return map_chunks<Star>(f, copy, chunksize);
    } else {
      detail::require_remote_callable<F>();
      using Item = std::remove_cvref_t<std::ranges::range_reference_t<Args>>;
      detail::require_owning_arguments<std::tuple<Item>>();
      static_assert(transferable<Item>,
                    "xjob: the items of a process_pool map are copied to the workers, so they must be transferable "
                    "(trivially copyable, or serialisable with cereal: see xjob/transfer.hpp)");
      using R = detail::chunk_result_t<F, Item, Star>;
      constexpr bool results_travel = std::is_void_v<R> || transferable<R>;
      static_assert(results_travel,
                    "xjob: the results of a process_pool map are copied back, so they must be transferable");
      using chunk_value = std::conditional_t<std::is_void_v<R>, std::tuple<>, R>;
      std::vector<pool_future<detail::chunk_results<chunk_value>>> chunks;
      // After a failed check above, the worker's thunk and the encoders are
      // not instantiated: they would add errors of their own after xjob's.
      if constexpr (detail::is_remote_callable_v<F> && detail::owns_its_data_v<Item> && transferable<Item> &&
                    results_travel) {
        std::size_t const count = static_cast<std::size_t>(std::ranges::size(args));
        if (chunksize == 0) {
          std::size_t const per = 4 * worker_count_for_chunks();
          chunksize = std::max<std::size_t>(1, (count + per - 1) / per);
        }
        auto const thunk = detail::locate_code(
            reinterpret_cast<void const*>(&detail::run_remote_chunk<std::decay_t<F>, Item, Star>));
        auto const function = detail::function_address(f);
        auto const first = std::ranges::begin(args);
        for (std::size_t begin = 0; begin < count; begin += chunksize) {
          std::size_t const size = std::min(chunksize, count - begin);
          detail::remote_call call{thunk, function, {}};
          auto const chunk_first = first + static_cast<std::ptrdiff_t>(begin);
          detail::staged_blocks staged;  // large xtensor items, through shared memory
          {
            detail::staging_scope const scope(staged);
            detail::encode_chunk_arguments<Item>(
                call.arguments, std::ranges::subrange(chunk_first, chunk_first + static_cast<std::ptrdiff_t>(size)));
          }
          chunks.emplace_back(enqueue(std::move(call), begin, std::move(staged.keep)));
        }
      }
      return chunks;
    }
  }

  template <class T>
  static auto collect(std::vector<pool_future<detail::chunk_results<T>>> chunks) {
    std::vector<T> results;
    try {
      for (auto const& chunk : chunks) {
        if constexpr (std::is_same_v<T, std::tuple<>>) {
          chunk.get();
        } else {
          std::vector<T> part = chunk.get().values;
          results.insert(results.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
        }
      }
    } catch (...) {
      for (auto const& chunk : chunks) chunk.cancel();
      throw;
    }
    if constexpr (!std::is_same_v<T, std::tuple<>>) return results;
  }

  std::shared_ptr<detail::pool_core> core_;
};

}  // namespace xjob
