// Backends: where the workers of a parallel call run. One small interface,
// chosen by name from a registry, like joblib's register_parallel_backend.
// Built in: "sequential" (the caller's thread), "threads" (oneTBB, in a
// task_arena of n_jobs) and "processes" (forked worker processes).
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <xjob/batch_call.hpp>
#include <xjob/start_method.hpp>

namespace xjob {

// What a backend is made for.
struct backend_settings {
  int n_jobs = 1;  // a positive worker count, already resolved
  // For backends that run tasks in worker processes (see parallel_options).
  int retries = 0;
  std::optional<std::chrono::duration<double>> task_timeout = std::nullopt;
  std::optional<std::chrono::duration<double>> call_timeout = std::nullopt;
  xjob::start_method start_method = xjob::start_method::fork;
  bool reuse_workers = true;
  std::chrono::duration<double> idle_timeout = std::chrono::seconds(300);
};

// What a backend's workers are, as the front end needs to know it: each
// capability is one decision the front end makes from it. A backend
// declares them (backend::capabilities); the default is an in-process
// backend such as "threads".
struct backend_capabilities {
  // Tasks run in other address spaces: the backend brings their results
  // back through the call's task runner (its encoding; result types are
  // checked transferable at compile time for every backend), and side
  // effects on the caller's private memory stay in the workers. Reported
  // by parallel::runs_out_of_process().
  bool results_cross_address_spaces = false;
  // Workers can write only the caller's shared memory: a map_chunks output
  // elsewhere (an xtensor container) is staged in a shared_array, copied in
  // before the call and back after it.
  bool outputs_need_shared_memory = false;
  // A worker can crash or be killed without taking the caller down: the
  // options that kill or replace workers (retries, task_timeout,
  // call_timeout) and those of worker processes apply, and one worker is
  // still worth a backend of its own (n_jobs = 1 is not run sequentially).
  bool isolates_crashes = false;
  // Calls that have a remote form (batch_call::remote) run on workers that
  // started before the call and see only the caller's shared memory: the
  // front end builds remote forms and puts private inputs there.
  bool runs_remote_forms = false;
  // Tasks are spread over several machines (the ranks of an MPI job), each
  // running its share on workers of its own: n_jobs counts the workers on
  // each, so n_jobs = 1 is not run sequentially; and nothing a task writes
  // in place is seen elsewhere, so map_chunks' output chunks travel like
  // results (task_runner::save_outputs) until every rank has them.
  bool spans_machines = false;
  friend bool operator==(backend_capabilities const&, backend_capabilities const&) = default;
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
  // What its workers are (see backend_capabilities). Must not change over
  // the backend's life.
  [[nodiscard]] virtual backend_capabilities capabilities() const noexcept { return {}; }
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
