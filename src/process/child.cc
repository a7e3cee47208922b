#include "child.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "frame_channel.hpp"

namespace xjob::detail::process {

namespace {

// What a go-between tells the caller, in order: started (value: the child's
// pid) or fork_failed (value: errno); then, once the child ended, exited
// (value: its status) or killed (value: the signal).
struct relay_record {
  enum kind_type : std::int32_t { started, fork_failed, exited, killed };
  std::int32_t kind = started;
  std::int32_t value = 0;
};

// The go-between's life after it forked `child`: hand the child's pid over,
// keep the child unreaped (its pid cannot be recycled) until the caller
// has its pidfd and says so, then wait for it and report how it ended.
[[noreturn]] void relay_child_end(int socket, pid_t child) noexcept {
  relay_record const started{relay_record::started, child};
  char ready = 0;
  if (!send_all(socket, reinterpret_cast<char const*>(&started), sizeof started) ||
      !receive_all(socket, &ready, 1))
    ::kill(child, SIGKILL);  // the caller is gone or gave the child up
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(child), &info, WEXITED) < 0 && errno == EINTR) {
  }
  relay_record const end = info.si_code == CLD_EXITED ? relay_record{relay_record::exited, info.si_status}
                                                      : relay_record{relay_record::killed, info.si_status};
  (void)send_all(socket, reinterpret_cast<char const*>(&end), sizeof end);
  _exit(0);
}

int open_pidfd(pid_t pid) noexcept { return move_above_stdio(static_cast<int>(syscall(SYS_pidfd_open, pid, 0))); }

// Waits for the child of `pidfd`, a clone child or not (__WALL: xjob's
// clone children send no exit signal, and waitid without __WALL passes
// them over).
child_end wait_pidfd(int pidfd, bool block) noexcept {
  siginfo_t info{};
  int result = 0;
  do {
    result = waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | __WALL | (block ? 0 : WNOHANG));
  } while (result < 0 && errno == EINTR);
  if (result < 0) return {true, errno, 0, -1};
  if (info.si_pid == 0) return {};
  if (info.si_code == CLD_EXITED) return {true, 0, 0, info.si_status};
  return {true, 0, info.si_status, -1};
}

}  // namespace

child_process::child_process(pid_t pid) : pid_(pid) {
  pidfd_.reset(open_pidfd(pid));
  if (!pidfd_) {
    int const saved = errno;
    ::kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
    }
    throw_errno(saved, "cannot open a pidfd for a child process");
  }
}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    relay_ = std::move(other.relay_);
    go_between_pidfd_ = std::move(other.go_between_pidfd_);
  }
  return *this;
}

void child_process::signal(int signal_number) const noexcept {
  if (pidfd_) syscall(SYS_pidfd_send_signal, pidfd_.get(), signal_number, nullptr, 0);
}

child_end child_process::wait(bool block) noexcept {
  if (!pidfd_) return {true, ECHILD, 0, -1};
  child_end end;
  if (!relay_) {
    end = wait_pidfd(pidfd_.get(), block);
    if (!end.ended) return end;
  } else {
    // The go-between reports the end moments after the child's pidfd
    // turns readable; once it is, waiting for the report is short.
    if (!block) {
      pollfd ended{pidfd_.get(), POLLIN, 0};
      if (poll(&ended, 1, 0) <= 0) return {};
    }
    relay_record record;
    if (!receive_all(relay_.get(), reinterpret_cast<char*>(&record), sizeof record)) {
      end = {true, ECHILD, 0, -1};  // the go-between was killed: the end is unknown
    } else if (record.kind == relay_record::exited) {
      end = {true, 0, 0, record.value};
    } else {
      end = {true, 0, record.value, -1};
    }
    relay_.reset();
    // It exits right after its report; the program's handler may reap it
    // first (ECHILD then). A fork server's go-between is the server's
    // child, which the server reaps.
    if (go_between_pidfd_) (void)wait_pidfd(go_between_pidfd_.get(), true);
    go_between_pidfd_.reset();
  }
  pidfd_.reset();
  return end;
}

void child_process::stop() noexcept {
  if (!pidfd_) return;
  kill();
  (void)wait(true);
}

bool sigchld_takes_children() noexcept {
  struct sigaction action {};
  if (sigaction(SIGCHLD, nullptr, &action) != 0) return false;
  return action.sa_handler != SIG_DFL || (action.sa_flags & SA_NOCLDWAIT) != 0;
}

