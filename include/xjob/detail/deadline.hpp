// Deadlines: the one time type of every wait in xjob (ipc primitives,
// futex waits, process supervision). What: an absolute point on
// steady_clock, which is CLOCK_MONOTONIC in libstdc++, the clock of the
// futex and pthread_mutex_clocklock waits. Needs nothing; throws nothing;
// thread-safe (pure functions).
//   auto const until = xjob::detail::deadline_after(std::chrono::milliseconds(20));
//   while (!ready() && std::chrono::steady_clock::now() < until) wait_a_bit();
#pragma once

#include <chrono>
#include <type_traits>

namespace xjob::detail {

using deadline = std::chrono::steady_clock::time_point;

// Now plus `timeout`, saturating (a timeout of hours::max() waits for
// centuries, not for a negative time).
template <class Rep, class Period>
[[nodiscard]] deadline deadline_after(std::chrono::duration<Rep, Period> const& timeout) {
  using steady = std::chrono::steady_clock;
  auto const now = steady::now();
  if (timeout <= timeout.zero()) return now;
  std::chrono::duration<double> const seconds = timeout;
  std::chrono::duration<double> const room = deadline::max() - now;
  if (seconds >= room) return deadline::max();
  return now + std::chrono::ceil<steady::duration>(timeout);
}

template <class Clock, class Duration>
[[nodiscard]] deadline to_deadline(std::chrono::time_point<Clock, Duration> const& when) {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return std::chrono::ceil<std::chrono::steady_clock::duration>(when);
  } else {
    return deadline_after(when - Clock::now());
  }
}

}  // namespace xjob::detail
