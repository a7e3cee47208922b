// One worker process of the processes backend, forked for a call or warm
// (kept between calls): owned through its pidfd, killed and reaped at the
// latest by the destructor, so no path leaves a zombie.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>

#include "src/process/child.hpp"
#include "src/process/fd.hpp"

namespace xjob::detail {

// How a worker ended: killed by `signal`, or exited with `status`.
struct worker_end {
  int signal = 0;
  int status = 0;
};

class worker_process {
 public:
  worker_process() = default;
  worker_process(worker_process&& other) noexcept { *this = std::move(other); }
  worker_process& operator=(worker_process&& other) noexcept {
    if (this != &other) {
      stop();
      pid_ = std::exchange(other.pid_, -1);
      pidfd_ = std::move(other.pidfd_);
      channel_ = std::move(other.channel_);
    }
    return *this;
  }
  ~worker_process() { stop(); }

  // Takes the child `pid` (and its channel, for a warm worker). Throws
  // std::system_error if no pidfd can be opened (the child is then killed
  // and reaped).
  void started(pid_t pid, process::unique_fd channel = {}) {
    channel_ = std::move(channel);
    pidfd_.reset(process::open_child_pidfd(pid));
    pid_ = pid;
  }

  [[nodiscard]] bool alive() const noexcept { return static_cast<bool>(pidfd_); }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] int pidfd() const noexcept { return pidfd_.get(); }
  [[nodiscard]] int channel() const noexcept { return channel_.get(); }

  void kill() const noexcept { process::signal_child(pidfd_.get(), SIGKILL); }

  // Waits for the worker to end and collects it.
  worker_end reap() noexcept {
    process::child_end const end = process::wait_child(pidfd_.get(), true);
    pidfd_.reset();
    channel_.reset();
    // A failed wait (reaped elsewhere): its status is unknown, so only lost
    // work can tell.
    if (end.error != 0) return {};
    return {end.signal, end.status};
  }

  // Whether it ended already (reaped then), without waiting.
  bool ended() noexcept {
    if (!alive()) return true;
    process::child_end const end = process::wait_child(pidfd_.get(), false);
    if (!end.ended) return false;
    pidfd_.reset();
    channel_.reset();
    return true;
  }

  // The supervisor's notes on the worker during a call.
  std::optional<std::size_t> timed_out_task;  // killed for running this task too long
  std::optional<std::size_t> watched_task;    // the task it was seen running, and since when
  std::chrono::steady_clock::time_point watched_since{};

 private:
  void stop() noexcept {
    if (alive()) {
      kill();
      (void)reap();
    }
  }

  pid_t pid_ = -1;
  process::unique_fd pidfd_;
  process::unique_fd channel_;
};

}  // namespace xjob::detail
