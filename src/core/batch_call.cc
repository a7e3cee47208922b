#include <xjob/batch_call.hpp>

#include <algorithm>
#include <cstdio>
#include <utility>

#include <xjob/cancellation.hpp>

#include <fmt/format.h>

#include <xjob/errors.hpp>

namespace xjob {

namespace {
using clock_type = std::chrono::steady_clock;
using seconds = std::chrono::duration<double>;

// The stop flag of the call whose task this thread runs, for
// stop_requested(); in a worker process the flag is in the call's shared
// memory, so the caller's request reaches it.
thread_local std::atomic<bool> const* running_call_stop = nullptr;

// Sets running_call_stop for a batch (calls nest: a task may run a call).
class running_call_scope {
 public:
  explicit running_call_scope(std::atomic<bool> const& stop) noexcept
      : previous_(std::exchange(running_call_stop, &stop)) {}
  ~running_call_scope() { running_call_stop = previous_; }
  running_call_scope(running_call_scope const&) = delete;
  running_call_scope& operator=(running_call_scope const&) = delete;

 private:
  std::atomic<bool> const* previous_;
};
}  // namespace

bool stop_requested() noexcept {
  return running_call_stop != nullptr && running_call_stop->load(std::memory_order_relaxed);
}

namespace {
batching_policy policy_of(batch_call::settings const& options) {
  if (options.batch_size) return batching_policy::fixed(*options.batch_size);
  return batching_policy::automatic(options.target_batch_duration, std::max(options.workers, 1));
}
}  // namespace

batch_call::batch_call(detail::task_runner& runner, std::size_t task_count, settings options)
    : runner_(runner), task_count_(task_count), settings_(std::move(options)), policy_(policy_of(settings_)) {
  settings_.workers = std::max(settings_.workers, 1);
  own_dispatch_->end.store(task_count, std::memory_order_relaxed);
  dispatched_ = {0, task_count};
}

void batch_call::dispatch(batch_range range) {
  if (range.begin > range.end || range.end > task_count_)
    throw invalid_argument(fmt::format("cannot hand out tasks {} to {} of a call of {} tasks", range.begin,
                                       range.end, task_count_));
  dispatch_state& state = dispatch();
  state.end.store(range.end, std::memory_order_relaxed);
  state.next.store(range.begin, std::memory_order_release);
  dispatched_ = range;
}

batch_call::~batch_call() = default;

void batch_call::share_dispatch_state(dispatch_state& shared) noexcept {
  dispatch_state& own = dispatch();
  shared.next.store(own.next.load(std::memory_order_relaxed), std::memory_order_relaxed);
  shared.end.store(own.end.load(std::memory_order_relaxed), std::memory_order_relaxed);
  shared.stop.store(own.stop.load(std::memory_order_relaxed), std::memory_order_relaxed);
  dispatch_.store(&shared, std::memory_order_seq_cst);
  // A cancel() that landed on the old state meanwhile (see cancel()).
  if (own.stop.load(std::memory_order_seq_cst)) shared.stop.store(true, std::memory_order_relaxed);
}

void batch_call::take_back_dispatch_state() noexcept {
  dispatch_state& shared = dispatch();
  dispatch_state& own = *own_dispatch_;
  if (&shared == &own) return;
  own.next.store(shared.next.load(std::memory_order_relaxed), std::memory_order_relaxed);
  own.end.store(shared.end.load(std::memory_order_relaxed), std::memory_order_relaxed);
  own.stop.store(shared.stop.load(std::memory_order_relaxed), std::memory_order_relaxed);
  dispatch_.store(&own, std::memory_order_seq_cst);
  // A cancel() that landed on the shared state meanwhile (see cancel()).
  if (shared.stop.load(std::memory_order_seq_cst)) own.stop.store(true, std::memory_order_relaxed);
}

batch_range batch_call::next_batch(batch_cursor& cursor) noexcept {
  if (stopped()) return {};
  dispatch_state& state = dispatch();
  std::size_t const end = state.end.load(std::memory_order_relaxed);
  if (!policy_.is_automatic()) {
    std::size_t const begin = state.next.fetch_add(policy_.fixed_size(), std::memory_order_relaxed);
    return {begin, begin + policy_.batch_size(begin, end, cursor.batch_size)};
  }
  // The guided cap depends on where the batch starts: computed from the
  // exact start (compare-exchange), not a stale one.
  std::atomic<std::size_t>& next = state.next;
  std::size_t begin = next.load(std::memory_order_relaxed);
  std::size_t size = 0;
  do {
    size = policy_.batch_size(begin, end, cursor.batch_size);
    if (size == 0) return {};
  } while (!next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed));
  cursor.started = clock_type::now();
  return {begin, begin + size};
}

std::size_t batch_call::run_batch(batch_range batch) noexcept {
  detail::batch_outcome outcome = execute_batch(batch, nullptr);
  if (outcome.failure) fail(std::move(*outcome.failure));
  return outcome.completed_end;
}

detail::batch_outcome batch_call::execute_batch(batch_range batch, std::atomic<std::size_t>* current_task) noexcept {
  std::atomic<bool> const& stop = dispatch().stop;
  running_call_scope const scope(stop);
  detail::batch_outcome outcome = runner_.run(batch.begin, batch.end, stop, current_task);
  if (outcome.failure) cancel();
  return outcome;
}

void batch_call::finish_batch(batch_cursor& cursor, batch_range batch, std::size_t completed_end) noexcept {
  tune_batch_size(cursor, batch, completed_end);
  record_done({batch.begin, completed_end});
}

