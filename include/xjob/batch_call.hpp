// batch_call: one parallel call as a backend sees it. It owns the shared
// parts every backend needs: handing out batches of tasks (fixed or
// self-tuning sizes), cancelling the rest after the first failure, keeping
// that failure, and reporting progress. A backend only decides where the
// worker loops run.
#pragma once

#include <xjob/detail/config.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>

#include <xjob/batching_policy.hpp>
#include <xjob/detail/fork_shared.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/parallel_options.hpp>

namespace xjob {

// A half-open range of task indices.
struct batch_range {
  std::size_t begin = 0;
  std::size_t end = 0;
  [[nodiscard]] std::size_t size() const noexcept { return end - begin; }
  [[nodiscard]] bool empty() const noexcept { return begin >= end; }
};

// One worker's position in the call: its index and, for automatic batching,
// the batch size it has learned. Not shared between workers.
struct batch_cursor {
  int worker = 0;
  std::size_t batch_size = 1;
  std::chrono::steady_clock::time_point started{};
};

// Thread-safe: any number of workers may call work() / next_batch() /
// run_batch() / finish_batch() concurrently. Where the next batch starts and
// whether the call stopped live in memory that forked children share, so
// workers in other processes may call next_batch() and execute_batch() on
// their copy of the call (see the processes backend).
//   struct openmp_backend final : xjob::backend {
//     void run(xjob::batch_call& call) override {
//   #pragma omp parallel num_threads(call.worker_count())
//       call.work(omp_get_thread_num());
//     }
//   };
class batch_call {
 public:
  struct settings {
    int workers = 1;
    std::optional<std::size_t> batch_size = std::nullopt;  // unset: automatic
    std::chrono::nanoseconds target_batch_duration = std::chrono::microseconds(200);
    int verbose = 0;
    std::string verbose_name = {};  // e.g. "parallel(n_jobs=2)"
    std::function<void(progress const&)> on_progress = {};
    // Told of each finished batch (after its results are in place), for
    // result generators. Called concurrently from workers.
    std::function<void(batch_range)> on_batch_done = {};
    // Whether on_batch_done wants batches as soon as they finish (a result
    // stream), or only by the call's end (a reduction, which then costs
    // worker processes no wake-up of the caller per batch).
    bool batch_done_is_urgent = true;
    // How a warm worker process runs this call, if it can (see
    // task_runner.hpp); not owned.
    detail::remote_form const* remote = nullptr;
    // Requesting it stops the call (see cancel()); rethrow_if_failed then
    // throws xjob::cancelled.
    std::stop_token stop = {};
  };

  // The call's dispatch source on this machine: where the next batch
  // starts, where the tasks handed out here end, and whether the call
  // stopped; all that workers of a call share. In fork-shared memory by
  // default (an atomic in the caller for threads, a counter forked children
  // share for processes); a backend whose workers started before the call
  // moves it into memory they map. A backend that spreads the tasks over
  // machines feeds it one range at a time (dispatch()), each taken from a
  // source of its own (MPI_Fetch_and_op on one rank for "mpi").
  struct dispatch_state {
    alignas(64) std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> end{0};
    alignas(64) std::atomic<bool> stop{false};
  };
  static_assert(std::atomic<std::size_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
                "atomics shared between processes must be lock-free");

  // When someone follows the call (reports_progress()), a batch's finished
  // tasks are reported at least this often, however large the batch.
  static constexpr std::chrono::milliseconds progress_interval{50};

  // Throws xjob::invalid_argument for a batch_size of 0 or a
  // target_batch_duration that is not positive (see batching_policy).
  batch_call(detail::task_runner& runner, std::size_t task_count, settings options);
  batch_call(batch_call const&) = delete;
  batch_call& operator=(batch_call const&) = delete;
  ~batch_call();

  [[nodiscard]] std::size_t task_count() const noexcept { return task_count_; }
  [[nodiscard]] int worker_count() const noexcept { return settings_.workers; }

  // Runs batches on the calling thread as worker `worker` until none is
  // left or the call stops. Never throws: failures are kept in the call.
  void work(int worker) noexcept;

  // The pieces work() is made of, for backends that split them (a batch
  // taken in one process and run in another). Batches are sized by policy().
  [[nodiscard]] batch_range next_batch(batch_cursor& cursor) noexcept;
  // Runs a batch here; a failure is kept in the call (and stops it).
  // Returns the end of the tasks that completed.
  std::size_t run_batch(batch_range batch) noexcept;
  // Records [batch.begin, completed_end) as done and tunes the cursor's
  // batch size from how long the batch took.
  void finish_batch(batch_cursor& cursor, batch_range batch, std::size_t completed_end) noexcept;

