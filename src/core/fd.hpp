// Descriptors of every layer (shared memory, ipc, processes): one owning
// type, one rule for where a new descriptor may live, one way to report a
// failed system call.
//
// The rule: no descriptor xjob makes (socket pair ends, eventfds, pidfds,
// memfds) stays on 0, 1 or 2. A program that closed stdin or stdout (a
// daemon) gets its next descriptor there; a worker forked afterwards takes
// it as its stdout, and a printf in that worker would write into another
// worker's channel.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include <xjob/errors.hpp>

namespace xjob::detail {

// A file descriptor, closed on destruction. Move-only; not thread-safe.
//   unique_fd wake(move_above_stdio(eventfd(0, EFD_CLOEXEC)));
//   if (!wake) throw_errno(errno, "cannot create an eventfd");
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  unique_fd(unique_fd const&) = delete;
  unique_fd& operator=(unique_fd const&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held, if any, and holds `fd` instead.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// `fd` itself if it is 3 or more (or negative: a failed call's result
// passes through, errno intact). Otherwise a duplicate at the lowest free
// descriptor from 3 on, close-on-exec, and `fd` is closed; if no duplicate
// can be made, `fd` is closed too and -1 is returned with errno set.
// Async-signal-safe. Call it on every descriptor the moment it is made:
//   int const fd = move_above_stdio(memfd_create("xjob", MFD_CLOEXEC));
[[nodiscard]] int move_above_stdio(int fd) noexcept;

// A new memfd of `bytes` bytes (close-on-exec, not on 0-2), named `name` in
// /proc/<pid>/fd. Throws std::system_error "cannot create shared memory
// (memfd_create)" or "cannot size shared memory to <bytes> bytes".
//   unique_fd fd = create_memfd("xjob-shm", 4096);
[[nodiscard]] unique_fd create_memfd(char const* name, std::size_t bytes);

// Both ends of a new AF_UNIX socket pair of `type` (SOCK_CLOEXEC is added),
// neither on 0, 1 or 2. Throws std::system_error "cannot create a socket
// pair for <what_for>".
void make_socket_pair(int type, unique_fd& first, unique_fd& second, std::string const& what_for);

// Writes all `bytes` from `data` at offset `at` of the file `fd` (pwrite,
// again after a short write or EINTR). Throws std::system_error "<what>".
void write_all_at(int fd, void const* data, std::size_t bytes, std::size_t at, std::string const& what);

// System calls that fail are reported with detail::throw_errno
// (<xjob/errors.hpp>).

}  // namespace xjob::detail