void batch_call::tune_batch_size(batch_cursor& cursor, batch_range batch, std::size_t completed_end) const noexcept {
  if (!policy_.is_automatic()) return;
  cursor.batch_size = policy_.learn(cursor.batch_size, batch.size(), completed_end - batch.begin,
                                    std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - cursor.started));
}

void batch_call::record_done(batch_range done_range) noexcept {
  if (done_range.empty()) return;
  std::size_t const done = done_.fetch_add(done_range.size(), std::memory_order_acq_rel) + done_range.size();
  if (settings_.on_batch_done) {
    try {
      settings_.on_batch_done(done_range);
    } catch (...) {
      // Taking the batch's results in failed (a reduction's combine threw):
      // it counts as a failure of the batch's first task.
      fail(detail::describe_current_exception(done_range.begin));
    }
  }
  report_progress(done);
}

void batch_call::work(int worker) noexcept {
  batch_cursor cursor{worker, 1, {}};
  bool const in_parts = reports_progress();
  for (;;) {
    batch_range const batch = next_batch(cursor);
    if (batch.empty()) return;
    if (!in_parts || batch.size() == 1) {
      finish_batch(cursor, batch, run_batch(batch));
      continue;
    }
    // Task by task, reporting what finished at least every
    // progress_interval, so that a large batch does not hold it back.
    std::size_t reported = batch.begin;
    std::size_t completed_end = batch.begin;
    auto reported_at = clock_type::now();
    for (std::size_t task = batch.begin; task < batch.end; ++task) {
      completed_end = run_batch({task, task + 1});
      if (completed_end != task + 1) break;  // failed or stopped
      if (clock_type::now() - reported_at >= progress_interval) {
        record_done({reported, completed_end});
        reported = completed_end;
        reported_at = clock_type::now();
      }
    }
    tune_batch_size(cursor, batch, completed_end);
    record_done({reported, completed_end});
  }
}

void batch_call::fail(detail::task_failure failure) noexcept {
  {
    std::lock_guard lock(failure_mutex_);
    if (!failure_) failure_ = std::move(failure);
  }
  has_failure_.store(true, std::memory_order_release);
  cancel();
}

void batch_call::cancel() noexcept {
  // From any thread, also while share_dispatch_state moves the state: in
  // the single order of seq_cst operations, either its second look at the
  // old flag sees this store, or the second load here sees the new state.
  dispatch_state* const at = dispatch_.load(std::memory_order_seq_cst);
  at->stop.store(true, std::memory_order_seq_cst);
  if (dispatch_state* const now = dispatch_.load(std::memory_order_seq_cst); now != at)
    now->stop.store(true, std::memory_order_relaxed);
}

bool batch_call::failed() const noexcept { return has_failure_.load(std::memory_order_acquire); }

void batch_call::rethrow_if_failed() const {
  std::lock_guard lock(failure_mutex_);
  if (failure_)
    throw task_error(failure_->task_index, failure_->type_name, failure_->message, failure_->original,
                     failure_->where);
  if (cancelled()) throw xjob::cancelled(done_count(), task_count_);
}

void batch_call::canceller::operator()() const noexcept {
  call->cancelled_.store(true, std::memory_order_release);
  call->cancel();
}

void batch_call::start(std::string const& backend_name) {
  start_time_ = clock_type::now();
  // Runs the canceller at once if the stop was requested already.
  if (settings_.stop.stop_possible()) stop_callback_.emplace(settings_.stop, canceller{this});
  if (settings_.verbose > 0)
    std::fprintf(stderr, "[%s]: Using backend %s with %d concurrent workers.\n", settings_.verbose_name.c_str(),
                 backend_name.c_str(), settings_.workers);
}

void batch_call::report_progress(std::size_t done) noexcept {
  if (settings_.verbose <= 0 && !settings_.on_progress) return;
  std::lock_guard lock(progress_mutex_);
  seconds const elapsed = clock_type::now() - start_time_;
  seconds const remaining =
      elapsed * (static_cast<double>(task_count_ - std::min(done, task_count_)) / static_cast<double>(done));
  if (settings_.on_progress) {
    try {
      settings_.on_progress(progress{done, task_count_, elapsed, remaining});
    } catch (...) {
      // A throwing progress callback must not take the call down with it;
      // it is reported like a failed task at the position reached.
      fail(detail::describe_current_exception(done));
    }
  }
  if (settings_.verbose <= 0 || done >= task_count_) return;
  if (settings_.verbose < 10) {
    if (done < next_report_) return;
    // Lines at growing intervals: twofold at verbose 1, ~11% at verbose 9.
    next_report_ = done + std::max<std::size_t>(done / static_cast<std::size_t>(settings_.verbose), 1);
  }
  auto const width = static_cast<int>(fmt::formatted_size("{}", task_count_));
  std::fputs(fmt::format("[{}]: Done {:>{}} out of {} | elapsed: {:.1f}s remaining: {:.1f}s\n", settings_.verbose_name,
                         done, width, task_count_, elapsed.count(), remaining.count())
                 .c_str(),
             stderr);
}

void batch_call::finish() noexcept {
  if (settings_.verbose <= 0) return;
  seconds const elapsed = clock_type::now() - start_time_;
  std::size_t const done = done_count();
  auto const width = static_cast<int>(fmt::formatted_size("{}", task_count_));
  std::fputs(fmt::format("[{}]: Done {:>{}} out of {} | elapsed: {:.1f}s {}\n", settings_.verbose_name, done, width,
                         task_count_, elapsed.count(), failed() ? "failed" : "finished")
                 .c_str(),
             stderr);
}

}  // namespace xjob