bool fork_through_go_between(forked_child& side, std::string_view what, unique_fd& caller_end, pid_t& go_between) {
  pid_t const caller = getpid();
  unique_fd between_end;
  make_socket_pair(SOCK_STREAM, caller_end, between_end, "a go-between process");
  go_between = fork();
  if (go_between == 0) {
    caller_end.reset();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != caller) _exit(1);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    struct sigaction program_action {};
    sigaction(SIGCHLD, &default_action, &program_action);
    pid_t const self = getpid();
    pid_t const pid = fork();
    if (pid == 0) {
      close(between_end.release());
      sigaction(SIGCHLD, &program_action, nullptr);
      side.parent = self;
      return true;
    }
    if (pid < 0) {
      relay_record const failed{relay_record::fork_failed, errno};
      (void)send_all(between_end.get(), reinterpret_cast<char const*>(&failed), sizeof failed);
      _exit(1);
    }
    relay_child_end(between_end.get(), pid);
  }
  if (go_between < 0) throw_errno(errno, "cannot fork " + std::string(what) + " (its go-between)");
  return false;
}

child_process take_relayed_child(unique_fd relay, std::string_view what) {
  relay_record started;
  if (!receive_all(relay.get(), reinterpret_cast<char*>(&started), sizeof started) ||
      started.kind != relay_record::started) {
    int const code = started.kind == relay_record::fork_failed ? started.value : ECHILD;
    throw_errno(code, "cannot fork " + std::string(what) + " (from its go-between)");
  }
  child_process result;
  result.pid_ = started.value;
  // Cannot hit a recycled pid: the go-between has not reaped the child.
  result.pidfd_.reset(open_pidfd(result.pid_));
  if (!result.pidfd_) {
    int const code = errno;
    ::kill(result.pid_, SIGKILL);  // the go-between reaps it and goes
    throw_errno(code, "cannot open a pidfd for " + std::string(what));
  }
  // Should the go-between be dead already, so is the child (its
  // PR_SET_PDEATHSIG), and the relay says so.
  char const ready = 1;
  (void)send_all(relay.get(), &ready, 1);
  result.relay_ = std::move(relay);
  return result;
}

bool fork_child(child_process& child, forked_child& side, std::string_view what) {
  pid_t const caller = getpid();
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &side.caller_mask);
  if (!sigchld_takes_children()) {
    pid_t const pid = fork();
    if (pid == 0) {
      side.parent = caller;
      return true;
    }
    int const saved = errno;
    pthread_sigmask(SIG_SETMASK, &side.caller_mask, nullptr);
    if (pid < 0) throw_errno(saved, "cannot fork " + std::string(what));
    child = child_process(pid);
    return false;
  }

  unique_fd caller_end;
  pid_t between = -1;
  try {
    if (fork_through_go_between(side, what, caller_end, between)) return true;
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &side.caller_mask, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &side.caller_mask, nullptr);
  child_process go_between(between);  // killed and reaped if the relay fails
  child_process result = take_relayed_child(std::move(caller_end), what);
  result.go_between_pidfd_ = std::move(go_between.pidfd_);
  child = std::move(result);
  return false;
}

void worker_poll::watch(std::size_t tag, int channel, int pidfd) {
  if (polled_.empty()) polled_.push_back(pollfd{wake_fd_, POLLIN, 0});
  if (channel >= 0) polled_.push_back(pollfd{channel, POLLIN, 0});
  polled_.push_back(pollfd{pidfd, POLLIN, 0});
  watched_.push_back({tag, channel >= 0});
}

std::vector<std::pair<std::size_t, worker_poll::seen>> worker_poll::wait(int timeout_ms) {
  if (polled_.empty()) polled_.push_back(pollfd{wake_fd_, POLLIN, 0});
  int const ready = poll(polled_.data(), polled_.size(), timeout_ms);
  int const code = errno;
  std::vector<std::pair<std::size_t, seen>> found;
  if (ready > 0) {
    if (polled_[0].revents != 0) {
      std::uint64_t count = 0;
      [[maybe_unused]] ssize_t const ignored = read(wake_fd_, &count, sizeof count);
    }
    std::size_t entry = 1;
    for (watched const& worker : watched_) {
      seen now;
      if (worker.has_channel) now.message = polled_[entry++].revents != 0;
      now.ended = polled_[entry++].revents != 0;
      if (now.message || now.ended) found.emplace_back(worker.tag, now);
    }
  }
  polled_.clear();
  watched_.clear();
  if (ready < 0 && code != EINTR) throw_errno(code, "cannot wait for worker processes");
  return found;
}

}  // namespace xjob::detail::process
