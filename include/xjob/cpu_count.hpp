// How many CPUs this process may really use: the affinity mask, capped by a
// cgroup v2 CPU quota (a container limited to 1.5 CPUs counts 1). This is
// what n_jobs = -1 means, as in joblib's cpu_count. Inside a worker process
// of the "processes" backend it is that worker's share (the caller's count
// divided by the number of workers, at least 1), so nested parallel calls
// with n_jobs = -1 do not oversubscribe the machine.
#pragma once

#include <xjob/detail/config.hpp>

#include <cstddef>

namespace xjob {

// Thread-safe; never less than 1.
//   int workers = xjob::cpu_count();
[[nodiscard]] int cpu_count() noexcept;

// The size of the largest CPU cache (the last-level cache, shared by the
// cores of a socket) as the kernel reports it, or 32 MiB where it reports
// none. Read once; thread-safe.
//   bool streams = output_bytes >= xjob::last_level_cache_bytes();
[[nodiscard]] std::size_t last_level_cache_bytes() noexcept;

}  // namespace xjob
