// parallel_config: an RAII scope that sets defaults for the parallel objects
// created inside it on the same thread, like joblib's parallel_config.
//
// Precedence, first that is set wins:
//   1. the options given to the parallel object itself;
//   2. the innermost parallel_config alive on the constructing thread;
//   3. the environment: XJOB_N_JOBS, XJOB_BACKEND (read when a parallel
//      object is made);
//   4. the defaults: n_jobs = 1, backend = "threads", streaming = automatic.
// XJOB_STREAMING_STORES (auto, on, off) is the exception: it overrides every
// other setting of `streaming`, to force a choice for experiments.
#pragma once

#include <xjob/detail/config.hpp>

#include <xjob/parallel_options.hpp>

namespace xjob {

// Thread-affine: a scope applies to its own thread only, and scopes must end
// in reverse order of creation (they are not movable).
//   {
//     xjob::parallel_config scope({.n_jobs = -1, .backend = "threads"});
//     library_function_that_uses_xjob();   // runs on all CPUs
//   }
class parallel_config {
 public:
  explicit parallel_config(parallel_options defaults);
  ~parallel_config();
  parallel_config(parallel_config const&) = delete;
  parallel_config& operator=(parallel_config const&) = delete;

 private:
  parallel_options defaults_;
  parallel_config const* outer_;

  friend parallel_options resolve_options(parallel_options const& given);
};

// The options a parallel object constructed here and now would run with:
// every unset field filled by the precedence above, n_jobs turned into a
// positive worker count, and the backend checked against the registry.
// Throws xjob::invalid_argument for a bad n_jobs, batch or chunk size,
// unknown backend, or malformed environment variable.
//   auto opts = xjob::resolve_options({.backend = "threads"});
[[nodiscard]] parallel_options resolve_options(parallel_options const& given);

namespace detail {
// joblib's rule for a worker count: n > 0 is n, -1 all CPUs, -2 all but one.
// Throws xjob::invalid_argument for 0 and for counts below -cpu_count().
[[nodiscard]] int resolve_n_jobs(int n_jobs);
}  // namespace detail

}  // namespace xjob
