// SEEDS.md example 4: four jobs of task(idx, count) = (idx, sum of i*i for i
// in [0, count)), run four ways, each timed against the sequential run:
//   1. sequentially, in this process;
//   2. one xjob::process per job (multiprocessing.Process), the results
//      written into a shared_array;
//   3. a process_pool of 2 and starmap with chunksize 1 (Pool(2).map),
//      showing which worker pid ran which job;
//   4. xjob::parallel({.n_jobs = 4, .backend = "processes"}) over delayed
//      calls (joblib's Parallel(n_jobs=4)(delayed(task)(idx, count) ...)).
// For count = 10^7 every sum is 333333283333335000000, more than 64 bits
// hold: the sums are unsigned __int128 and printed exactly.
//   bazel run //examples:seed4_sum_of_squares [-- --count N]
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include <xjob/process.hpp>
#include <xjob/process_pool.hpp>
#include <xjob/xjob.hpp>

namespace {

using u128 = unsigned __int128;

std::pair<int, u128> task(int idx, long count) {
  u128 sum = 0;
  for (long i = 0; i < count; ++i) sum += static_cast<u128>(i) * static_cast<u128>(i);
  return {idx, sum};
}

// The decimal digits of `value` (printf has no 128-bit conversion).
std::string to_decimal(u128 value) {
  char digits[40];
  char* p = digits + sizeof digits;
  do {
    *--p = static_cast<char>('0' + static_cast<int>(value % 10));
    value /= 10;
  } while (value != 0);
  return std::string(p, digits + sizeof digits);
}

// What the pool's workers send back: the task's result and who ran it.
// Trivially copyable, so it travels as its bytes.
struct pool_result {
  int idx = 0;
  u128 sum = 0;
  int pid = 0;
};

pool_result task_in_pool(int idx, long count) {
  auto const [i, sum] = task(idx, count);
  return {i, sum, static_cast<int>(getpid())};
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void print_results(std::vector<std::pair<int, u128>> const& results) {
  for (auto const& [idx, sum] : results) std::printf("  job %d: %s\n", idx, to_decimal(sum).c_str());
}

void print_time(double seconds, double sequential) {
  std::printf("  time: %.3f s, speed-up over sequential: %.2fx\n\n", seconds, sequential / seconds);
}

}  // namespace

int main(int argc, char** argv) {
  long count = 10'000'000;
  CLI::App app("SEEDS.md example 4: four 128-bit sums of squares, sequentially, one process per job, a pool of "
               "2 and parallel(n_jobs = 4, backend = processes), timed.");
  app.add_option("--count", count, "terms per job (the article's 10^7 by default)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<std::pair<int, long>> const jobs = {{1, count}, {2, count}, {3, count}, {4, count}};
    std::printf("4 jobs, count = %ld; main process pid %d\n\n", count, static_cast<int>(getpid()));

    // 1. Sequential.
    std::printf("sequential:\n");
    auto start = std::chrono::steady_clock::now();
    std::vector<std::pair<int, u128>> results;
    for (auto const& [idx, c] : jobs) results.push_back(task(idx, c));
    double const sequential = seconds_since(start);
    print_results(results);
    print_time(sequential, sequential);

    // 2. One process per job. A forked child sees the caller's memory, so
    // the closure captures `out` and the job; it writes idx and the two
    // 64-bit halves of its sum into its own row of shared memory.
    std::printf("one xjob::process per job (fork):\n");
    start = std::chrono::steady_clock::now();
    xjob::shared_array<std::uint64_t> out({jobs.size(), std::size_t(3)});
    std::vector<xjob::process> processes;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      processes.emplace_back([&out, k, job = jobs[k]] {
        auto const [idx, sum] = task(job.first, job.second);
        auto row = out.view<2>();
        row(k, 0) = static_cast<std::uint64_t>(idx);
        row(k, 1) = static_cast<std::uint64_t>(sum);
        row(k, 2) = static_cast<std::uint64_t>(sum >> 64);
      });
    }
    for (auto& p : processes) p.start();
    for (auto& p : processes) p.join();
    double const per_process = seconds_since(start);
    results.clear();
    auto const row = out.view<2>();
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      if (processes[k].exit_code() != 0) {
        std::fprintf(stderr, "seed4: the process of job %zu ended with exit code %d\n", k + 1,
                     processes[k].exit_code().value_or(-1));
        return 1;
      }
      results.emplace_back(static_cast<int>(row(k, 0)), (static_cast<u128>(row(k, 2)) << 64) | row(k, 1));
    }
    std::printf("  pids:");
    for (auto const& p : processes) std::printf(" %d", static_cast<int>(p.pid()));
    std::printf("\n");
    print_results(results);
    print_time(per_process, sequential);

    // 3. A pool of two workers, one job per chunk: four jobs on two
    // processes, so each worker runs about two of them.
    std::printf("process_pool(2).starmap(task, jobs, chunksize = 1):\n");
    start = std::chrono::steady_clock::now();
    std::vector<pool_result> pooled;
    std::vector<int> workers;
    {
      xjob::process_pool pool({.processes = 2});
      workers = pool.pids();
      pooled = pool.starmap(task_in_pool, jobs, 1);
    }
    double const pool_seconds = seconds_since(start);
    std::printf("  pool workers:");
    for (int pid : workers) std::printf(" %d", pid);
    std::printf("\n");
    results.clear();
    std::map<int, int> pid_of;
    for (auto const& r : pooled) {
      std::printf("  job %d ran in pid %d\n", r.idx, r.pid);
      results.emplace_back(r.idx, r.sum);
      pid_of[r.idx] = r.pid;
    }
    print_results(results);
    std::printf("  jobs 1 and 3 ran in the same pid: %s (the article saw yes; the scheduling decides)\n",
                pid_of[1] == pid_of[3] ? "yes" : "no");
    print_time(pool_seconds, sequential);

    // 4. joblib's form.
    std::printf("xjob::parallel({.n_jobs = 4, .backend = \"processes\"})(delayed(task)(idx, count) ...):\n");
    start = std::chrono::steady_clock::now();
    results = xjob::parallel({.n_jobs = 4, .backend = "processes"})(
        jobs | std::views::transform([](auto const& job) { return xjob::delayed(task)(job.first, job.second); }));
    double const joblib_seconds = seconds_since(start);
    print_results(results);
    print_time(joblib_seconds, sequential);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "seed4: %s\n", e.what());
    return 1;
  }
}
