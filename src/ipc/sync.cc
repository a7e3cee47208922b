#include "sync.hpp"

namespace xjob::ipc::detail {

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
  if (waiters.load(std::memory_order_relaxed) != 0) futex_wake(sequence);
}

}  // namespace xjob::ipc::detail
