// Making fork() from a multi-threaded caller safe for the worker it makes.
// The child holds copies of every lock as it was at the fork; a lock held by
// another thread then stays held forever. glibc guards malloc and stdio, and
// xjob guards its own caches, but oneTBB and GNU OpenMP do not guard theirs:
// a worker forked while a oneTBB thread held one, or after GNU OpenMP made
// its thread pool, hangs on its first nested parallel loop.
#pragma once

#include <sys/types.h>

namespace xjob::detail::process {

// Whether this process has one thread only (its /proc/self/stat says so).
[[nodiscard]] bool single_threaded() noexcept;

// Called in the caller just before it forks workers: waits (up to 10 ms)
// until no other thread of the process is running, so none is inside a
// oneTBB critical section; releases GNU OpenMP's thread pool (it is rebuilt
// on the next parallel region); flushes stdio so that no buffered output is
// written twice.
void prepare_to_fork() noexcept;

// Called first in a new worker: dies with the caller (SIGKILL when the
// forking thread ends), restores the default action of crash signals and
// SIGTERM, and caps nested parallelism at `cpu_share` threads:
// oneTBB's max_allowed_parallelism, OpenMP's thread count, the usual BLAS
// variables, and xjob::cpu_count(). Returns false if the caller is already
// gone.
[[nodiscard]] bool become_worker(pid_t caller, int cpu_share) noexcept;

}  // namespace xjob::detail::process
