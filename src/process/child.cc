#include "child.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "fd.hpp"

namespace xjob::detail::process {

int open_child_pidfd(pid_t pid) {
  // Not on 0-2 (see fd.hpp); pidfds are close-on-exec already.
  int const fd = move_above_stdio(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (fd < 0) {
    int const saved = errno;
    ::kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw_errno(saved, "cannot open a pidfd for a child process");
  }
  return fd;
}

void signal_child(int pidfd, int signal) noexcept { syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0); }

child_end wait_child(int pidfd, bool block) noexcept {
  siginfo_t info{};
  int result = 0;
  do {
    result = waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | (block ? 0 : WNOHANG));
  } while (result < 0 && errno == EINTR);
  if (result < 0) return {true, errno, 0, -1};
  if (info.si_pid == 0) return {};
  if (info.si_code == CLD_EXITED) return {true, 0, 0, info.si_status};
  return {true, 0, info.si_status, -1};
}

}  // namespace xjob::detail::process
