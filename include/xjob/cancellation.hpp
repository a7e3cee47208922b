// Cancellation: a parallel call stops when the std::stop_token in its
// parallel_options::stop is requested. No task starts after that (a batch
// already taken stops before its next task), tasks that are running finish,
// and the call throws xjob::cancelled (see errors.hpp). A long task can ask
// stop_requested() and give up early.
#pragma once

#include <xjob/detail/config.hpp>

namespace xjob {

// Inside a task of a parallel call: whether the call is stopping, because
// its stop token was requested or another task failed; the task may return
// early, its result is dropped either way. Outside a task: false. Works in
// worker processes too. Needs nothing, throws nothing, thread-safe.
//   par.map([](int i) {
//     for (int step = 0; step < 1000; ++step) {
//       if (xjob::stop_requested()) return -1;   // dropped: the call throws xjob::cancelled
//       simulate(i, step);
//     }
//     return i;
//   }, items);
[[nodiscard]] bool stop_requested() noexcept;

}  // namespace xjob
