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

#include "src/core/fd.hpp"
#include "src/process/child.hpp"

namespace xjob::detail {

// How a worker ended: killed by `signal`, or exited with `status`.
struct worker_end {
  int signal = 0;
  int status = 0;
};

class worker_process {
 public:
  // Takes the started child (and its channel, for a warm worker).
  void started(process::child_process child, detail::unique_fd channel = {}) noexcept {
    child_ = std::move(child);
    channel_ = std::move(channel);
  }

  [[nodiscard]] bool alive() const noexcept { return child_.watched(); }
  [[nodiscard]] pid_t pid() const noexcept { return child_.pid(); }
  [[nodiscard]] int pidfd() const noexcept { return child_.pidfd(); }
  [[nodiscard]] int channel() const noexcept { return channel_.get(); }

  void kill() const noexcept { child_.kill(); }

  // Waits for the worker to end and collects it.
  worker_end reap() noexcept {
    process::child_end const end = child_.wait(true);
    channel_.reset();
    // A failed wait: its status is unknown, so only lost work can tell.
    if (end.error != 0) return {};
    return {end.signal, end.status};
  }

  // Whether it ended already (reaped then), without waiting.
  bool ended() noexcept {
    if (!alive()) return true;
    if (!child_.wait(false).ended) return false;
    channel_.reset();
    return true;
  }

  // The supervisor's notes on the worker during a call.
  std::optional<std::size_t> timed_out_task;  // killed for running this task too long
  std::optional<std::size_t> watched_task;    // the task it was seen running, and since when
  std::chrono::steady_clock::time_point watched_since{};

 private:
  // Declared first, destroyed last: the child is killed and reaped after
  // its channel closed.
  process::child_process child_;
  detail::unique_fd channel_;
};

}  // namespace xjob::detail
