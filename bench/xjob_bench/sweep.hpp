// The model of an xjob-bench run: workloads, each a set of variants (one
// backend and configuration, or one baseline) that the sweep runs
// interleaved, checks against the sequential result, and times.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <xjob/process_pool.hpp>
#include <xjob/start_method.hpp>

#include "joblib_client.hpp"

namespace xjob::bench {

// What one run of a variant gives back.
struct run_result {
  double seconds = 0;   // the timed part only (setup such as poisoning an output is not in it)
  std::string result;   // the workload's checksum, compared with the sequential run's
  std::size_t tasks = 0;
};

struct variant {
  variant(std::string family_, std::string backend_, int n_jobs_, std::string chunk_ = "-", std::string batch_ = "-",
          double work_ = 0)
      : family(std::move(family_)), backend(std::move(backend_)), n_jobs(n_jobs_), chunk(std::move(chunk_)),
        batch(std::move(batch_)), work(work_) {}

  std::string family;   // "xjob", "baseline" or "joblib"
  std::string backend;  // "threads", "pool (forkserver)", "raw TBB", "joblib loky", ...
  int n_jobs = 1;
  std::string chunk = "-";  // elements or rows per task, "auto"; "-" where it does not apply
  std::string batch = "-";  // tasks per hand-off, "auto"; "-" where it does not apply
  double work = 0;          // per run, in the workload's units (bytes or items)
  std::function<run_result()> run;

  // Filled in by the sweep.
  std::vector<double> seconds;  // timed repetitions
  std::size_t tasks = 0;
  std::string error;  // not empty: the variant failed (an exception, or a wrong result)
};

// One workload: its data (in the derived class), its variants, and how its
// results compare.
class workload {
 public:
  virtual ~workload() = default;
  workload(workload const&) = delete;
  workload& operator=(workload const&) = delete;

  std::string name;       // "map"
  std::string title;      // "elementwise map y = sqrt(x)*2+1"
  std::string unit;       // "GB/s", "Mitems/s", "tasks/s"
  std::string size_text;  // "1 GiB in + 1 GiB out"
  double unit_scale = 1;  // throughput = work / seconds / unit_scale
  bool per_task = false;  // also report nanoseconds per task
  bool memory_bound = false;
  std::string reference;  // the sequential run's result
  bool exact = true;      // results compare exactly, or as numbers within 1e-9
  std::vector<variant> variants;

  // The result `v` must give: the sequential run's, unless the variant ran
  // less work (see sumsq and tiny).
  [[nodiscard]] virtual std::string expected(variant const& v) const;
  [[nodiscard]] bool matches(variant const& v, std::string const& got) const;

 protected:
  workload() = default;
};

// Sizes of the workloads; each has a flag.
struct workload_sizes {
  std::size_t map_elements = std::size_t(1) << 27;  // 1 GiB of float64
  std::size_t reduce_rows = std::size_t(1) << 17;
  std::size_t reduce_cols = 1024;                   // 1 GiB
  std::size_t sum_elements = std::size_t(1) << 27;  // 1 GiB of float64
  long sumsq_count = 1L << 31;
  long sumsq_tasks = 64;
  long md5_chains = 16;
  long md5_rounds = 1L << 18;
  long tiny_tasks = 1'000'000;
  long tiny_joblib_tasks = 50'000;  // at most, through joblib (~2-50 us a task)
  long calls = 200;                 // one-liner calls in a loop
  long call_tasks = 10;             // items each call maps
  long joblib_calls = 20;           // at most, through joblib (~3-10 ms a call)
  long sleep_tasks = 16;
  long sleep_ms = 50;
  std::size_t npy_elements = std::size_t(1) << 26;  // 512 MiB
};

struct sweep_settings {
  std::vector<std::string> workloads;
  std::vector<std::string> backends;  // registered xjob backends to sweep
  std::vector<xjob::start_method> pool_methods;  // empty: no process_pool rows
  std::vector<std::string> joblib_backends;      // empty: no joblib rows
  std::vector<int> n_jobs;
  std::vector<std::optional<std::size_t>> chunk_sizes;  // nullopt: automatic
  std::vector<std::optional<std::size_t>> batch_sizes;  // nullopt: automatic
  bool baselines = true;
  int reps = 5;
  int warmup = 1;
  workload_sizes sizes;
  std::string shm_dir = "/dev/shm";  // where joblib's memmapped arrays live
  std::string npy_dir;               // where the .npy outputs are written (on disk)
};

// What the workloads share: settings, long-lived worker pools, oneTBB arenas
// and the joblib co-process.
class bench_context {
 public:
  bench_context(sweep_settings settings, joblib_client* joblib);

  [[nodiscard]] sweep_settings const& settings() const noexcept { return settings_; }
  // A process_pool of `n_jobs` workers started by `method`, made at first
  // use and kept for the whole run, as a user keeps a pool.
  xjob::process_pool& pool(xjob::start_method method, int n_jobs);
  // A oneTBB arena of `n_jobs` slots for the raw TBB baselines.
  tbb::task_arena& arena(int n_jobs);
  // The arena that fills inputs and checks outputs, untimed: every CPU.
  tbb::task_arena& setup_arena();
  // The joblib co-process if it runs, else null.
  [[nodiscard]] joblib_client* joblib() const noexcept {
    return joblib_ != nullptr && joblib_->available() ? joblib_ : nullptr;
  }

 private:
  sweep_settings settings_;
  joblib_client* joblib_;
  // oneTBB caps its threads at the CPU count; raw TBB rows with more
  // n_jobs than CPUs get them, as xjob's threads backend does.
  std::optional<tbb::global_control> allow_more_threads_;
  std::map<std::pair<xjob::start_method, int>, std::unique_ptr<xjob::process_pool>> pools_;
  std::map<int, std::unique_ptr<tbb::task_arena>> arenas_;
};

// The workloads by name, in the order they run.
std::vector<std::string> const& workload_names();
// Builds the named workload: allocates and fills its data, computes its
// sequential reference, and defines its variants from the context's sweep.
std::unique_ptr<workload> make_workload(std::string const& name, bench_context& context);

// "auto" or the number.
std::string size_text(std::optional<std::size_t> size);

}  // namespace xjob::bench
