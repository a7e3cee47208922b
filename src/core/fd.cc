#include "src/core/fd.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <fmt/format.h>

namespace xjob::detail {

void unique_fd::reset(int fd) noexcept {
  // close() is not retried on EINTR: on Linux the descriptor is gone anyway,
  // and a retry could close one that another thread just opened.
  if (fd_ >= 0 && fd_ != fd) (void)close(fd_);
  fd_ = fd;
}

int move_above_stdio(int fd) noexcept {
  if (fd < 0 || fd > 2) return fd;
  int const moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int const saved = errno;
  (void)close(fd);
  errno = saved;
  return moved;
}

unique_fd create_memfd(char const* name, std::size_t bytes) {
  unique_fd fd(move_above_stdio(memfd_create(name, MFD_CLOEXEC)));
  if (!fd) throw_errno(errno, "cannot create shared memory (memfd_create)");
  if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    throw_errno(errno, fmt::format("cannot size shared memory to {} bytes", bytes));
  return fd;
}

void write_all_at(int fd, void const* data, std::size_t bytes, std::size_t at, std::string const& what) {
  auto const* p = static_cast<char const*>(data);
  for (std::size_t written = 0; written < bytes;) {
    ssize_t const n = pwrite(fd, p + written, bytes - written, static_cast<off_t>(at + written));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, what);
    }
    written += static_cast<std::size_t>(n);
  }
}

void make_socket_pair(int type, unique_fd& first, unique_fd& second, std::string const& what_for) {
  int fds[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0)
    throw_errno(errno, "cannot create a socket pair for " + what_for);
  // Both taken at once, so that neither leaks if the other cannot be moved.
  unique_fd a(move_above_stdio(fds[0]));
  int const first_errno = errno;
  unique_fd b(move_above_stdio(fds[1]));
  if (!a || !b)
    throw_errno(!a ? first_errno : errno, "cannot move a socket of " + what_for + " above the standard streams");
  first = std::move(a);
  second = std::move(b);
}

}  // namespace xjob::detail
