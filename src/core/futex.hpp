// Waiting on a 32-bit word of memory that processes share: one futex wrapper
// for every layer (the processes backend's result rings, the ipc
// primitives). No FUTEX_PRIVATE_FLAG, so that waiters and wakers in
// different processes meet; the kernel drops a waiter that dies, so a
// death cannot wedge a futex. Thread-safe.
//   while (word.load() == 1) (void)futex_wait(word, 1, deadline_after(20ms));
//   word.store(0); futex_wake(word, 1);
#pragma once

#include <time.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <optional>

#include <xjob/detail/deadline.hpp>

namespace xjob::detail {

// `when` as a timespec on CLOCK_MONOTONIC (0 for a time before the epoch).
[[nodiscard]] timespec to_timespec(deadline when) noexcept;

// Sleeps while `word` holds `expected`, until woken or `until` (forever if
// empty). Returns false if the deadline passed; true when woken, when the
// word differed, or on a signal (callers recheck their condition). Throws
// std::system_error "cannot wait on shared memory (futex)" on any other
// failure (a bad address).
bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::optional<deadline> until);

// Wakes up to `count` processes and threads waiting on `word`.
void futex_wake(std::atomic<std::uint32_t>& word, int count = INT_MAX) noexcept;

}  // namespace xjob::detail
