// xjob-bench: which backend, n_jobs, chunk size and start method to pick for
// a workload on this machine, and how far ahead of joblib that is.
//
//   bazel run --config=bench //bench:xjob-bench -- --quick     # < 1 minute
//   bazel run --config=bench //bench:xjob-bench -- --full      # the record
//   bazel run --config=bench //bench:xjob-bench -- --help
//
// Every workload runs all its variants (xjob backends and process pools, raw
// baselines, joblib through a Python co-process) interleaved: one untimed
// warm-up round, then timed rounds, the order rotating each round. Every run
// is checked against the sequential result; a wrong or failed run marks its
// row FAILED and the exit status 1. Writes results.csv, results.json and
// PNG plots into --out-dir.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xjob/xjob.hpp>

#include "../bench_support.hpp"
#include "joblib_client.hpp"
#include "report.hpp"
#include "sweep.hpp"

extern char** environ;

namespace {

using namespace xjob::bench;
namespace fs = std::filesystem;

// Where Bazel put a data file of this binary: the runfiles tree, found from
// the environment, from the binary's own path, or the current directory
// (which `bazel run` and `bazel test` make the runfiles root).
fs::path data_file(std::string const& relative) {
  std::vector<fs::path> candidates;
  if (char const* dir = std::getenv("RUNFILES_DIR")) candidates.push_back(fs::path(dir) / "xjob" / relative);
  std::error_code ignored;
  fs::path const self = fs::read_symlink("/proc/self/exe", ignored);
  if (!self.empty()) candidates.push_back(fs::path(self.string() + ".runfiles") / "xjob" / relative);
  candidates.push_back(fs::current_path() / relative);
  for (auto const& c : candidates)
    if (fs::exists(c)) return c;
  return {};
}

// The caller's directory under `bazel run` (which runs in the runfiles).
fs::path user_directory() {
  if (char const* dir = std::getenv("BUILD_WORKING_DIRECTORY")) return dir;
  return fs::current_path();
}

std::optional<std::size_t> parse_size(std::string const& flag, std::string const& text) {
  if (text == "auto") return std::nullopt;
  std::size_t value = 0;
  auto const [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0)
    throw CLI::ValidationError(flag, fmt::format("'{}' is not 'auto' or a positive count", text));
  return value;
}

// Runs `program args...`, waits; its exit status (or -1 if it cannot start).
int run_program(std::vector<std::string> const& args) {
  std::vector<char*> argv;
  for (auto const& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string joined(std::vector<std::string> const& items) {
  std::string out;
  for (auto const& i : items) {
    if (!out.empty()) out += ',';
    out += i;
  }
  return out;
}

// Runs one workload's variants interleaved; progress on stderr.
void sweep(workload& w, sweep_settings const& s, std::size_t index, std::size_t count,
           std::chrono::milliseconds settle_time) {
  int const rounds = s.warmup + s.reps;
  auto const start = clock_type::now();
  for (int round = 0; round < rounds; ++round) {
    bool const timed = round >= s.warmup;
    for (std::size_t k = 0; k < w.variants.size(); ++k) {
      variant& v = w.variants[(k + static_cast<std::size_t>(round)) % w.variants.size()];
      if (!v.error.empty()) continue;
      std::this_thread::sleep_for(settle_time);  // let spinning workers of the last variant go idle
      try {
        run_result const r = v.run();
        if (!w.matches(v, r.result)) {
          v.error = fmt::format("wrong result: {} where the sequential run gives {}", r.result.substr(0, 120),
                                w.expected(v).substr(0, 120));
        } else {
          if (timed) v.seconds.push_back(r.seconds);
          v.tasks = r.tasks;
        }
      } catch (std::exception const& e) {
        v.error = e.what();
      }
      if (!v.error.empty())
        std::fprintf(stderr, "  FAILED %s, %s, n_jobs=%d: %s\n", w.name.c_str(), v.backend.c_str(), v.n_jobs,
                     v.error.c_str());
    }
    double const elapsed = seconds_since(start);
    std::fprintf(stderr, "[%zu/%zu %s] round %d of %d (%s) done, %zu variants, %.1f s, about %.0f s left\n", index + 1,
                 count, w.name.c_str(), round + 1, rounds, timed ? "timed" : "warm-up", w.variants.size(), elapsed,
                 elapsed / (round + 1) * (rounds - round - 1));
  }
}

// The sizes of --quick: each workload in about a second on 2 cores.
workload_sizes quick_sizes() {
  workload_sizes q;
  q.map_elements = std::size_t(1) << 22;
  q.reduce_rows = std::size_t(1) << 12;
  q.reduce_cols = 512;
  q.sum_elements = std::size_t(1) << 22;
  q.sumsq_count = 1L << 26;
  q.sumsq_tasks = 16;
  q.md5_chains = 8;
  q.md5_rounds = 1L << 12;
  q.tiny_tasks = 100'000;
  q.tiny_joblib_tasks = 5'000;
  q.calls = 20;
  q.joblib_calls = 4;
  q.sleep_tasks = 8;
  q.sleep_ms = 10;
  q.npy_elements = std::size_t(1) << 21;
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  // Fork-server and spawn pools need this first: a spawned worker runs its
  // task loop from here instead of main's body.
  xjob::init(argc, argv);
  // A joblib co-process that died makes a write to it fail with EPIPE, which
  // joblib_client reports, instead of killing the whole run.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"xjob-bench: compares xjob's backends, process pools and start methods with raw oneTBB, OpenMP,\n"
               "std::thread, memory bandwidth and joblib, on workloads from memory-bound to waiting-bound.\n"
               "Every variant of a workload runs interleaved with the others (warm-up, then timed rounds),\n"
               "is checked against the sequential result, and is reported as median [min-max]."};
  sweep_settings s;
  std::vector<std::string> workloads, backends, methods, joblib_backends, chunk_texts, batch_texts;
  std::vector<int> n_jobs;
  bool quick = false, full = false, no_joblib = false, no_pools = false, no_baselines = false, no_plots = false;
  std::string out_dir = "xjob-bench-results", python = "/usr/bin/python3", npy_dir;
  int reps = 0, warmup = -1;
  // --quick's sizes are the defaults its size flags then override, so the
  // preset is known before parsing.
  bool const quick_given = std::any_of(argv + 1, argv + argc, [](char const* a) { return std::string_view(a) == "--quick"; });
  if (quick_given) s.sizes = quick_sizes();
  workload_sizes& z = s.sizes;

  auto* preset = app.add_option_group("preset", "sizes and sweep together; flags given as well override them");
  preset->add_flag("--quick", quick, "a smoke run in under a minute on 2 cores: small sizes, 3 repetitions, "
                                     "n_jobs 1,2, automatic chunks, batches auto and 1");
  preset->add_flag("--full", full, "the measurement: the default sizes (1 GiB arrays), 5 repetitions, n_jobs 1,2,4, "
                                   "chunks auto and 8192, batches auto, 1 and 64 (about 16 minutes on 2 cores)");
  preset->require_option(0, 1);

  auto list = [&](std::string const& name, auto& target, std::string const& help) {
    return app.add_option(name, target, help)->delimiter(',');
  };
  list("--workloads", workloads, fmt::format("which workloads, comma-separated (default all: {})", joined(workload_names())));
  list("--backends", backends, fmt::format("xjob backends to sweep (default every registered one: {})",
                                           joined(xjob::registered_backends())));
  list("--start-methods", methods, "start methods of the persistent process_pool rows: fork, forkserver, spawn "
                                   "(default all three; the 'processes' backend itself forks per call)");
  app.add_flag("--no-pools", no_pools, "leave out the persistent process_pool rows");
  list("--n-jobs", n_jobs, "worker counts to sweep (default 1,2,4; -1 means all CPUs)");
  list("--chunk-sizes", chunk_texts, "array workloads: slices per task along the chunked axis (elements of map/npy, "
                                      "rows of rowreduce), 'auto' for xjob's choice (~256 KiB of input; joblib and "
                                      "pools get the same count) (default auto,8192)");
  list("--batch-sizes", batch_texts, "tiny tasks: tasks handed out at a time, 'auto' for automatic batching "
                                     "(default auto,1,64)");
  app.add_option("--reps", reps, "timed repetitions per variant (default 5)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed rounds first (default 1)")->check(CLI::NonNegativeNumber);
  app.add_flag("--no-baselines", no_baselines, "leave out the plain loop, raw oneTBB, OpenMP, std::thread and STREAM rows");
  list("--joblib-backends", joblib_backends, "joblib backends to compare (default loky,threading,multiprocessing)");
  app.add_flag("--no-joblib", no_joblib, "do not run joblib");
  app.add_option("--python", python, "the Python with joblib and numpy (default /usr/bin/python3, Debian's)");
  app.add_option("--out-dir", out_dir, "where results.csv, results.json and the PNG plots go (default "
                                       "./xjob-bench-results, relative to where bazel run was called)");
  app.add_flag("--no-plots", no_plots, "write no PNG plots");
  app.add_option("--shm-dir", s.shm_dir, "where joblib's memmapped arrays live (default /dev/shm)");
  app.add_option("--npy-dir", npy_dir, "where the npy and resume workloads write their .npy files, on disk (default --out-dir)");

  auto* sizes = app.add_option_group("sizes", "workload sizes (the defaults are --full's)");
  sizes->add_option("--map-elements", z.map_elements, "map: float64 elements (default 2^27 = 1 GiB)")->check(CLI::PositiveNumber);
  sizes->add_option("--reduce-rows", z.reduce_rows, "rowreduce: rows (default 2^17)")->check(CLI::PositiveNumber);
  sizes->add_option("--reduce-cols", z.reduce_cols, "rowreduce: columns (default 1024: 1 GiB)")->check(CLI::PositiveNumber);
  sizes->add_option("--sum-elements", z.sum_elements, "sum: float64 elements (default 2^27 = 1 GiB)")->check(CLI::PositiveNumber);
  sizes->add_option("--sumsq-count", z.sumsq_count, "sumsq: numbers squared and summed (default 2^31; joblib does a "
                                                    "64th: pure Python)")->check(CLI::PositiveNumber);
  sizes->add_option("--sumsq-tasks", z.sumsq_tasks, "sumsq: tasks the numbers are cut into (default 64)")->check(CLI::PositiveNumber);
  sizes->add_option("--md5-chains", z.md5_chains, "md5: independent chains, one task each (default 16)")->check(CLI::PositiveNumber);
  sizes->add_option("--md5-rounds", z.md5_rounds, "md5: rounds per chain (default 2^18)")->check(CLI::PositiveNumber);
  sizes->add_option("--tiny-tasks", z.tiny_tasks, "tiny: tasks (default 10^6; round-trip rows run fewer: pools with "
                                                  "a batch size 4000 batches, joblib 2000 or --tiny-joblib-tasks / 5 batches)")
      ->check(CLI::Range(1L, long{std::numeric_limits<int>::max()}));
  sizes->add_option("--tiny-joblib-tasks", z.tiny_joblib_tasks, "tiny: at most this many tasks through joblib "
                                                                "(default 50000)")->check(CLI::PositiveNumber);
  sizes->add_option("--calls", z.calls, "calls: one-liner calls in a loop (default 200)")->check(CLI::PositiveNumber);
  sizes->add_option("--call-tasks", z.call_tasks, "calls: items each call maps (default 10)")->check(CLI::PositiveNumber);
  sizes->add_option("--joblib-calls", z.joblib_calls, "calls: at most this many calls through joblib, compared per "
                                                       "call (default 20)")->check(CLI::PositiveNumber);
  sizes->add_option("--sleep-tasks", z.sleep_tasks, "sleep: tasks (default 16)")->check(CLI::PositiveNumber);
  sizes->add_option("--sleep-ms", z.sleep_ms, "sleep: milliseconds each task sleeps (default 50)")->check(CLI::PositiveNumber);
  sizes->add_option("--npy-elements", z.npy_elements, "npy and resume: float64 elements (default 2^26 = 512 MiB)")->check(CLI::PositiveNumber);

  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  }

  std::string const preset_name = quick ? "quick" : full ? "full" : "custom";
  if (workloads.empty()) workloads = workload_names();
  for (auto const& w : workloads)
    if (std::ranges::find(workload_names(), w) == workload_names().end()) {
      fmt::print(stderr, "xjob-bench: --workloads: unknown workload '{}' (known: {})\n", w, joined(workload_names()));
      return 2;
    }
  if (backends.empty()) backends = xjob::registered_backends();
  for (auto const& b : backends)
    if (!xjob::is_registered_backend(b)) {
      fmt::print(stderr, "xjob-bench: --backends: '{}' is not a registered backend (registered: {})\n", b,
                 joined(xjob::registered_backends()));
      return 2;
    }
  try {
    if (!no_pools) {
      if (methods.empty()) methods = {"fork", "forkserver", "spawn"};
      for (auto const& m : methods) s.pool_methods.push_back(xjob::parse_start_method(m));
    }
    if (n_jobs.empty()) n_jobs = quick ? std::vector<int>{1, 2} : std::vector<int>{1, 2, 4};
    for (int& n : n_jobs) {
      if (n == 0 || n < -xjob::cpu_count())
        throw CLI::ValidationError("--n-jobs", fmt::format("{} is not a worker count (n > 0, or -1 for all CPUs, "
                                                           "-2 all but one, ...)", n));
      if (n < 0) n = xjob::cpu_count() + 1 + n;
    }
    std::ranges::sort(n_jobs);
    n_jobs.erase(std::unique(n_jobs.begin(), n_jobs.end()), n_jobs.end());
    if (chunk_texts.empty()) chunk_texts = quick ? std::vector<std::string>{"auto"} : std::vector<std::string>{"auto", "8192"};
    if (batch_texts.empty()) batch_texts = quick ? std::vector<std::string>{"auto", "1"} : std::vector<std::string>{"auto", "1", "64"};
    for (auto const& t : chunk_texts) s.chunk_sizes.push_back(parse_size("--chunk-sizes", t));
    for (auto const& t : batch_texts) s.batch_sizes.push_back(parse_size("--batch-sizes", t));
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  } catch (std::exception const& e) {
    fmt::print(stderr, "xjob-bench: {}\n", e.what());
    return 2;
  }
  if (!no_joblib && joblib_backends.empty()) joblib_backends = {"loky", "threading", "multiprocessing"};
  if (no_joblib) joblib_backends.clear();
  s.workloads = workloads;
  s.backends = backends;
  s.n_jobs = n_jobs;
  s.joblib_backends = joblib_backends;
  s.baselines = !no_baselines;
  s.reps = reps > 0 ? reps : quick ? 3 : 5;
  s.warmup = warmup >= 0 ? warmup : 1;

  fs::path const out = fs::path(out_dir).is_absolute() ? fs::path(out_dir) : user_directory() / out_dir;
  fs::create_directories(out);
  s.npy_dir = npy_dir.empty() ? out.string() : (fs::path(npy_dir).is_absolute() ? npy_dir : (user_directory() / npy_dir).string());
  fs::create_directories(s.npy_dir);

  // joblib first, before this process holds gigabytes.
  std::optional<joblib_client> joblib;
  if (!joblib_backends.empty()) {
    fs::path const script = data_file("bench/joblib_bench.py");
    if (script.empty()) {
      fmt::print(stderr, "xjob-bench: bench/joblib_bench.py not found in the runfiles; no joblib rows\n");
    } else {
      joblib.emplace(python, script.string(), s.shm_dir);
      if (!joblib->available())
        fmt::print(stderr, "xjob-bench: joblib rows left out: {} (install python3-joblib python3-numpy, or "
                           "give --python)\n", joblib->unavailable_reason());
    }
  }
  auto const machine = machine_description(joblib && joblib->available() ? joblib->versions() : "");
  fmt::print("xjob-bench --{}: {} workloads, backends {}, pools {}, n_jobs {}, {} timed reps after {} warm-up\n",
             preset_name, workloads.size(), joined(backends), no_pools ? "none" : joined(methods),
             fmt::join(n_jobs, ","), s.reps, s.warmup);
  for (auto const& [key, value] : machine) fmt::print("  {}: {}\n", key, value);
  std::fflush(stdout);

  std::vector<std::pair<std::string, std::string>> const settings_text = {
      {"workloads", joined(workloads)},
      {"backends", joined(backends)},
      {"pool_start_methods", no_pools ? "" : joined(methods)},
      {"joblib_backends", joined(joblib_backends)},
      {"n_jobs", fmt::format("{}", fmt::join(n_jobs, ","))},
      {"chunk_sizes", joined(chunk_texts)},
      {"batch_sizes", joined(batch_texts)},
      {"reps", std::to_string(s.reps)},
      {"warmup", std::to_string(s.warmup)},
  };

  // Declared after `joblib`, so destroyed first: fork-started pool workers
  // hold copies of the co-process's pipe, which must be closed for it to
  // see the end of its input.
  bench_context context(s, joblib ? &*joblib : nullptr);
  std::vector<workload_info> infos;
  std::vector<record> records;
  bool failed = false;
  auto const settle_time = std::chrono::milliseconds(quick ? 5 : 20);
  auto const started = clock_type::now();
  for (std::size_t i = 0; i < workloads.size(); ++i) {
    std::fprintf(stderr, "[%zu/%zu %s] preparing data...\n", i + 1, workloads.size(), workloads[i].c_str());
    std::unique_ptr<workload> w = make_workload(workloads[i], context);
    sweep(*w, s, i, workloads.size(), settle_time);
    infos.push_back(info_of(*w));
    std::vector<record> rows = records_of(*w);
    print_workload_table(infos.back(), rows);
    for (auto& r : rows) {
      failed = failed || !r.ok();
      records.push_back(std::move(r));
    }
  }
  print_summary(infos, records);

  write_csv(out / "results.csv", infos, records);
  write_json(out / "results.json", preset_name, machine, settings_text, infos, records);
  fmt::print("\nwrote {} and {}\n", (out / "results.csv").string(), (out / "results.json").string());
  std::fflush(stdout);
  if (!no_plots) {
    fs::path const plotter = data_file("bench/xjob_bench_plot.py");
    int const status = plotter.empty() ? -1 : run_program({python, plotter.string(), (out / "results.json").string(), out.string()});
    if (status != 0)
      fmt::print(stderr, "xjob-bench: no plots ({}); install python3-matplotlib or give --python\n",
                 plotter.empty() ? "bench/xjob_bench_plot.py not found" : fmt::format("the plotter exited with {}", status));
  }
  fmt::print("total {:.1f} s{}\n", seconds_since(started), failed ? "; some rows FAILED (see above)" : "");
  return failed ? 1 : 0;
}
