// Private to xjob::ipc: a condition variable made of a futex (a word of
// shared memory waited on with src/core/futex.hpp).
//
// Why not a process-shared pthread_cond_t: glibc's condition variable (2.36,
// Debian 12) is not robust against a waiter that is killed. A waiter holds a
// reference to its group (__g_refs) while it sleeps; killed there, it never
// drops it, and the next signal that switches groups waits for that
// reference forever, while holding the queue's mutex: every process then
// hangs. The kernel, by contrast, removes a dead waiter from a futex's wait
// queue, so the futex-based event below cannot be wedged by a death.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <optional>

#include <xjob/ipc/detail/block.hpp>
#include <xjob/ipc/lock.hpp>

#include "src/core/futex.hpp"

namespace xjob::ipc::detail {

// The futex wrapper and its timespec are core's (src/core/futex.hpp).
using xjob::detail::futex_wait;
using xjob::detail::futex_wake;
using xjob::detail::to_timespec;

// A condition variable in shared memory, used with a mutex_state. Every
// notification wakes all waiters (they are few: processes, not tasks), so a
// waiter that dies right after being woken cannot swallow a wake-up.
struct shared_event {
  std::atomic<std::uint32_t> sequence;  // bumped by every notification
  std::atomic<std::uint32_t> waiters;   // an upper bound: a dead waiter stays counted (costing a system call)

  // With `lock` held: releases it, sleeps until notified or `until`, and
  // takes it back. Returns false if the deadline passed. As with any
  // condition variable, recheck the condition in a loop.
  bool wait(mutex_state& lock, std::optional<deadline> until);
  // With the lock held.
  void notify_all() noexcept;
};

}  // namespace xjob::ipc::detail
