// "processes": for each call, n_jobs worker processes forked from the caller.
// Forked workers already hold everything the tasks use (closures, their
// captures, input arrays), so nothing is serialised on the way out; workers
// take batches from the call's fork-shared counter (no system call per
// batch) and send results back through rings in shared memory. The caller
// supervises: it collects results, reaps workers through pidfds, tells
// which task a dead or stuck worker was running, re-runs it on a fresh
// worker when retries allow, and enforces the timeouts.
#include <fcntl.h>
#include <poll.h>
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
#include <xjob/errors.hpp>
#include <xjob/worker.hpp>

#include "src/process/child.hpp"
#include "src/process/fork_support.hpp"
#include "src/process/worker_channel.hpp"

namespace xjob::detail {

namespace {

using clock_type = std::chrono::steady_clock;
using seconds = std::chrono::duration<double>;

// How long the caller waits for its other threads to go idle before forking.
constexpr std::chrono::microseconds fork_patience(10'000);

[[noreturn]] void throw_errno(std::string const& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::size_t round_up(std::size_t bytes, std::size_t unit) { return (bytes + unit - 1) / unit * unit; }

// How a worker ended: killed by `signal`, or exited with `status`.
struct worker_end {
  int signal = 0;
  int status = 0;
};

// One forked worker; killed and reaped at the latest by the destructor, so
// no path leaves a zombie.
class worker_process {
 public:
  worker_process() = default;
  worker_process(worker_process const&) = delete;
  worker_process& operator=(worker_process const&) = delete;
  ~worker_process() {
    if (alive()) {
      kill();
      (void)reap();
    }
  }

  void started(pid_t pid) {
    pidfd_ = process::open_child_pidfd(pid);
    pid_ = pid;
    timed_out_task.reset();
    watched_task.reset();
  }

  [[nodiscard]] bool alive() const noexcept { return pidfd_ >= 0; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] int pidfd() const noexcept { return pidfd_; }

  void kill() const noexcept { process::signal_child(pidfd_, SIGKILL); }

  // Waits for the worker to end and collects it.
  worker_end reap() noexcept {
    process::child_end const end = process::wait_child(pidfd_, true);
    close(pidfd_);
    pidfd_ = -1;
    // A failed wait (reaped elsewhere): its status is unknown, so only lost
    // work can tell.
    if (end.error != 0) return {};
    return {end.signal, end.status};
  }

  // Set when the supervisor killed the worker for running a task too long.
  std::optional<std::size_t> timed_out_task;
  // The task the supervisor saw the worker run, and since when.
  std::optional<std::size_t> watched_task;
  clock_type::time_point watched_since{};

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
};

// One call on worker processes, from the first fork to the last reap.
class call_supervisor {
 public:
  call_supervisor(batch_call& call, backend_settings const& settings)
      : call_(call),
        settings_(settings),
        worker_count_(static_cast<std::size_t>(
            std::clamp<std::size_t>(call.task_count(), 1, static_cast<std::size_t>(call.worker_count())))),
        caller_pid_(getpid()),
        cpu_share_(std::max(1, cpu_count() / static_cast<int>(worker_count_))),
        workers_(worker_count_),
        covered_(call.task_count(), false) {
    std::size_t const slots_at = round_up(sizeof(process::call_header), 4096);
    std::size_t const rings_at = round_up(slots_at + worker_count_ * sizeof(process::worker_slot), 4096);
    block_ = mapped_region::anonymous(rings_at + worker_count_ * process::ring_bytes, region_fill::unspecified);
    header_ = new (block_.base()) process::call_header();
    for (std::size_t w = 0; w < worker_count_; ++w) {
      slots_.push_back(new (block_.base() + slots_at + w * sizeof(process::worker_slot)) process::worker_slot());
      rings_.push_back(block_.base() + rings_at + w * process::ring_bytes);
      receivers_.emplace_back(*slots_.back(), rings_.back());
    }
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw_errno("creating an eventfd for worker processes");
    header_->wake_fd = wake_fd_;
    if (settings_.call_timeout)
      deadline_ = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(*settings_.call_timeout);
  }

  call_supervisor(call_supervisor const&) = delete;
  call_supervisor& operator=(call_supervisor const&) = delete;

  // Workers still alive are killed and reaped by their own destructors,
  // which run before the shared block is unmapped.
  ~call_supervisor() { close(wake_fd_); }

  void run() {
    process::prepare_to_fork(fork_patience);
    for (std::size_t w = 0; w < worker_count_; ++w) spawn(w, {});
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

  void spawn(std::size_t w, batch_range retry) {
    process::worker_slot* slot = new (slots_[w]) process::worker_slot();
    slot->retry_begin = retry.begin;
    slot->retry_end = retry.end;
    receivers_[w].reset();
    pid_t const pid = fork();
    if (pid < 0) throw_errno("forking a worker process");
    if (pid == 0) work_in_child(w);
    workers_[w].started(pid);
  }

  // The worker's whole life; never returns into the caller's code.
  [[noreturn]] void work_in_child(std::size_t w) noexcept {
    if (!process::become_worker(caller_pid_, cpu_share_)) _exit(1);
    set_worker_index(static_cast<int>(w));
    process::worker_slot& slot = *slots_[w];
    process::record_sender sender(*header_, slot, rings_[w], call_.reports_progress());
    std::string bytes;
    batch_cursor cursor{static_cast<int>(w), 1, {}};
    auto run_batch = [&](batch_range batch, bool tune) {
      slot.held_begin.store(batch.begin, std::memory_order_relaxed);
      slot.held_end.store(batch.end, std::memory_order_relaxed);
      slot.in_task.store(1, std::memory_order_relaxed);
      batch_outcome outcome = call_.execute_batch(batch, &slot.current_task);
      slot.in_task.store(0, std::memory_order_relaxed);
      if (outcome.completed_end > batch.begin) {
        bytes.clear();
        call_.runner().save_results(batch.begin, outcome.completed_end, bytes);
        sender.send(process::record_kind::results, batch.begin, outcome.completed_end, bytes);
      }
      if (outcome.failure)
        sender.send_failure(outcome.failure->task_index, outcome.failure->type_name, outcome.failure->message);
      slot.held_end.store(batch.begin, std::memory_order_relaxed);
      if (tune) call_.tune_batch_size(cursor, batch, outcome.completed_end);
      return !outcome.failure;
    };
    try {
      if (slot.retry_end > slot.retry_begin && !call_.stopped()) (void)run_batch({slot.retry_begin, slot.retry_end}, false);
      for (;;) {
        batch_range const batch = call_.next_batch(cursor);
        if (batch.empty() || !run_batch(batch, true)) break;
      }
    } catch (...) {
      // A result that cannot be encoded (out of memory, a throwing save()).
      task_failure failure = describe_current_exception(slot.held_begin.load(std::memory_order_relaxed));
      call_.cancel();
      sender.send_failure(failure.task_index, failure.type_name,
                          "its result could not be sent back from the worker: " + failure.message);
      slot.in_task.store(0, std::memory_order_relaxed);
      slot.held_end.store(slot.held_begin.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    std::fflush(nullptr);
    _exit(0);
  }

  // Collects results and ends of workers until none is alive.
  void supervise() {
    std::vector<pollfd> polled;
    std::vector<std::size_t> polled_worker;
    for (;;) {
      bool const progressed = drain_all();
      check_timeouts(clock_type::now());
      if (std::none_of(workers_.begin(), workers_.end(), [](auto const& w) { return w.alive(); })) return;
      if (progressed) continue;
      // Sleep, unless a worker published between the drain and now.
      header_->caller_sleeping.store(1, std::memory_order_seq_cst);
      if (std::any_of(receivers_.begin(), receivers_.end(), [](auto const& r) { return r.has_unpublished_data(); })) {
        header_->caller_sleeping.store(0, std::memory_order_relaxed);
        continue;
      }
      polled.assign(1, pollfd{wake_fd_, POLLIN, 0});
      polled_worker.assign(1, 0);
      for (std::size_t w = 0; w < worker_count_; ++w)
        if (workers_[w].alive()) {
          polled.push_back(pollfd{workers_[w].pidfd(), POLLIN, 0});
          polled_worker.push_back(w);
        }
      int const ready = poll(polled.data(), polled.size(), poll_timeout_ms(clock_type::now()));
      header_->caller_sleeping.store(0, std::memory_order_relaxed);
      if (ready < 0 && errno != EINTR) throw_errno("waiting for worker processes");
      if (ready <= 0) continue;
      if (polled[0].revents != 0) {
        std::uint64_t count = 0;
        [[maybe_unused]] ssize_t const ignored = read(wake_fd_, &count, sizeof count);
      }
      for (std::size_t i = 1; i < polled.size(); ++i)
        if (polled[i].revents != 0) on_exit(polled_worker[i]);
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
      auto [type_name, message] = process::decode_failure(record.payload);
      call_.fail(task_failure{begin, std::move(type_name), std::move(message), nullptr});
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
    worker_process& worker = workers_[w];
    pid_t const pid = worker.pid();
    worker_end const end = worker.reap();
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
      process::prepare_to_fork(fork_patience);
      spawn(w, held);
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
      std::size_t const running = static_cast<std::size_t>(
          std::count_if(workers_.begin(), workers_.end(), [](auto const& w) { return w.alive(); }));
      fail_with(std::make_exception_ptr(timeout_error(
          fmt::format("the call ran longer than its timeout of {} s: {} of {} tasks were done, and its {} running "
                      "worker processes were killed",
                      settings_.call_timeout->count(), call_.done_count(), call_.task_count(), running),
          std::nullopt, *settings_.call_timeout)));
      for (worker_process& worker : workers_)
        if (worker.alive()) worker.kill();
    }
    if (!settings_.task_timeout) return;
    auto const limit = std::chrono::duration_cast<clock_type::duration>(*settings_.task_timeout);
    for (std::size_t w = 0; w < worker_count_; ++w) {
      worker_process& worker = workers_[w];
      if (!worker.alive() || worker.timed_out_task) continue;
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
    if (error_ || call_.stopped() || call_.done_count() >= call_.task_count()) return false;
    auto const first = std::find(covered_.begin(), covered_.end(), false);
    auto const last = std::find(first, covered_.end(), true);
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
    process::prepare_to_fork(fork_patience);
    spawn(0, lost);
    return true;
  }

  batch_call& call_;
  backend_settings const& settings_;
  std::size_t const worker_count_;
  pid_t const caller_pid_;
  int const cpu_share_;
  mapped_region block_;
  process::call_header* header_ = nullptr;
  std::vector<process::worker_slot*> slots_;
  std::vector<std::byte*> rings_;
  std::vector<process::record_receiver> receivers_;
  std::vector<worker_process> workers_;
  int wake_fd_ = -1;
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
    call_supervisor(call, settings_).run();
  }

  [[nodiscard]] bool runs_out_of_process() const noexcept override { return true; }

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
