// "processes": worker processes, warm or forked for the call. A call whose
// callable has no captures (it has a remote form) runs on warm workers kept
// between calls (see warm_workers.hpp); any other call on n_jobs workers
// forked from the caller, which already hold everything the tasks use
// (closures, their captures, input arrays). Either way workers take batches
// from the call's shared dispatch state (no system call per batch) and send
// results back through rings in the call's shared block. The caller
// supervises: it collects results, reaps workers through pidfds, tells
// which task a dead or stuck worker was running, re-runs it on a fresh
// worker when retries allow, and enforces the timeouts.
#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include <xjob/backend.hpp>
#include <xjob/cpu_count.hpp>
#include <xjob/detail/mapped_region.hpp>
#include <xjob/detail/remote_call.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/worker.hpp>

#include "src/backends/processes/warm_workers.hpp"
#include "src/backends/processes/worker_process.hpp"
#include "src/core/fd.hpp"
#include "src/process/fork_support.hpp"
#include "src/process/frame_channel.hpp"
#include "src/process/worker_channel.hpp"

namespace xjob::detail {

namespace {

using clock_type = std::chrono::steady_clock;
using seconds = std::chrono::duration<double>;

// Remote forms larger than this reach warm workers through shared memory.
constexpr std::size_t large_payload_bytes = std::size_t(64) << 10;

std::size_t round_up(std::size_t bytes, std::size_t unit) { return (bytes + unit - 1) / unit * unit; }

// One call on worker processes: forked for it (`warm` null), from the first
// fork to the last reap, or the warm workers of `warm`, from handing them
// the call to their last "done".
class call_supervisor {
 public:
  call_supervisor(batch_call& call, backend_settings const& settings, warm::worker_set* warm)
      : call_(call),
        settings_(settings),
        warm_(warm),
        worker_count_(static_cast<std::size_t>(
            std::clamp<std::size_t>(call.task_count(), 1, static_cast<std::size_t>(call.worker_count())))),
        cpu_share_(std::max(1, cpu_count() / static_cast<int>(worker_count_))),
        own_workers_(warm != nullptr ? 0 : worker_count_),
        running_(worker_count_, false),
        starts_(worker_count_, 0),
        covered_(call.task_count(), false) {
    slots_at_ = round_up(sizeof(process::call_header), 4096);
    rings_at_ = round_up(slots_at_ + worker_count_ * sizeof(process::worker_slot), 4096);
    block_ = mapped_region::anonymous(rings_at_ + worker_count_ * process::ring_bytes, region_fill::unspecified);
    header_ = new (block_.base()) process::call_header();
    call_.share_dispatch_state(header_->dispatch);
    std::size_t const slots_at = slots_at_;
    std::size_t const rings_at = rings_at_;
    for (std::size_t w = 0; w < worker_count_; ++w) {
      slots_.push_back(new (block_.base() + slots_at + w * sizeof(process::worker_slot)) process::worker_slot());
      rings_.push_back(block_.base() + rings_at + w * process::ring_bytes);
      receivers_.emplace_back(*slots_.back(), rings_.back());
    }
    wake_fd_.reset(detail::move_above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
    if (!wake_fd_) throw_errno(errno, "cannot create an eventfd for worker processes");
    if (warm_ != nullptr) prepare_warm_request();
    if (settings_.call_timeout)
      deadline_ = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(*settings_.call_timeout);
  }

  call_supervisor(call_supervisor const&) = delete;
  call_supervisor& operator=(call_supervisor const&) = delete;

  // Forked workers still alive are killed and reaped by their own
  // destructors, which run before the shared block is unmapped. Warm ones
  // still in the call (the supervisor failed) are killed too: a "done" of
  // theirs must not reach the next call.
  ~call_supervisor() {
    call_.take_back_dispatch_state();
    if (warm_ == nullptr) return;
    for (std::size_t w = 0; w < worker_count_; ++w)
      if (running_[w]) {
        warm_->worker(w).kill();
        (void)warm_->worker(w).reap();
      }
  }

  void run() {
    if (warm_ == nullptr) process::prepare_to_fork();
    for (std::size_t w = 0; w < worker_count_; ++w) start(w, {});
    do {
      supervise();
    } while (rerun_lost_tasks());
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // A worker that ended without finishing its work.
  struct death {
    pid_t pid = -1;
    worker_end end{};
    std::optional<std::size_t> task;  // the task it was running
    bool timed_out = false;           // killed by the supervisor for task_timeout
  };

  worker_process& worker(std::size_t w) { return warm_ != nullptr ? warm_->worker(w) : own_workers_[w]; }

  // Starts worker w on the call: a fresh fork, or the call handed to warm
  // worker w (started first if it is not alive). `retry`: tasks a dead
  // worker held, run first.
  void start(std::size_t w, batch_range retry) {
    ++starts_[w];
    process::worker_slot* slot = new (slots_[w]) process::worker_slot();
    slot->retry_begin = retry.begin;
    slot->retry_end = retry.end;
    receivers_[w].reset();
    worker(w).timed_out_task.reset();
    worker(w).watched_task.reset();
    if (warm_ != nullptr) {
      hand_over(w, retry);
      return;
    }
    process::child_process child;
    process::fork_worker(child, cpu_share_, "a worker process", [&] { work_in_child(w); });
    own_workers_[w].started(std::move(child));
    running_[w] = true;
  }

  // The request every warm worker of the call gets, less its index and retry.
  void prepare_warm_request() {
    detail::remote_form const& form = *call_.remote();
    request_.entry = locate_code(reinterpret_cast<void const*>(form.entry));
    if (form.payload.size() <= large_payload_bytes) request_.payload = form.payload;
    request_.task_count = call_.task_count();
    auto const& options = call_.options();
    request_.workers = options.workers;
    request_.batch_size = options.batch_size.value_or(0);
    request_.target_batch_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(options.target_batch_duration).count();
    request_.prompt = call_.reports_progress();
    request_.per_task = settings_.retries > 0;
    request_.slots_at = slots_at_;
    request_.rings_at = rings_at_;
    std::optional<shared_mapping_location> const block = find_shared_mapping(block_.base(), block_.length());
    if (!block) throw error("the call's shared block has no descriptor to hand to warm workers");
    fds_.push_back(wake_fd_.get());
    auto add = [&](shared_mapping const& mapping) {
      request_.mapping_ids.push_back(mapping.id);
      request_.mapping_bytes.push_back(mapping.bytes);
      request_.mapping_writable.push_back(mapping.writable ? 1 : 0);
      fds_.push_back(mapping.fd);
    };
    add(block->mapping);
    for (shared_mapping const& mapping : form.mappings) add(mapping);
    // Large inputs (a map's items, delayed calls' arguments) go through
    // shared memory, written once and read in place by every worker,
    // instead of through each worker's socket.
    if (form.payload.size() > large_payload_bytes) {
      payload_region_ = mapped_region::anonymous(form.payload.size(), region_fill::unspecified);
      std::memcpy(payload_region_.base(), form.payload.data(), form.payload.size());
      std::optional<shared_mapping_location> const where =
          find_shared_mapping(payload_region_.base(), payload_region_.length());
      if (!where) throw error("the call's inputs in shared memory have no descriptor to hand to warm workers");
      request_.payload_mapping = static_cast<std::int32_t>(request_.mapping_ids.size());
      request_.payload_bytes = form.payload.size();
      add(where->mapping);
    }
    if (fds_.size() > process::max_frame_fds) throw error("a call has too many shared arrays to hand to warm workers");
    warm_->handed_out(request_.mapping_ids);
  }

  void hand_over(std::size_t w, batch_range retry) {
    worker_process& warm_worker = warm_->ready_worker(w);
    request_.worker = static_cast<std::int32_t>(w);
    request_.retry_begin = retry.begin;
    request_.retry_end = retry.end;
    running_[w] = true;
    // A worker that cannot be told is dying: its pidfd says how.
    if (!warm_->send(w, warm::frame::call, encode_value(request_), fds_)) warm_worker.kill();
  }

  // A frame from warm worker w; false if its channel ended.
  bool on_message(std::size_t w) {
    std::uint32_t kind = 0;
    std::string payload;
    std::vector<detail::unique_fd> fds;
    if (!process::receive_frame(worker(w).channel(), kind, payload, fds)) return false;
    if (static_cast<warm::frame>(kind) != warm::frame::done || !running_[w]) return false;
    drain(w);  // all it sent is in the ring before its "done"
    running_[w] = false;
    if (!payload.empty())
      fail_with(std::make_exception_ptr(
          error(fmt::format("worker process {} could not run the call: {}", worker(w).pid(), payload))));
    return true;
  }

  // The worker's whole life; never returns into the caller's code.
  [[noreturn]] void work_in_child(std::size_t w) noexcept {
    set_worker_index(static_cast<int>(w));
    process::worker_slot& slot = *slots_[w];
    process::record_sender sender(*header_, slot, rings_[w], call_.reports_progress(), wake_fd_.get());
    process::run_batches(call_, sender, slot, static_cast<int>(w), {slot.retry_begin, slot.retry_end},
                         settings_.retries > 0);
    std::fflush(nullptr);
    _exit(0);
  }

  // Collects results, "done"s and ends of workers until none is running.
  void supervise() {
    process::worker_poll polled(wake_fd_.get());
    std::vector<std::size_t> polled_start(worker_count_);  // each polled worker's start count
    for (;;) {
      bool const progressed = drain_all();
      check_timeouts(clock_type::now());
      if (std::none_of(running_.begin(), running_.end(), [](bool running) { return running; })) return;
      if (progressed) continue;
      // Sleep, unless a worker published between the drain and now.
      header_->caller_sleeping.store(1, std::memory_order_seq_cst);
      if (std::any_of(receivers_.begin(), receivers_.end(), [](auto const& r) { return r.has_unpublished_data(); })) {
        header_->caller_sleeping.store(0, std::memory_order_relaxed);
        continue;
      }
      // Per running worker a warm one's channel, then its pidfd: a "done"
      // is taken before an end, so a worker that ended after its part is
      // not counted as a death of this call.
      for (std::size_t w = 0; w < worker_count_; ++w) {
        if (!running_[w]) continue;
        polled_start[w] = starts_[w];
        polled.watch(w, warm_ != nullptr ? worker(w).channel() : -1, worker(w).pidfd());
      }
      auto const found = polled.wait(poll_timeout_ms(clock_type::now()));
      header_->caller_sleeping.store(0, std::memory_order_relaxed);
      for (auto const& [w, seen] : found) {
        // Skipped: the worker is out of the call, or it was started anew in
        // this round (a retry) and this is the old one's.
        auto current = [&, w = w] { return running_[w] && starts_[w] == polled_start[w]; };
        if (!current()) continue;
        // A channel that ended means the worker is going: its pidfd says how.
        if (seen.message && !on_message(w)) {
          worker(w).kill();
          on_exit(w);
          continue;
        }
        if (seen.ended && current()) on_exit(w);
      }
    }
  }

  bool drain_all() {
    bool progressed = false;
    for (std::size_t w = 0; w < worker_count_; ++w) progressed = drain(w) || progressed;
    return progressed;
  }

  bool drain(std::size_t w) {
    bool const took = receivers_[w].drain();
    while (auto record = receivers_[w].next()) handle(*record);
    return took;
  }

  void handle(process::record_receiver::record const& record) {
    std::size_t const begin = static_cast<std::size_t>(record.header.begin);
    std::size_t const end = static_cast<std::size_t>(record.header.end);
    if (record.header.kind == process::record_kind::failure) {
      process::failure_record failure = process::decode_failure(record.payload, "a worker's failure record");
      call_.fail(task_failure{begin, std::move(failure.type_name), std::move(failure.message), nullptr});
      return;
    }
    // A worker that died after sending a batch but before letting go of it
    // has the batch re-run: its results are in already.
    if (covered_[begin]) return;
    try {
      call_.runner().load_results(begin, end, record.payload);
    } catch (std::exception const& e) {
      call_.fail(task_failure{begin, "xjob::error", e.what(), nullptr});
      return;
    }
    std::fill(covered_.begin() + static_cast<std::ptrdiff_t>(begin), covered_.begin() + static_cast<std::ptrdiff_t>(end),
              true);
    call_.record_done({begin, end});
  }

  void on_exit(std::size_t w) {
    worker_process& worker = this->worker(w);
    pid_t const pid = worker.pid();
    worker_end const end = worker.reap();
    running_[w] = false;
    drain(w);  // complete records stand; a partial one is dropped at respawn
    process::worker_slot const& slot = *slots_[w];
    bool const in_task = slot.in_task.load(std::memory_order_relaxed) != 0;
    batch_range const held{slot.held_begin.load(std::memory_order_relaxed),
                           slot.held_end.load(std::memory_order_relaxed)};
    // A task calling exit(0) also ends a worker with status 0: lost work
    // tells it from a worker that ran out of batches.
    if (end.signal == 0 && end.status == 0 && !in_task && held.empty() && !worker.timed_out_task) return;
    std::optional<std::size_t> task = worker.timed_out_task;
    if (!task && in_task) task = slot.current_task.load(std::memory_order_relaxed);
    last_death_ = death{pid, end, task, worker.timed_out_task.has_value()};
    if (killing_all_ || error_ || call_.stopped()) return;  // the call ends anyway
    int const attempts = ++attempts_[task.value_or(held.empty() ? call_.task_count() : held.begin)];
    if (attempts <= settings_.retries) {
      if (warm_ == nullptr) process::prepare_to_fork();
      start(w, task ? batch_range{*task, std::max(held.end, *task + 1)} : held);
      return;
    }
    fail_with(death_error(*last_death_, attempts));
  }

  std::exception_ptr death_error(death const& d, int attempts) const {
    if (d.task && d.timed_out) {
      return std::make_exception_ptr(timeout_error(
          fmt::format("task {} ran longer than its timeout of {} s; its worker process {} was killed{}", *d.task,
                      settings_.task_timeout->count(), d.pid,
                      attempts > 1 ? fmt::format(" (the task ran {} times)", attempts) : std::string()),
          d.task, *settings_.task_timeout));
    }
    return std::make_exception_ptr(worker_crashed(d.task, d.pid, d.end.signal, d.end.status, attempts));
  }

  void fail_with(std::exception_ptr error) {
    if (!error_ && !call_.failed()) error_ = std::move(error);
    call_.cancel();
  }

  void check_timeouts(clock_type::time_point now) {
    if (deadline_ && now >= *deadline_ && !killing_all_) {
      killing_all_ = true;
      std::size_t const running =
          static_cast<std::size_t>(std::count(running_.begin(), running_.end(), true));
      fail_with(std::make_exception_ptr(timeout_error(
          fmt::format("the call ran longer than its timeout of {} s: {} of {} tasks were done, and its {} running "
                      "worker processes were killed",
                      settings_.call_timeout->count(), call_.done_count(), call_.task_count(), running),
          std::nullopt, *settings_.call_timeout)));
      for (std::size_t w = 0; w < worker_count_; ++w)
        if (running_[w]) worker(w).kill();
    }
    if (!settings_.task_timeout) return;
    auto const limit = std::chrono::duration_cast<clock_type::duration>(*settings_.task_timeout);
    for (std::size_t w = 0; w < worker_count_; ++w) {
      worker_process& worker = this->worker(w);
      if (!running_[w] || worker.timed_out_task) continue;
      process::worker_slot const& slot = *slots_[w];
      if (slot.in_task.load(std::memory_order_relaxed) == 0) {
        worker.watched_task.reset();
        continue;
      }
      std::size_t const task = slot.current_task.load(std::memory_order_relaxed);
      if (worker.watched_task != task) {
        worker.watched_task = task;
        worker.watched_since = now;
      } else if (now - worker.watched_since > limit) {
        worker.timed_out_task = task;
        worker.kill();
      }
    }
  }

  // Timeouts are checked at a tenth of the task timeout (1 to 100 ms), and
  // at the call's deadline; otherwise only workers wake the caller.
  int poll_timeout_ms(clock_type::time_point now) const {
    double ms = -1.0;
    if (settings_.task_timeout) ms = std::clamp(settings_.task_timeout->count() * 100.0, 1.0, 100.0);
    if (deadline_) {
      double const left = std::max(0.0, std::chrono::duration<double, std::milli>(*deadline_ - now).count()) + 1.0;
      ms = ms < 0 ? left : std::min(ms, left);
    }
    return ms < 0 ? -1 : static_cast<int>(std::ceil(std::min(ms, 1e9)));
  }

  // A worker can die after taking a batch but before saying which (between
  // the counter and its slot). Such tasks show up as missing at the end:
  // re-run them if retries allow, else fail. Returns true if a worker was
  // started for them.
  bool rerun_lost_tasks() {
    // Only the tasks handed out in this run (a backend spanning machines
    // runs a range of the call at a time; see batch_call::dispatch).
    batch_range const handed_out = call_.dispatched();
    if (error_ || call_.stopped()) return false;
    auto const range_end = covered_.begin() + static_cast<std::ptrdiff_t>(handed_out.end);
    auto const first = std::find(covered_.begin() + static_cast<std::ptrdiff_t>(handed_out.begin), range_end, false);
    if (first == range_end) return false;
    auto const last = std::find(first, range_end, true);
    batch_range const lost{static_cast<std::size_t>(first - covered_.begin()),
                           static_cast<std::size_t>(last - covered_.begin())};
    if (!last_death_) {
      fail_with(std::make_exception_ptr(
          error(fmt::format("tasks {} to {} never ran and no worker died: a bug in xjob", lost.begin, lost.end - 1))));
      return false;
    }
    int const attempts = ++attempts_[lost.begin];
    if (attempts > settings_.retries) {
      death d = *last_death_;
      d.task = lost.begin;
      fail_with(death_error(d, attempts));
      return false;
    }
    if (warm_ == nullptr) process::prepare_to_fork();
    start(0, lost);
    return true;
  }

  batch_call& call_;
  backend_settings const& settings_;
  warm::worker_set* const warm_;
  std::size_t const worker_count_;
  int const cpu_share_;
  mapped_region block_;
  mapped_region payload_region_;  // a large remote form's payload
  std::size_t slots_at_ = 0;
  std::size_t rings_at_ = 0;
  process::call_header* header_ = nullptr;
  std::vector<process::worker_slot*> slots_;
  std::vector<std::byte*> rings_;
  std::vector<process::record_receiver> receivers_;
  std::vector<worker_process> own_workers_;  // forked for the call
  std::vector<bool> running_;                // in the call: not yet done, dead or reaped
  std::vector<std::size_t> starts_;          // how often each worker was started in the call
  detail::unique_fd wake_fd_;
  warm::call_request request_;  // for warm workers
  std::vector<int> fds_;        // handed with it: wake_fd_, the block, the arrays
  std::vector<bool> covered_;
  std::map<std::size_t, int> attempts_;
  std::exception_ptr error_;
  std::optional<death> last_death_;
  std::optional<clock_type::time_point> deadline_;
  bool killing_all_ = false;
};

class processes_backend final : public backend {
 public:
  explicit processes_backend(backend_settings const& settings) : settings_(settings) {}

  void run(batch_call& call) override {
    if (std::string const why = call.runner().results_stay_in_process(); !why.empty()) throw invalid_argument(why);
    start_method const method = settings_.start_method;
    if (call.remote() != nullptr && settings_.reuse_workers) {
      if (std::shared_ptr<warm::worker_set> set = warm::find_worker_set(settings_.n_jobs, method)) {
        // One call at a time on a set; another call meanwhile (from another
        // thread) forks its own workers, or waits where it cannot fork.
        std::unique_lock<std::mutex> lock = set->try_acquire();
        if (!lock && method != start_method::fork) lock = set->acquire();
        if (lock) {
          // The idle clock starts once the set is free for the keeper.
          struct end_of_call {
            std::unique_lock<std::mutex>& lock;
            warm::worker_set& set;
            std::chrono::duration<double> idle_timeout;
            ~end_of_call() {
              lock.unlock();
              set.call_ended(idle_timeout);
            }
          } const ending{lock, *set, settings_.idle_timeout};
          call_supervisor(call, settings_, set.get()).run();
          return;
        }
      } else if (method != start_method::fork) {
        throw invalid_argument(fmt::format(
            "start method {} cannot be used in process {}: it is a forked copy of the program (a worker process, "
            "or a fork of it), whose warm workers belong to the original; use start method fork here",
            to_string(method), getpid()));
      }
    }
    if (method != start_method::fork)
      throw invalid_argument(fmt::format(
          "start method {} runs only calls whose callable has no captures (a plain function or a lambda without "
          "captures, its data passed as arguments or shared arrays) and whose items and arguments own their data "
          "(no pointers or views){}: a worker started that way holds none of the caller's memory, so neither a "
          "closure's captures nor what a pointer points to can reach it. Use start method fork for this call",
          to_string(method), settings_.reuse_workers ? "" : ", and only with reuse_workers"));
    call_supervisor(call, settings_, nullptr).run();
  }

  [[nodiscard]] backend_capabilities capabilities() const noexcept override {
    return {.results_cross_address_spaces = true,
            .outputs_need_shared_memory = true,
            .isolates_crashes = true,
            .runs_remote_forms = settings_.reuse_workers};
  }

 private:
  backend_settings settings_;
};

std::unique_ptr<backend> make_processes_backend(backend_settings const& settings) {
  return std::make_unique<processes_backend>(settings);
}

// Registered when the library is loaded: this backend is a target of its own
// (alwayslink), which the front end's layer does not depend on.
[[maybe_unused]] bool const registered = (register_backend("processes", &make_processes_backend), true);

}  // namespace

}  // namespace xjob::detail
