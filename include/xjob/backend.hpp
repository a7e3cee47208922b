// Backends: where the workers of a parallel call run. One small interface,
// chosen by name from a registry, like joblib's register_parallel_backend.
// Built in: "sequential" (the caller's thread) and "threads" (oneTBB, in a
// task_arena of n_jobs).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <xjob/batch_call.hpp>

namespace xjob {

// What a backend is made for.
struct backend_settings {
  int n_jobs = 1;  // a positive worker count, already resolved
};

// A backend runs a call's worker loops on up to call.worker_count() workers
// and returns when all have returned. It is made once per parallel object
// and reused for each of its calls, so it may keep workers alive between
// calls. run() may be called from several threads at once.
class backend {
 public:
  virtual ~backend() = default;
  // Runs the call; failures of tasks are kept in the call, not thrown. A
  // backend's own failures (cannot start a worker) are thrown.
  virtual void run(batch_call& call) = 0;
};

using backend_factory = std::function<std::unique_ptr<backend>(backend_settings const&)>;

// Registers (or replaces) a backend under `name`. Thread-safe. Throws
// xjob::invalid_argument for an empty name or factory.
//   xjob::register_backend("openmp", [](xjob::backend_settings const&) {
//     return std::make_unique<openmp_backend>(); });
//   xjob::parallel par({.n_jobs = 2, .backend = "openmp"});
void register_backend(std::string name, backend_factory factory);

// The registered names, sorted. Thread-safe.
[[nodiscard]] std::vector<std::string> registered_backends();

// Whether `name` is registered. Thread-safe.
[[nodiscard]] bool is_registered_backend(std::string_view name);

// Makes a backend by name. Throws xjob::invalid_argument naming the unknown
// name and listing the known ones.
[[nodiscard]] std::unique_ptr<backend> make_backend(std::string_view name, backend_settings const& settings);

}  // namespace xjob
