// How many CPUs this process may really use: the affinity mask, capped by a
// cgroup v2 CPU quota (a container limited to 1.5 CPUs counts 1). This is
// what n_jobs = -1 means, as in joblib's cpu_count.
#pragma once

namespace xjob {

// Thread-safe; never less than 1.
//   int workers = xjob::cpu_count();
[[nodiscard]] int cpu_count() noexcept;

}  // namespace xjob
