// process_pool: one supervisor thread per pool starts the workers, hands each
// idle worker the next task over its socket, completes futures, and replaces
// workers that die, retire (max_tasks_per_child) or are needed again after
// an idle timeout. Workers run one task at a time, so a dead worker's task
// is known exactly; map chunks amortise the round trip.
#include <xjob/process_pool.hpp>

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <sstream>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include <xjob/cpu_count.hpp>
#include <xjob/init.hpp>
#include <xjob/parallel_config.hpp>
#include <xjob/worker.hpp>

#include "child.hpp"
#include "frame_channel.hpp"
#include "src/core/fd.hpp"
#include "worker_launcher.hpp"

namespace xjob {

namespace detail {

namespace {

using clock_type = std::chrono::steady_clock;
using process::decode_failure;
using process::encode_failure;
using process::failure_record;

constexpr char const* pool_entry_name = "xjob.pool";
// A frame stalled this long mid-way means its sender is stopped or dead
// (see process::limit_frame_stalls).
constexpr int frame_stall_seconds = 10;
// Failed worker starts in a row before the pool is broken.
constexpr int max_start_failures = 5;

// The kinds of frames on a worker's socket (see frame_channel.hpp).
enum class frame_kind : std::uint32_t {
  hello = 1,      // pool -> worker: index, initializer; the note's memfd attached
  task = 2,       // pool -> worker: an encoded remote_call
  quit = 3,       // pool -> worker: exit now
  task_from = 4,  // pool -> worker, with retries: how to run the next task (task_settings)
  ready = 10,        // worker -> pool: initialised, waiting for tasks
  init_failed = 11,  // worker -> pool: the initializer threw (type, message)
  result = 12,       // worker -> pool: the task's encoded result
  failure = 13,      // worker -> pool: the task threw (offset, type, message)
  item_result = 14,  // worker -> pool, with retries: one item's encoded result
};

// How a worker runs its next map chunk: from which item (the ones before
// finished in an earlier attempt), and whether it sends each item's result
// at once.
struct task_settings {
  std::uint64_t first_item = 0;
  std::uint8_t per_item = 0;
};

bool send_frame(int fd, frame_kind kind, std::string_view payload, std::span<int const> fds = {}) noexcept {
  return process::send_frame(fd, static_cast<std::uint32_t>(kind), payload, fds);
}

// Reads one frame; false at end of stream, on an error, or on a frame with
// more descriptors than `max_fds` (only the hello carries one).
bool receive_frame(int fd, frame_kind& kind, std::string& payload, std::vector<detail::unique_fd>& fds,
                   std::size_t max_fds = 0) {
  std::uint32_t raw = 0;
  fds.clear();
  if (!process::receive_frame(fd, raw, payload, fds) || fds.size() > max_fds) return false;
  kind = static_cast<frame_kind>(raw);
  return true;
}

bool receive_frame(int fd, frame_kind& kind, std::string& payload) {
  std::vector<detail::unique_fd> fds;
  return receive_frame(fd, kind, payload, fds);
}

// A word the pool and one worker share (a memfd, so that every start
// method can map it): the worker's chunk_run.note.
class shared_note {
 public:
  shared_note() : fd_(detail::create_memfd("xjob-pool-note", sizeof(std::atomic<std::uint64_t>))) { map(fd_.get()); }
  // The worker's side, from the descriptor the hello carried.
  explicit shared_note(int fd) { map(fd); }
  shared_note(shared_note&& other) noexcept
      : fd_(std::move(other.fd_)), word_(std::exchange(other.word_, nullptr)) {}
  shared_note& operator=(shared_note&& other) noexcept {
    if (this != &other) {
      unmap();
      fd_ = std::move(other.fd_);
      word_ = std::exchange(other.word_, nullptr);
    }
    return *this;
  }
  ~shared_note() { unmap(); }

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] std::atomic<std::uint64_t>* word() const noexcept { return word_; }

