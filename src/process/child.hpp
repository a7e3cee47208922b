// A child process watched through a pidfd: opened right after the fork,
// signalled without ever hitting a recycled pid, and waited for. Shared by
// the processes backend, process_pool and xjob::process.
#pragma once

#include <sys/types.h>

namespace xjob::detail::process {

// How waiting for a child went.
struct child_end {
  bool ended = false;  // false: still running (a wait that does not block)
  int error = 0;       // errno of a failed wait (ECHILD: reaped elsewhere, e.g. SIGCHLD ignored); how it ended is then unknown
  int signal = 0;      // the signal that ended it, or 0
  int status = -1;     // its exit status, or -1 if a signal ended it
};

// A pidfd for child `pid`. If none can be opened, the child is killed and
// reaped (no zombie) and std::system_error is thrown.
[[nodiscard]] int open_child_pidfd(pid_t pid);

// Sends `signal` to the child of `pidfd`.
void signal_child(int pidfd, int signal) noexcept;

// Collects the child if it ended; with `block`, waits until it does. The
// pidfd stays open.
[[nodiscard]] child_end wait_child(int pidfd, bool block) noexcept;

}  // namespace xjob::detail::process