  // The same pieces split between a worker process and the caller:
  // execute_batch runs a batch (storing each task's index in
  // `current_task`) and stops the call on a failure, which it returns
  // instead of keeping; tune_batch_size adapts the cursor (both in the
  // worker); record_done counts finished tasks and reports them (in the
  // caller, once their results are in place).
  [[nodiscard]] detail::batch_outcome execute_batch(batch_range batch,
                                                    std::atomic<std::size_t>* current_task) noexcept;
  void tune_batch_size(batch_cursor& cursor, batch_range batch, std::size_t completed_end) const noexcept;
  void record_done(batch_range done) noexcept;
  [[nodiscard]] detail::task_runner& runner() noexcept { return runner_; }
  [[nodiscard]] detail::remote_form const* remote() const noexcept { return settings_.remote; }
  [[nodiscard]] settings const& options() const noexcept { return settings_; }
  // How batches are sized (from the settings' batch_size and
  // target_batch_duration).
  [[nodiscard]] batching_policy const& policy() const noexcept { return policy_; }
  // Moves the dispatch state into `shared` (a dispatch_state constructed
  // there), before any batch is taken; the call then takes batches from it
  // and stops through it, until take_back_dispatch_state().
  void share_dispatch_state(dispatch_state& shared) noexcept;
  // Moves it back into the call, before the memory it was shared in goes
  // (the call may be run again: see dispatch()).
  void take_back_dispatch_state() noexcept;
  // Hands out `range` next (all tasks until then): for a backend that runs
  // the call's tasks one range at a time, between runs of its workers (no
  // worker may be taking batches). Batches are sized for what is left of
  // the range. Throws xjob::invalid_argument for a range past task_count().
  void dispatch(batch_range range);
  // The range handed out now (from its first task, however far workers
  // have come).
  [[nodiscard]] batch_range dispatched() const noexcept { return dispatched_; }
  // In a worker process: takes batches from a state another process shared
  // (as is, not reset).
  void attach_dispatch_state(dispatch_state& shared) noexcept { dispatch_.store(&shared, std::memory_order_release); }
  // Whether someone follows the call as it runs (a progress callback,
  // verbose output, a result stream), so finished batches should be
  // reported promptly rather than when convenient.
  [[nodiscard]] bool reports_progress() const noexcept {
    return settings_.verbose > 0 || settings_.on_progress || (settings_.on_batch_done && settings_.batch_done_is_urgent);
  }

  // Keeps `failure` if it is the first, and stops the call.
  void fail(detail::task_failure failure) noexcept;
  // Stops handing out batches; running tasks finish, the rest never start.
  void cancel() noexcept;
  [[nodiscard]] bool stopped() const noexcept { return dispatch().stop.load(std::memory_order_relaxed); }
  [[nodiscard]] bool failed() const noexcept;
  // Whether the call stopped because its stop token was requested.
  [[nodiscard]] bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
  // After the backend returned: throws xjob::task_error for the first
  // failure, else xjob::cancelled if the call was cancelled.
  void rethrow_if_failed() const;
  [[nodiscard]] std::size_t done_count() const noexcept { return done_.load(std::memory_order_relaxed); }

  // Announces the call (verbose), starts its clock and begins to follow its
  // stop token; the front end calls it just before handing the call to a
  // backend.
  void start(std::string const& backend_name);
  // Reports the final progress line (verbose).
  void finish() noexcept;

 private:
  void report_progress(std::size_t done) noexcept;

  detail::task_runner& runner_;
  std::size_t task_count_;
  settings settings_;
  batching_policy policy_;
  [[nodiscard]] dispatch_state& dispatch() const noexcept { return *dispatch_.load(std::memory_order_acquire); }

  detail::fork_shared<dispatch_state> own_dispatch_;
  // Atomic: a stop token's request may cancel the call from another thread
  // while the backend moves the state (share_dispatch_state).
  std::atomic<dispatch_state*> dispatch_{&*own_dispatch_};
  batch_range dispatched_;
  alignas(64) std::atomic<std::size_t> done_{0};
  std::atomic<bool> has_failure_{false};
  mutable std::mutex failure_mutex_;
  std::optional<detail::task_failure> failure_;
  // Cancels the call when its stop token is requested.
  struct canceller {
    batch_call* call;
    void operator()() const noexcept;
  };
  std::atomic<bool> cancelled_{false};
  std::optional<std::stop_callback<canceller>> stop_callback_;
  std::mutex progress_mutex_;
  std::size_t next_report_ = 1;
  std::chrono::steady_clock::time_point start_time_{};
};

}  // namespace xjob
