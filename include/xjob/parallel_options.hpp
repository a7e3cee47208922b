// The options of one xjob::parallel: how many workers, which backend, how
// tasks are batched and arrays chunked, and how progress is reported. Fields
// left unset come from the enclosing parallel_config, then the environment
// (XJOB_N_JOBS, XJOB_BACKEND), then the defaults below.
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>

#include <xjob/start_method.hpp>

namespace xjob {

// A snapshot of a running call, given to parallel_options::on_progress.
struct progress {
  std::size_t done = 0;   // tasks finished (successfully or not)
  std::size_t total = 0;  // tasks in the call
  std::chrono::duration<double> elapsed{};
  std::chrono::duration<double> remaining{};  // estimate from the rate so far
};

// How map_chunks writes its output chunks. Streaming (non-temporal) stores
// write a cache line without first reading it, which saves a third of the
// memory traffic of y = f(x) over arrays larger than the cache, but leave
// nothing in the cache for whoever reads the output next.
enum class streaming_stores {
  automatic,  // where it pays: the output is at least as large as the last-level cache
  on,         // wherever the assignment allows (contiguous float/double output, no overlap)
  off,        // ordinary stores
};

// Options of a parallel object; designated initialisers name what differs.
//   xjob::parallel par({.n_jobs = 2, .backend = "threads", .verbose = 5});
struct parallel_options {
  // Worker count: n > 0 exactly n; -1 all CPUs, -2 all but one (joblib's
  // rule). 0 and values below -cpu_count() are errors. Unset: 1.
  std::optional<int> n_jobs = std::nullopt;
  // A registered backend name ("sequential", "threads", "processes", ...).
  // Empty: the configured one, else "threads". With one worker an in-process
  // backend runs sequentially in the caller, as in joblib; "processes" keeps
  // its one worker process, for the isolation it was chosen for.
  std::string backend = {};
  // Tasks handed to a worker at a time. Unset: automatic (batches grow until
  // one lasts about target_batch_duration, and shrink near the end so that
  // workers finish together).
  std::optional<std::size_t> batch_size = std::nullopt;
  // Extent of an array chunk along the chunked axis in map_chunks. Unset:
  // automatic (about 256 KiB of input per chunk; see chunking.hpp).
  std::optional<std::size_t> chunk_size = std::nullopt;
  // joblib's verbose: 0 silent; 1-9 progress lines on stderr at growing
  // intervals; 10 and more a line per finished batch.
  int verbose = 0;
  // Called with the progress so far after each finished batch, and at least
  // every 50 ms within a long one; calls never overlap, but come from worker
  // threads.
  std::function<void(progress const&)> on_progress = {};
  // What automatic batching aims for: long enough to hide the cost of taking
  // a batch, short enough to balance the load.
  std::chrono::microseconds target_batch_duration = std::chrono::microseconds(200);
  // Streaming stores for map_chunks' output chunks (see streaming_stores).
  // Unset: the configured one, else automatic. The environment variable
  // XJOB_STREAMING_STORES (auto, on, off) overrides this for experiments.
  // Results are bit for bit the same either way.
  std::optional<xjob::streaming_stores> streaming = std::nullopt;

  // Backends that run tasks in worker processes ("processes") only; others
  // refuse them with xjob::invalid_argument.
  // How often a task whose worker died (or ran past task_timeout) is re-run
  // on a fresh worker before the call fails. Unset: 0.
  std::optional<int> retries = std::nullopt;
  // A task running longer has its worker killed and replaced; the call fails
  // with xjob::timeout_error naming the task (after any retries).
  std::optional<std::chrono::duration<double>> task_timeout = std::nullopt;
  // The whole call running longer has all its workers killed and fails with
  // xjob::timeout_error.
  std::optional<std::chrono::duration<double>> call_timeout = std::nullopt;
  // How worker processes start (multiprocessing's get_context): fork,
  // forkserver or spawn; the latter two need xjob::init(argc, argv) and take
  // only callables without captures. Unset: fork.
  std::optional<xjob::start_method> start_method = std::nullopt;
  // Whether calls whose callable has no captures run on warm workers kept
  // between calls (loky's reusable executor), shared by every parallel
  // object with the same n_jobs and start method. false: fresh workers are
  // forked for each call. Unset: true.
  std::optional<bool> reuse_workers = std::nullopt;
  // Warm workers idle this long exit (they start again on demand). Unset:
  // 300 s, as loky.
  std::optional<std::chrono::duration<double>> idle_timeout = std::nullopt;
  // Stops the object's calls when requested: no new task starts, running
  // ones finish, and the call throws xjob::cancelled within about 100 ms of
  // the request on any backend (see cancellation.hpp). Unset (a token with
  // no stop_source): the configured one, else calls run to the end.
  std::stop_token stop = {};
};

}  // namespace xjob
