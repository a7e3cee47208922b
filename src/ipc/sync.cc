#include "sync.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <system_error>

#include <xjob/errors.hpp>

namespace xjob::ipc::detail {

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
  // FUTEX_WAIT a relative one). No FUTEX_PRIVATE_FLAG: the word is shared.
  long const rc = syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_BITSET, expected,
                          until ? &at : nullptr, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return true;
  switch (errno) {
    case ETIMEDOUT: return false;
    case EAGAIN:  // the word changed before we slept
    case EINTR: return true;
    default: xjob::detail::throw_errno(errno, "cannot wait on shared memory (futex)");
  }
}

void futex_wake_all(std::atomic<std::uint32_t>& word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool shared_event::wait(mutex_state& lock, std::optional<deadline> until) {
  std::uint32_t const seen = sequence.load(std::memory_order_relaxed);
  waiters.fetch_add(1, std::memory_order_relaxed);
  unlock_mutex_state(lock);
  bool woken = true;
  try {
    woken = futex_wait(sequence, seen, until);
  } catch (...) {
    (void)lock_mutex_state(lock, std::nullopt);
    waiters.fetch_sub(1, std::memory_order_relaxed);
    throw;
  }
  (void)lock_mutex_state(lock, std::nullopt);
  waiters.fetch_sub(1, std::memory_order_relaxed);
  return woken;
}

void shared_event::notify_all() noexcept {
  // Bumped under the lock: a waiter read the sequence under the lock before
  // sleeping, so it either sees the bump or is already asleep to be woken.
  sequence.fetch_add(1, std::memory_order_release);
  if (waiters.load(std::memory_order_relaxed) != 0) futex_wake_all(sequence);
}

}  // namespace xjob::ipc::detail
