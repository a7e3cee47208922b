// Who am I: a worker process's index among its pool's workers. Set in every
// worker process xjob starts (the "processes" backend's, process pools',
// xjob::process's), whatever the start method; unset in the program itself.
#pragma once

#include <xjob/detail/config.hpp>

#include <optional>

namespace xjob {

// This process's index among the workers of the call, pool or process object
// that started it (0 to n_jobs - 1; always 0 in an xjob::process, a pool of
// one), or std::nullopt outside worker processes. Its pid is getpid().
// Needs nothing, throws nothing, thread-safe.
//   if (auto index = xjob::worker_index())
//     std::fprintf(stderr, "worker %d (pid %d)\n", *index, getpid());
//   else
//     std::fprintf(stderr, "the program itself\n");
[[nodiscard]] std::optional<int> worker_index() noexcept;

namespace detail {
// Called once by a worker process's entry, before user code runs; a negative
// index unsets it.
void set_worker_index(int index) noexcept;
}  // namespace detail

}  // namespace xjob
