#include <xjob/parallel_config.hpp>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <xjob/backend.hpp>
#include <xjob/cpu_count.hpp>
#include <xjob/errors.hpp>

namespace xjob {

namespace {

thread_local parallel_config const* innermost_config = nullptr;

constexpr int default_n_jobs = 1;
constexpr char const* default_backend = "threads";

// XJOB_STREAMING_STORES forces the choice for every call, for experiments.
std::optional<streaming_stores> streaming_from_environment() {
  char const* text = std::getenv("XJOB_STREAMING_STORES");
  if (text == nullptr) return std::nullopt;
  std::string_view const value = text;
  if (value == "auto") return streaming_stores::automatic;
  if (value == "on") return streaming_stores::on;
  if (value == "off") return streaming_stores::off;
  throw invalid_argument(fmt::format("XJOB_STREAMING_STORES must be auto, on or off, got '{}'", value));
}

std::optional<int> n_jobs_from_environment() {
  char const* text = std::getenv("XJOB_N_JOBS");
  if (text == nullptr || *text == '\0') return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long const value = std::strtol(text, &end, 10);
  if (*end != '\0' || errno != 0 || value < -100000 || value > 100000)
    throw invalid_argument(fmt::format("XJOB_N_JOBS must be an integer, got '{}'", text));
  return static_cast<int>(value);
}

}  // namespace

namespace detail {

int resolve_n_jobs(int n_jobs) {
  int const cpus = cpu_count();
  if (n_jobs == 0) throw invalid_argument("n_jobs must not be 0: use a positive count, or -1 for all CPUs");
  if (n_jobs > 0) return n_jobs;
  int const resolved = cpus + 1 + n_jobs;
  if (resolved < 1)
    throw invalid_argument(
        fmt::format("n_jobs={} leaves no worker on a machine with {} CPUs (the lowest is {})", n_jobs, cpus, -cpus));
  return resolved;
}

}  // namespace detail

parallel_config::parallel_config(parallel_options defaults)
    : defaults_(std::move(defaults)), outer_(innermost_config) {
  innermost_config = this;
}

parallel_config::~parallel_config() { innermost_config = outer_; }

parallel_options resolve_options(parallel_options const& given) {
  parallel_options resolved = given;
  // Unset fields: the innermost scope first, then outer ones.
  for (parallel_config const* scope = innermost_config; scope != nullptr; scope = scope->outer_) {
    parallel_options const& d = scope->defaults_;
    if (!resolved.n_jobs) resolved.n_jobs = d.n_jobs;
    if (resolved.backend.empty()) resolved.backend = d.backend;
    if (!resolved.batch_size) resolved.batch_size = d.batch_size;
    if (!resolved.chunk_size) resolved.chunk_size = d.chunk_size;
    if (resolved.verbose == 0) resolved.verbose = d.verbose;
    if (!resolved.on_progress) resolved.on_progress = d.on_progress;
    if (!resolved.retries) resolved.retries = d.retries;
    if (!resolved.task_timeout) resolved.task_timeout = d.task_timeout;
    if (!resolved.call_timeout) resolved.call_timeout = d.call_timeout;
    if (!resolved.streaming) resolved.streaming = d.streaming;
    if (!resolved.start_method) resolved.start_method = d.start_method;
    if (!resolved.reuse_workers) resolved.reuse_workers = d.reuse_workers;
    if (!resolved.idle_timeout) resolved.idle_timeout = d.idle_timeout;
    if (!resolved.stop.stop_possible()) resolved.stop = d.stop;
  }
  if (std::optional<streaming_stores> forced = streaming_from_environment()) resolved.streaming = forced;
  if (!resolved.streaming) resolved.streaming = streaming_stores::automatic;
  if (!resolved.n_jobs) resolved.n_jobs = n_jobs_from_environment();
  if (resolved.backend.empty())
    if (char const* name = std::getenv("XJOB_BACKEND"); name != nullptr) resolved.backend = name;
  if (resolved.backend.empty()) resolved.backend = default_backend;
  // The backend is made even when it will not run, so a typo never passes
  // unnoticed on a one-CPU machine (making one starts no worker).
  backend_capabilities const capabilities = make_backend(resolved.backend, {})->capabilities();
  // A backend spanning machines runs n_jobs workers on each rank: by
  // default each rank's CPUs, as MPI programs use the cores they are given.
  if (!resolved.n_jobs) resolved.n_jobs = capabilities.spans_machines ? -1 : default_n_jobs;
  resolved.n_jobs = detail::resolve_n_jobs(*resolved.n_jobs);
  bool const isolates_crashes = capabilities.isolates_crashes;
  if (*resolved.n_jobs == 1 && !isolates_crashes && !capabilities.spans_machines) resolved.backend = "sequential";
  if (resolved.retries && *resolved.retries < 0)
    throw invalid_argument(fmt::format("retries must be 0 or more, got {}", *resolved.retries));
  if (resolved.task_timeout && resolved.task_timeout->count() <= 0)
    throw invalid_argument(fmt::format("task_timeout must be positive, got {} s", resolved.task_timeout->count()));
  if (resolved.call_timeout && resolved.call_timeout->count() <= 0)
    throw invalid_argument(fmt::format("call_timeout must be positive, got {} s", resolved.call_timeout->count()));
  if (resolved.idle_timeout && resolved.idle_timeout->count() <= 0)
    throw invalid_argument(fmt::format("idle_timeout must be positive, got {} s", resolved.idle_timeout->count()));
  if (!isolates_crashes) {
    char const* asked = resolved.retries.value_or(0) > 0 ? "retries"
                        : resolved.task_timeout         ? "task_timeout"
                        : resolved.call_timeout         ? "call_timeout"
                        : resolved.start_method         ? "start_method"
                        : resolved.reuse_workers        ? "reuse_workers"
                        : resolved.idle_timeout         ? "idle_timeout"
                                                        : nullptr;
    if (asked != nullptr)
      throw invalid_argument(fmt::format(
          "{} needs a backend that runs tasks in worker processes, such as \"processes\"; backend \"{}\" runs "
          "them in the caller's process, where a task cannot be killed",
          asked, resolved.backend));
  }
  // Process settings only for process backends: the options of a threads
  // parallel stay valid options for another parallel (parallel(p.options())).
  if (isolates_crashes) {
    backend_settings const defaults;
    if (!resolved.start_method) resolved.start_method = defaults.start_method;
    if (!resolved.reuse_workers) resolved.reuse_workers = defaults.reuse_workers;
    if (!resolved.idle_timeout) resolved.idle_timeout = defaults.idle_timeout;
  }
  if (resolved.batch_size && *resolved.batch_size == 0)
    throw invalid_argument("batch_size must be at least 1, got 0 (leave it unset for automatic batching)");
  if (resolved.chunk_size && *resolved.chunk_size == 0)
    throw invalid_argument("chunk_size must be at least 1, got 0 (leave it unset for automatic chunks)");
  if (resolved.target_batch_duration.count() <= 0)
    throw invalid_argument(
        fmt::format("target_batch_duration must be positive, got {} us", resolved.target_batch_duration.count()));
  return resolved;
}

}  // namespace xjob
