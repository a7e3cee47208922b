// A child process watched through a pidfd: signalled without ever hitting a
// recycled pid, polled (its pidfd is readable once it ended), and waited for
// whatever the program does with SIGCHLD. The one child type of the process
// backend, process_pool and xjob::process.
//
// Why SIGCHLD matters: a program that ignores SIGCHLD (SIG_IGN or
// SA_NOCLDWAIT: the kernel reaps its children at once) or reaps in a handler
// (`while (waitpid(-1, nullptr, WNOHANG) > 0);`, common in servers) takes
// the exit status of any child that sends SIGCHLD, so a crashed worker
// would look like one that exited with 0. Children that xjob starts by
// clone (spawn, the fork server's workers) therefore send no exit signal at
// all, which neither disposition nor waitpid(-1) touches. A fork() child
// always sends SIGCHLD, so while SIGCHLD is not at its default, fork_child
// forks through a go-between: a single-threaded copy of the caller with
// SIGCHLD at its default, which forks the child, keeps it unreaped until
// the caller holds its pidfd, and hands its end over a socket.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "src/core/fd.hpp"
#include "fork_support.hpp"

namespace xjob::detail::process {

// How waiting for a child went.
struct child_end {
  bool ended = false;  // false: still running (a wait that does not block)
  int error = 0;       // errno of a failed wait; how it ended is then unknown
  int signal = 0;      // the signal that ended it, or 0
  int status = -1;     // its exit status, or -1 if a signal ended it
};

struct forked_child;

// Move-only. The destructor kills a child still watched and reaps it, so no
// path leaves a zombie. Not thread-safe.
//   child_process child(pid);                   // a child started by clone
//   child.kill();
//   child_end const end = child.wait(true);     // end.signal == SIGKILL
class child_process {
 public:
  child_process() noexcept = default;
  // Watches child `pid` of this process. Throws std::system_error if no
  // pidfd can be opened (the child is then killed and reaped).
  explicit child_process(pid_t pid);
  child_process(child_process&& other) noexcept { *this = std::move(other); }
  child_process& operator=(child_process&& other) noexcept;
  child_process(child_process const&) = delete;
  child_process& operator=(child_process const&) = delete;
  ~child_process() { stop(); }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  // Readable once the child ended; -1 once it has been waited for.
  [[nodiscard]] int pidfd() const noexcept { return pidfd_.get(); }
  // Whether it has not been waited for yet.
  [[nodiscard]] bool watched() const noexcept { return static_cast<bool>(pidfd_); }

  // Sends `signal_number`; nothing once the child has been waited for.
  void signal(int signal_number) const noexcept;
  void kill() const noexcept { signal(SIGKILL); }

  // Collects the child if it ended; with `block`, waits until it does.
  // Once it ended the pidfd is closed and watched() is false.
  [[nodiscard]] child_end wait(bool block) noexcept;

 private:
  friend bool fork_child(child_process& child, forked_child& side, std::string_view what);
  friend child_process take_relayed_child(unique_fd relay, std::string_view what);
  void stop() noexcept;

  pid_t pid_ = -1;
  unique_fd pidfd_;
  unique_fd relay_;            // the go-between's socket, if one forked the child
  unique_fd go_between_pidfd_;
};

// What the child side of fork_child gets: the process it must outlive
// (this process, or the go-between, see above), and the caller's signal
// mask. All signals stay blocked in the child, so that none of the caller's
// handlers runs in a half-made worker, until it restores that mask.
struct forked_child {
  pid_t parent = -1;
  sigset_t caller_mask{};
};

// fork(), watched: returns true in the child, false in the caller, where
// `child` then watches it. Throws std::system_error "cannot fork <what>".
// Workers are forked through fork_worker, below.
[[nodiscard]] bool fork_child(child_process& child, forked_child& side, std::string_view what);

// The one way xjob forks a worker (the processes backend per call, a
// process_pool or warm worker by start method fork, xjob::process): a
// fork_child whose child becomes a worker (become_worker, with
// `cpu_share` CPUs), gets the caller's signal mask back and runs `body`,
// which ends the process (_exit); should it return, the child exits with
// status 1. Returns in the caller only, with `child` watching the worker.
// Call prepare_to_fork first. Throws what fork_child throws.
//   fork_worker(child, cpu_share, "a worker process", [&] { serve(channel); _exit(0); });
template <class Body>
void fork_worker(child_process& child, int cpu_share, std::string_view what, Body&& body) {
  forked_child side;
  if (!fork_child(child, side, what)) return;
  if (!become_worker(side.parent, cpu_share)) _exit(1);
  pthread_sigmask(SIG_SETMASK, &side.caller_mask, nullptr);
  body();
  std::fflush(nullptr);
  _exit(1);
}

// The go-between itself, for fork_child and for a fork server that was
// forked (not cloned without an exit signal): forks a go-between, which
// sets SIGCHLD to its default, forks the child and relays how it ended
// over a socket. Returns true in the child (side.parent: the go-between),
// false in the caller, with `relay` the socket's other end and
// `go_between` its pid. All signals must be blocked; the child gets the
// caller's SIGCHLD disposition back. Throws std::system_error.
[[nodiscard]] bool fork_through_go_between(forked_child& side, std::string_view what, unique_fd& relay,
                                           pid_t& go_between);

// The relay's other end, in the process that will wait for the child:
// takes the child's pid, opens its pidfd (the go-between keeps the child
// unreaped until then) and says so. Throws std::system_error "cannot fork
// <what>" if the go-between could not fork it or is gone.
[[nodiscard]] child_process take_relayed_child(unique_fd relay, std::string_view what);

// The one wait of xjob's supervisors (a processes call's, a pool's): its
// wake eventfd, and per worker its channel (if it has one) and its pidfd,
// in one poll. Not thread-safe.
//   worker_poll poll(wake_fd);
//   poll.watch(w, channel, child.pidfd());
//   for (auto [w, seen] : poll.wait(timeout_ms)) { if (seen.message) ...; if (seen.ended) ...; }
class worker_poll {
 public:
  struct seen {
    bool message = false;  // the channel is readable (a message, or its end)
    bool ended = false;    // the pidfd is readable: the worker ended
  };

  explicit worker_poll(int wake_fd) noexcept : wake_fd_(wake_fd) {}

  // Watches worker `tag` in the next wait: `channel` (-1: none) and `pidfd`.
  void watch(std::size_t tag, int channel, int pidfd);

  // Waits up to `timeout_ms` (-1: no limit) for the eventfd, a channel or
  // a pidfd; empties the eventfd. Returns what it saw per watched worker
  // (those with something), in the order watched, and forgets them: the
  // next round watches anew. Empty after a timeout or a signal. Throws
  // std::system_error "cannot wait for worker processes".
  [[nodiscard]] std::vector<std::pair<std::size_t, seen>> wait(int timeout_ms);

 private:
  struct watched {
    std::size_t tag;
    bool has_channel;  // its entries: the channel (if any), then the pidfd
  };
  int wake_fd_;
  std::vector<pollfd> polled_;  // the eventfd, then each watched worker's
  std::vector<watched> watched_;
};

// Whether the program's SIGCHLD disposition could take a fork() child's
// exit status: SIG_IGN, SA_NOCLDWAIT, or a handler.
[[nodiscard]] bool sigchld_takes_children() noexcept;

}  // namespace xjob::detail::process
