#include "src/core/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <xjob/errors.hpp>

namespace xjob::detail {

timespec to_timespec(deadline when) noexcept {
  auto const since = when.time_since_epoch();
  auto const seconds = std::chrono::duration_cast<std::chrono::seconds>(since);
  timespec result{};
  result.tv_sec = static_cast<time_t>(seconds.count());
  result.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since - seconds).count());
  if (result.tv_sec < 0) result = timespec{};
  return result;
}

bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::optional<deadline> until) {
  timespec at{};
  if (until) at = to_timespec(*until);
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (plain
  // FUTEX_WAIT a relative one).
  long const rc = syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_BITSET, expected,
                          until ? &at : nullptr, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return true;
  switch (errno) {
    case ETIMEDOUT: return false;
    case EAGAIN:  // the word changed before we slept
    case EINTR: return true;
    default: throw_errno(errno, "cannot wait on shared memory (futex)");
  }
}

void futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

}  // namespace xjob::detail