 private:
  void map(int fd) {
    void* const at = mmap(nullptr, sizeof(std::atomic<std::uint64_t>), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (at == MAP_FAILED) throw_errno(errno, "cannot map a pool worker's note");
    word_ = new (at) std::atomic<std::uint64_t>(0);
  }
  void unmap() noexcept {
    if (word_ != nullptr) munmap(word_, sizeof(std::atomic<std::uint64_t>));
    word_ = nullptr;
  }

  detail::unique_fd fd_;
  std::atomic<std::uint64_t>* word_ = nullptr;
};

struct hello_message {
  int index = 0;
  std::optional<remote_call> initializer;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(index, initializer);
  }
};

// Workers leave through _exit: the program's atexit handlers and static
// destructors belong to the caller.
[[noreturn]] void leave(int status) noexcept {
  std::fflush(nullptr);
  _exit(status);
}

// The worker's end of its channel, for chunk_run.send_item.
int worker_channel = -1;

bool send_item_result(std::string_view encoded) {
  return send_frame(worker_channel, frame_kind::item_result, encoded);
}

// The worker's whole life.
[[noreturn]] void pool_worker_main(int channel) noexcept {
  worker_channel = channel;
  frame_kind kind{};
  std::string payload;
  std::string result;
  try {
    std::vector<detail::unique_fd> fds;
    if (!receive_frame(channel, kind, payload, fds, 1) || kind != frame_kind::hello || fds.size() != 1) leave(0);
    auto const hello = decode_value<hello_message>(payload, "the pool's hello");
    set_worker_index(hello.index);
    // Kept for the worker's life (it leaves through _exit).
    static shared_note note(fds[0].get());
    chunk_run.note = note.word();
    if (hello.initializer) {
      try {
        run_remote(*hello.initializer, result);
      } catch (...) {
        task_failure const failure = describe_current_exception(0);
        (void)send_frame(channel, frame_kind::init_failed,
                         encode_failure({failure_record::no_task, failure.type_name, failure.message}));
        leave(1);
      }
    }
    if (!send_frame(channel, frame_kind::ready, {})) leave(0);
    for (;;) {
      if (!receive_frame(channel, kind, payload)) leave(0);
      chunk_run.first_item = 0;
      chunk_run.send_item = nullptr;
      if (kind == frame_kind::task_from) {
        if (payload.size() != sizeof(task_settings)) leave(3);
        task_settings settings;
        std::memcpy(&settings, payload.data(), sizeof settings);
        chunk_run.first_item = static_cast<std::size_t>(settings.first_item);
        if (settings.per_item != 0) chunk_run.send_item = &send_item_result;
        if (!receive_frame(channel, kind, payload)) leave(0);
      }
      if (kind != frame_kind::task) leave(0);
      result.clear();
      failure_record failed;
      bool ok = false;
      try {
        run_remote(decode_value<remote_call>(payload, "a task"), result);
        ok = true;
      } catch (chunk_item_failure const& item) {
        failed = {item.failure.task_index, item.failure.type_name, item.failure.message};
      } catch (...) {
        task_failure const failure = describe_current_exception(0);
        failed = {failure_record::no_task, failure.type_name, failure.message};
      }
      bool const sent = ok ? send_frame(channel, frame_kind::result, result)
                           : send_frame(channel, frame_kind::failure, encode_failure(failed));
      if (!sent) leave(0);
    }
  } catch (...) {
    // Out of memory or a malformed frame: the pool sees the worker die.
    leave(3);
  }
}

// Throwers for pool_job::raise.
std::function<void()> raise_pool_broken(std::string why) {
  return [why = std::move(why)] { throw pool_broken(why); };
}
std::function<void()> raise_task_cancelled(std::string why) {
  return [why = std::move(why)] { throw task_cancelled(why); };
}

[[maybe_unused]] bool const pool_entry_registered = process::register_worker_entry(pool_entry_name, pool_worker_main);

}  // namespace

bool job_done(job_status status) noexcept {
  return status == job_status::finished || status == job_status::failed || status == job_status::cancelled;
}

job_status job_status_of(pool_job& job) noexcept {
  std::lock_guard lock(job.board->mutex);
  return job.status;
}

void wait_job(pool_job& job) {
  std::unique_lock lock(job.board->mutex);
  job.board->changed.wait(lock, [&] { return job_done(job.status); });
}

bool wait_job_until(pool_job& job, deadline until) {
  std::unique_lock lock(job.board->mutex);
  return job.board->changed.wait_until(lock, until, [&] { return job_done(job.status); });
}

bool cancel_job(pool_job& job) noexcept {
  std::lock_guard lock(job.board->mutex);
  if (job.status != job_status::pending) return job.status == job_status::cancelled;
  job.status = job_status::cancelled;
  job.raise = raise_task_cancelled(fmt::format("task {} was cancelled", job.first_task));
  job.board->changed.notify_all();
  return true;
}

bool wait_jobs(std::span<pool_job* const> jobs, jobs_predicate const& done,
               std::optional<deadline> until) {
  std::vector<job_status> statuses(jobs.size());
  if (jobs.empty()) return done(statuses);
  bool const one_board = std::all_of(jobs.begin(), jobs.end(), [&](pool_job* j) { return j->board == jobs[0]->board; });
  if (one_board) {
    pool_board& board = *jobs[0]->board;
    std::unique_lock lock(board.mutex);
    auto const holds = [&] {
      for (std::size_t i = 0; i < jobs.size(); ++i) statuses[i] = jobs[i]->status;
      return done(statuses);
    };
    if (!until) {
      board.changed.wait(lock, holds);
      return true;
    }
    return board.changed.wait_until(lock, *until, holds);
  }
  // Futures of several pools: look every millisecond.
  for (;;) {
    for (std::size_t i = 0; i < jobs.size(); ++i) statuses[i] = job_status_of(*jobs[i]);
    if (done(statuses)) return true;
    if (until && clock_type::now() >= *until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

wait_result wait_for_jobs(std::span<pool_job* const> jobs, return_when when,
                          std::optional<deadline> until) {
  auto satisfied = [&](std::span<job_status const> statuses) {
    std::size_t finished = 0;
    for (job_status const status : statuses) {
      if (!job_done(status)) continue;
      ++finished;
      if (when == return_when::first_completed) return true;
      if (when == return_when::first_exception && status == job_status::failed) return true;
    }
    return finished == statuses.size();
  };
  (void)wait_jobs(jobs, satisfied, until);
  wait_result result;
  for (std::size_t i = 0; i < jobs.size(); ++i)
    (job_done(job_status_of(*jobs[i])) ? result.done : result.not_done).push_back(i);
  return result;
}

class pool_core {
 public:
  explicit pool_core(pool_options const& options)
      : method_(options.start_method),
        initializer_(options.initializer.call() != nullptr ? std::optional(*options.initializer.call()) : std::nullopt),
        max_tasks_per_child_(options.max_tasks_per_child),
        idle_timeout_(options.idle_timeout),
        retries_(options.retries),
        task_timeout_(options.task_timeout),
        board_(std::make_shared<pool_board>()),
        target_(resolve_n_jobs(options.processes)) {
    if (retries_ < 0) throw invalid_argument(fmt::format("pool_options::retries must be 0 or more, not {}", retries_));
    if (task_timeout_ && !(task_timeout_->count() > 0))
      throw invalid_argument(
          fmt::format("pool_options::task_timeout must be positive, not {} s", task_timeout_->count()));
    if (method_ != start_method::fork && !initialized())
      throw invalid_argument(fmt::format("start method {} needs xjob::init(argc, argv) at the top of main",
                                         to_string(method_)));
    // Not on 0-2 (see fd.hpp): a worker forked later would take it as its
    // stdin or stdout.
    wake_fd_.reset(detail::move_above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
    if (!wake_fd_) throw_errno(errno, "cannot create an eventfd for a process pool");
    // Workers are started by the supervisor thread: a forked worker dies
    // with the thread that forked it (PR_SET_PDEATHSIG), and that thread
    // lives exactly as long as the pool. The first ones start before the
    // constructor returns, so a pool that cannot start fails here.
    std::promise<void> started;
    auto first_workers = started.get_future();
    int const first_count = target_;
    supervisor_ = std::make_unique<std::thread>([this, &started, first_count] {
      try {
        for (int i = 0; i < first_count; ++i) start_worker(first_count);
        publish_pids();
      } catch (...) {
        for (worker& w : workers_) kill_and_reap(w);
        workers_.clear();
        started.set_exception(std::current_exception());
        return;
      }
      started.set_value();
      supervise();
    });
    try {
      first_workers.get();
    } catch (...) {
      supervisor_->join();
      throw;
    }
  }

  pool_core(pool_core const&) = delete;
  pool_core& operator=(pool_core const&) = delete;

  ~pool_core() { shutdown(shutdown_mode::finish_pending); }

  std::shared_ptr<pool_job> enqueue(remote_call const& call, std::size_t first_task,
                                    std::vector<std::shared_ptr<void const>> staged) {
    require_owner("cannot take tasks");
    auto job = std::make_shared<pool_job>();
    job->board = board_;
    job->request = encode_value(call);
    job->staged = std::move(staged);
    {
      std::lock_guard lock(board_->mutex);
      if (stopping_ || broken_)
        throw pool_broken(broken_ ? broken_why_ : std::string("the process pool was shut down; it takes no more tasks"));
      job->chunk = first_task != SIZE_MAX;
      job->first_task = first_task != SIZE_MAX ? first_task : submitted_++;
      pending_.push_back(job);
    }
    wake();
    return job;
  }

  void resize(int processes) {
    require_owner("cannot be resized");
    int const count = resolve_n_jobs(processes);
    {
      std::lock_guard lock(board_->mutex);
      target_ = count;
    }
    wake();
  }

  void shutdown(shutdown_mode mode) {
    // A forked copy of the owner (a task's exit() running static
    // destructors) has no supervisor thread to stop or join.
    if (getpid() != owner_) {
      (void)supervisor_.release();
      return;
    }
    {
      std::lock_guard lock(board_->mutex);
      if (!stopping_ || mode > mode_) mode_ = mode;
      stopping_ = true;
    }
    wake();
    std::lock_guard join_lock(join_mutex_);
    if (supervisor_->joinable()) supervisor_->join();
  }

  int size() const noexcept {
    std::lock_guard lock(board_->mutex);
    return target_;
  }

  std::vector<int> pids() const {
    std::lock_guard lock(board_->mutex);
    return pids_;
  }

  start_method method() const noexcept { return method_; }
  int target_for_chunks() const noexcept { return size(); }

 private:
  enum class worker_state { starting, idle, busy, retiring };

  // A forked copy of the owner has the pool's memory but neither its
  // supervisor thread (fork copies only the forking thread) nor its workers
  // (children of the owner): a task queued there would never run, and its
  // future never complete.
  void require_owner(char const* what) const {
    pid_t const self = getpid();
    if (self != owner_)
      throw error(fmt::format("this process_pool {} in process {}: it belongs to process {}, which made it, and "
                              "this process is a forked copy of that one, where no supervisor or worker of the "
                              "pool runs; make a new process_pool here",
                              what, self, owner_));
  }

  struct worker {
    process::child_process child;
    detail::unique_fd channel;
    shared_note note;  // which item of a map chunk it runs
    int index = 0;
    // task_timeout: the note last seen, since when, and whether the worker
    // was killed for it.
    std::uint64_t watched_note = 0;
    clock_type::time_point watched_since{};
    bool timed_out = false;
    worker_state state = worker_state::starting;
    std::shared_ptr<pool_job> job;
    std::size_t tasks_done = 0;
    clock_type::time_point idle_since{};
  };

  void wake() noexcept {
    std::uint64_t const one = 1;
    [[maybe_unused]] ssize_t const ignored = write(wake_fd_.get(), &one, sizeof one);
  }

  // `pool_size` is the worker count the pool aims for: each worker's share
  // of the CPUs for nested parallelism follows from it.
  void start_worker(int pool_size) {
    int const share = std::max(1, cpu_count() / std::max(1, pool_size));
    process::launched_worker launched = process::launch_worker(method_, pool_entry_name, share);
    worker w;
    w.child = std::move(launched.child);
    w.channel = std::move(launched.channel);
    w.index = next_index_++;
    // On a throw here, w's destructor kills and reaps it.
    workers_.push_back(std::move(w));
    // A worker that cannot be told hello is killed; its pidfd reports it.
    worker& started = workers_.back();
    (void)process::limit_frame_stalls(started.channel.get(), frame_stall_seconds);
    int const note_fd = started.note.fd();
    if (!send_frame(started.channel.get(), frame_kind::hello, encode_value(hello_message{started.index, initializer_}),
                    std::span(&note_fd, 1)))
      kill(started);
  }

  static void kill_and_reap(worker& w) noexcept {
    w.child.kill();
    (void)w.child.wait(true);
    w.channel.reset();
  }

  void publish_pids() {
    std::vector<int> pids;
    for (worker const& w : workers_) pids.push_back(w.child.pid());
    std::lock_guard lock(board_->mutex);
    pids_ = std::move(pids);
  }

  // Completes `job` (under the board's mutex) and wakes its waiters.
  void complete(pool_job& job, job_status status, std::string result, std::function<void()> raise) {
    // Its arguments in shared memory are no longer needed (unmapped after
    // the lock is let go).
    auto const staged = std::move(job.staged);
    std::lock_guard lock(board_->mutex);
    job.status = status;
    job.result = std::move(result);
    job.raise = std::move(raise);
    board_->changed.notify_all();
  }

  void break_pool(std::string why) {
    std::deque<std::shared_ptr<pool_job>> pending;
    {
      std::lock_guard lock(board_->mutex);
      if (!broken_) {
        broken_ = true;
        broken_why_ = std::move(why);
      }
      pending.swap(pending_);
      for (auto& job : pending)
        if (job->status == job_status::pending) {
          job->status = job_status::failed;
          job->raise = raise_pool_broken(broken_why_);
        }
      board_->changed.notify_all();
    }
    for (worker& w : workers_)
      if (w.state == worker_state::idle || w.state == worker_state::starting) retire(w);
  }

  void retire(worker& w) noexcept {
    if (w.state == worker_state::retiring) return;
    // A worker that cannot be told to quit would never exit by itself.
    if (!send_frame(w.channel.get(), frame_kind::quit, {})) kill(w);
    w.state = worker_state::retiring;
  }

  static void kill(worker const& w) noexcept { w.child.kill(); }

  // The supervisor cannot go on (poll failed, out of memory): fail what
  // waits and runs, rather than leave it waiting forever.
  void abandon(std::string const& why) noexcept {
    for (worker& w : workers_) {
      if (w.job) {
        try {
          complete(*w.job, job_status::failed, {}, raise_pool_broken(why));
        } catch (...) {
        }
      }
      w.job.reset();
      kill_and_reap(w);
    }
    workers_.clear();
    try {
      break_pool(why);
      publish_pids();
    } catch (...) {
    }
  }

  void supervise() noexcept {
    try {
      supervise_loop();
    } catch (std::exception const& e) {
      abandon(fmt::format("the process pool's supervisor failed: {}", e.what()));
    } catch (...) {
      abandon("the process pool's supervisor failed");
    }
  }

  void supervise_loop() {
    process::worker_poll polled(wake_fd_.get());
    for (;;) {
      int target = 0;
      bool stopping = false;
      shutdown_mode mode = shutdown_mode::finish_pending;
      bool have_pending = false;
      bool broken = false;
      {
        std::lock_guard lock(board_->mutex);
        target = target_;
        stopping = stopping_;
        mode = mode_;
        broken = broken_;
        while (!pending_.empty() && pending_.front()->status == job_status::cancelled) pending_.pop_front();
        if (stopping && mode != shutdown_mode::finish_pending) {
          for (auto& job : pending_)
            if (job->status == job_status::pending) {
              job->status = mode == shutdown_mode::kill_workers ? job_status::failed : job_status::cancelled;
              job->raise = mode == shutdown_mode::kill_workers
                               ? raise_pool_broken(
                                     "the process pool was shut down (kill_workers) before this task started")
                               : raise_task_cancelled(
                                     fmt::format("task {} was cancelled by the pool's shutdown", job->first_task));
            }
          pending_.clear();
          board_->changed.notify_all();
        }
        have_pending = !pending_.empty();
      }
      if (stopping && mode == shutdown_mode::kill_workers) {
        for (worker& w : workers_) {
          if (w.job)
            complete(*w.job, job_status::failed, {},
                     raise_pool_broken(fmt::format("the process pool was shut down (kill_workers) while task {} ran",
                                                   w.job->first_task)));
          w.job.reset();
          kill_and_reap(w);
        }
        workers_.clear();
        publish_pids();
        return;
      }
      manage_workers(target, stopping, have_pending, broken);
      dispatch();
      check_task_timeouts();
      if (stopping && workers_.empty()) {
        publish_pids();
        return;
      }
      for (std::size_t i = 0; i < workers_.size(); ++i)
        polled.watch(i, workers_[i].channel.get(), workers_[i].child.pidfd());
      std::vector<std::pair<std::size_t, process::worker_poll::seen>> found;
      try {
        found = polled.wait(poll_timeout_ms());
      } catch (std::system_error const& e) {
        abandon(fmt::format("the process pool's supervisor {}", e.what()));
        return;
      }
      std::vector<std::size_t> dead;
      for (auto const& [w, seen] : found) {
        // A dead worker's frames are read by on_death, whole ones only.
        if (seen.ended || !on_message(workers_[w])) dead.push_back(w);
      }
      std::sort(dead.begin(), dead.end());
      dead.erase(std::unique(dead.begin(), dead.end()), dead.end());
      for (auto it = dead.rbegin(); it != dead.rend(); ++it) on_death(*it);
      if (!dead.empty()) publish_pids();
    }
  }

  // Starts and retires workers so that the pool has `target` of them, less
  // those an idle timeout let go while nothing is pending. A pool that is
  // stopping keeps workers while tasks are pending (finish_pending).
  void manage_workers(int target, bool stopping, bool have_pending, bool broken) {
    auto const now = clock_type::now();
    if (broken || (stopping && !have_pending)) {
      // Busy workers are retired once their task is done.
      for (worker& w : workers_)
        if (w.state != worker_state::busy) retire(w);
      return;
    }
    int active = static_cast<int>(std::count_if(workers_.begin(), workers_.end(),
                                                [](worker const& w) { return w.state != worker_state::retiring; }));
    // Shrink: idle workers first, then busy ones after their task.
    for (worker& w : workers_) {
      if (active <= target) break;
      if (w.state == worker_state::idle || w.state == worker_state::starting) {
        retire(w);
        --active;
      }
    }
    if (idle_timeout_ && !have_pending) {
      auto const limit = std::chrono::duration_cast<clock_type::duration>(*idle_timeout_);
      for (worker& w : workers_)
        if (w.state == worker_state::idle && now - w.idle_since >= limit) {
          retire(w);
          --active;
        }
    }
    bool grew = false;
    // Grow: to the target, except that after an idle timeout workers come
    // back only when there is work.
    int const wanted = idle_timeout_ && !have_pending ? active : target;
    for (; active < wanted && now >= next_start_; ++active) {
      try {
        start_worker(target);
        grew = true;
      } catch (std::exception const& e) {
        on_start_failure(fmt::format("the process pool cannot start a worker: {}", e.what()));
        break;
      }
    }
    if (grew) publish_pids();
  }

  void dispatch() {
    for (worker& w : workers_) {
      if (w.state != worker_state::idle) continue;
      std::shared_ptr<pool_job> job;
      {
        std::lock_guard lock(board_->mutex);
        while (!pending_.empty() && !job) {
          auto next = std::move(pending_.front());
          pending_.pop_front();
          if (next->status != job_status::pending) continue;
          next->status = job_status::running;
          job = std::move(next);
        }
      }
      if (!job) return;
      w.note.word()->store(0, std::memory_order_relaxed);  // no item of this task run yet
      bool sent = true;
      if (retries_ > 0 || job->resume_at > 0) {
        task_settings const settings{job->resume_at, static_cast<std::uint8_t>(retries_ > 0 && job->chunk ? 1 : 0)};
        sent = send_frame(w.channel.get(), frame_kind::task_from,
                          std::string_view(reinterpret_cast<char const*>(&settings), sizeof settings));
      }
      if (!sent || !send_frame(w.channel.get(), frame_kind::task, job->request)) {
        // The worker died; its pidfd will say so. The task goes back first.
        std::lock_guard lock(board_->mutex);
        job->status = job_status::pending;
        pending_.push_front(std::move(job));
        kill(w);
        w.state = worker_state::retiring;
        continue;
      }
      w.job = std::move(job);
      w.state = worker_state::busy;
      w.watched_note = 0;
      w.watched_since = clock_type::now();
    }
  }

  // Kills a worker whose task (or map item) has run past task_timeout: the
  // note moves on with every item, so each item has the whole limit.
  void check_task_timeouts() {
    if (!task_timeout_) return;
    auto const now = clock_type::now();
    auto const limit = std::chrono::duration_cast<clock_type::duration>(*task_timeout_);
    for (worker& w : workers_) {
      if (w.state != worker_state::busy || w.timed_out) continue;
      std::uint64_t const note = w.note.word()->load(std::memory_order_relaxed);
      if (note != w.watched_note) {
        w.watched_note = note;
        w.watched_since = now;
      } else if (now - w.watched_since >= limit) {
        w.timed_out = true;
        kill(w);  // its pidfd reports the death
      }
    }
  }

  // Handles one frame from `w`; false if its channel ended.
  bool on_message(worker& w) {
    frame_kind kind{};
    std::string payload;
    if (!receive_frame(w.channel.get(), kind, payload)) return false;
    switch (kind) {
      case frame_kind::ready:
        if (w.state == worker_state::starting) w.state = worker_state::idle;
        start_failures_ = 0;
        w.idle_since = clock_type::now();
        break;
      case frame_kind::init_failed: {
        failure_record failure;
        try {
          failure = decode_failure(payload, "an initializer failure");
        } catch (std::exception const& e) {
          failure.message = e.what();
        }
        break_pool(fmt::format("the process pool's initializer failed in worker process {}: {}: {}", w.child.pid(),
                               failure.type_name, failure.message));
        w.state = worker_state::retiring;
        break;
      }
      case frame_kind::item_result:
        if (w.job) {
          w.job->streamed.append(payload);
          ++w.job->streamed_count;
        }
        break;
      case frame_kind::result:
      case frame_kind::failure: {
        if (!w.job) break;
        std::shared_ptr<pool_job> job = std::move(w.job);
        if (kind == frame_kind::result) {
          if (job->streamed_count > 0) {
            // Its items' results came one by one (retries): the chunk's
            // result is their count, then them.
            std::uint64_t const count = job->streamed_count;
            payload.assign(reinterpret_cast<char const*>(&count), sizeof count);
            payload += job->streamed;
            job->streamed.clear();
          }
          complete(*job, job_status::finished, std::move(payload), nullptr);
        } else {
          failure_record failure;
          try {
            failure = decode_failure(payload, "a task failure");
          } catch (std::exception const& e) {
            failure.type_name = "xjob::error";
            failure.message = e.what();
          }
          std::size_t const index =
              failure.task != failure_record::no_task ? job->first_task + failure.task : job->first_task;
          complete(*job, job_status::failed, {},
                   [index, type_name = failure.type_name, message = failure.message] {
                     throw task_error(index, type_name, message);
                   });
        }
        ++w.tasks_done;
        if (max_tasks_per_child_ != 0 && w.tasks_done >= max_tasks_per_child_) {
          w.state = worker_state::idle;
          retire(w);
        } else if (w.state == worker_state::busy) {
          w.state = worker_state::idle;
          w.idle_since = clock_type::now();
        }
        break;
      }
      default:
        break;
    }
    return true;
  }

  // Where in its map chunk a dead worker was (0 for a task that is not a
  // chunk, whose note stays 0).
  static std::size_t crashed_item_offset(worker const& w) noexcept {
    std::uint64_t const note = w.note.word()->load(std::memory_order_relaxed);
    return note > 0 ? static_cast<std::size_t>(note - 1) : 0;
  }

  void on_death(std::size_t index) {
    worker& w = workers_[index];
    // What it sent before it died (item results, even its task's result)
    // counts; only whole frames, since one it died in the middle of never
    // completes.
    while (w.channel && process::whole_frame_waiting(w.channel.get()) && on_message(w)) {
    }
    process::child_end end = w.child.wait(false);
    if (!end.ended) {
      // Its channel ended but it lives (a task closed the socket, or it is
      // on its way out): a worker the pool cannot talk to is of no use.
      kill(w);
      end = w.child.wait(true);
    }
    w.channel.reset();
    int const signal = end.signal;
    int const status = end.status;
    if (w.job) {
      std::shared_ptr<pool_job> job = std::move(w.job);
      // The item it was running. With results sent item by item, those
      // received are exactly the items that finished (a death right after
      // an item's result, before the note moved on, must not run it again).
      std::size_t const item = std::max(crashed_item_offset(w), static_cast<std::size_t>(job->streamed_count));
      // Items before `item` finished; the count is of runs from the same
      // item that ended like this.
      job->attempts = item == job->resume_at ? job->attempts + 1 : 1;
      job->resume_at = item;
      if (job->attempts <= retries_) {
        std::lock_guard lock(board_->mutex);
        job->status = job_status::pending;
        pending_.push_front(std::move(job));
      } else if (w.timed_out) {
        complete(*job, job_status::failed, {},
                 [task = job->first_task + item, limit = *task_timeout_, attempts = job->attempts] {
                   throw timeout_error(fmt::format("task {} ran longer than its task_timeout of {} s ({} attempt{}); "
                                                   "its worker process was killed",
                                                   task, limit.count(), attempts, attempts == 1 ? "" : "s"),
                                       task, limit);
                 });
      } else {
        complete(*job, job_status::failed, {},
                 [task = job->first_task + item, pid = w.child.pid(), signal, status, attempts = job->attempts] {
                   throw worker_crashed(task, pid, signal, status, attempts);
                 });
      }
    } else if (w.state == worker_state::starting) {
      on_start_failure(fmt::format("a worker process of the pool died while starting: {}",
                                   worker_crashed(std::nullopt, w.child.pid(), signal, status, 1).what()));
    }
    workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(index));
  }

  // A worker could not be started, or died before it was ready (the OOM
  // killer, a crash in the initializer): tried again after 10, 20, 40 ...
  // ms; after max_start_failures in a row the pool is broken. An
  // initializer that throws breaks it at once (init_failed).
  void on_start_failure(std::string why) {
    ++start_failures_;
    {
      std::lock_guard lock(board_->mutex);
      if (broken_) return;
    }
    if (start_failures_ >= max_start_failures) {
      break_pool(fmt::format("{} (the last of {} failed starts in a row)", why, start_failures_));
      return;
    }
    next_start_ = clock_type::now() + std::chrono::milliseconds(10) * (1 << (start_failures_ - 1));
  }

  int poll_timeout_ms() const {
    double timeout_ms = -1;
    auto at_most = [&](double ms) { timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms); };
    if (idle_timeout_) at_most(std::clamp(idle_timeout_->count() * 250.0, 1.0, 1000.0));
    if (task_timeout_ && std::any_of(workers_.begin(), workers_.end(),
                                     [](worker const& w) { return w.state == worker_state::busy; }))
      at_most(std::clamp(task_timeout_->count() * 100.0, 1.0, 100.0));
    auto const now = clock_type::now();
    if (next_start_ > now)
      at_most(1.0 + std::chrono::duration<double, std::milli>(next_start_ - now).count());
    return static_cast<int>(timeout_ms);
  }

  start_method const method_;
  std::optional<remote_call> const initializer_;
  std::size_t const max_tasks_per_child_;
  std::optional<std::chrono::duration<double>> const idle_timeout_;
  int const retries_;
  std::optional<std::chrono::duration<double>> const task_timeout_;
  std::shared_ptr<pool_board> board_;
  // The supervisor's: failed starts in a row, and when to try again.
  int start_failures_ = 0;
  clock_type::time_point next_start_{};

  // Guarded by board_->mutex.
  int target_;
  bool stopping_ = false;
  shutdown_mode mode_ = shutdown_mode::finish_pending;
  bool broken_ = false;
  std::string broken_why_;
  std::deque<std::shared_ptr<pool_job>> pending_;
  std::size_t submitted_ = 0;
  std::vector<int> pids_;

  // The supervisor's own (and the constructor's, before it starts).
  std::vector<worker> workers_;
  int next_index_ = 0;
  detail::unique_fd wake_fd_;

  pid_t const owner_ = getpid();
  std::mutex join_mutex_;
  std::unique_ptr<std::thread> supervisor_;
};

}  // namespace detail

process_pool::process_pool(pool_options options) : core_(std::make_shared<detail::pool_core>(options)) {}
process_pool::process_pool(process_pool&&) noexcept = default;
process_pool& process_pool::operator=(process_pool&& other) noexcept {
  if (this != &other) {
    if (core_) core_->shutdown(shutdown_mode::finish_pending);
    core_ = std::move(other.core_);
  }
  return *this;
}
process_pool::~process_pool() {
  if (core_) core_->shutdown(shutdown_mode::finish_pending);
}

std::shared_ptr<detail::pool_job> process_pool::enqueue(detail::remote_call call, std::size_t first_task,
                                                        std::vector<std::shared_ptr<void const>> staged) {
  if (!core_) throw pool_broken("this process_pool was moved from");
  return core_->enqueue(call, first_task, std::move(staged));
}

std::size_t process_pool::worker_count_for_chunks() const noexcept {
  return core_ ? static_cast<std::size_t>(std::max(1, core_->target_for_chunks())) : 1;
}

void process_pool::resize(int processes) {
  if (!core_) throw pool_broken("this process_pool was moved from");
  core_->resize(processes);
}

void process_pool::shutdown(shutdown_mode mode) {
  if (core_) core_->shutdown(mode);
}

int process_pool::size() const noexcept { return core_ ? core_->size() : 0; }
std::vector<int> process_pool::pids() const { return core_ ? core_->pids() : std::vector<int>{}; }
start_method process_pool::start_method() const noexcept {
  return core_ ? core_->method() : start_method::fork;
}

}  // namespace xjob
