// processes_bench: xjob's "processes" backend against its "threads" backend
// and hand-written baselines, all in one process.
//
//   bazel run --config=bench //bench:processes_bench            # full (1 GiB arrays, minutes)
//   bazel run --config=bench //bench:processes_bench -- --quick # smoke run (seconds)
//
// 1. Elementwise map y = sqrt(x)*2+1 over float64, 2 workers: processes,
//    threads and raw oneTBB, into a warm output and a fresh output per
//    repetition, with page-fault counts; then the peak memory (PSS of the
//    caller plus its worker processes) of a processes call into the warm
//    output.
// 2. Pool start: from the call to the first task running, while the caller
//    holds nothing, a 1 GiB shared_array, or a 1 GiB private xtensor (and
//    what the caller's next write to that array costs after the fork).
// 3. Dispatch cost per tiny task, automatic batches and batch_size = 1.
// 4. Compute-bound jobs (128-bit sums of squares, chained MD5): processes,
//    threads, raw std::thread and sequential; and, as a diagnostic, MD5
//    through one-shot EVP_Digest(EVP_md5()), whose lock threads share.
//
// Each section ends with a [noise: ...] line: how much CPU other processes
// took meanwhile (the machine has 2 vCPUs and other people's builds).
//
// Every section runs its variants interleaved (the order rotates each
// repetition) after one untimed warm-up round; the machine is noisy, so only
// numbers of the same run are compared: medians with min-max, and ratios to
// baselines of the same run. Every output is checked; a wrong one ends the
// program with exit status 1. Targets are reported, never enforced.
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/version.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/xjob.hpp>

#include "bench_support.hpp"
#include "compute_kernels.hpp"

namespace {

using namespace xjob::bench;
constexpr int workers = 2;
constexpr double mib = 1024.0 * 1024.0;

// ---------------------------------------------------------------- helpers

// Minor page faults so far of this process and of its reaped children.
long minor_faults() {
  rusage self{};
  rusage children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  return self.ru_minflt + children.ru_minflt;
}

std::string load_average() {
  std::FILE* file = std::fopen("/proc/loadavg", "r");
  if (file == nullptr) return "?";
  char text[128] = {};
  if (std::fgets(text, sizeof text, file) == nullptr) text[0] = '\0';
  std::fclose(file);
  std::string out(text);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// How busy the machine was with other work during a section: CPU time the
// whole machine spent (/proc/stat) minus what this process and its reaped
// children spent (getrusage), and what the hypervisor stole.
class noise_meter {
 public:
  noise_meter() : start_(clock_type::now()), machine_(machine_busy()), own_(own_cpu()) {}

  [[nodiscard]] std::string report() const {
    auto const [busy, steal] = machine_busy();
    double const wall = seconds_since(start_);
    double const others = (busy - machine_.first) - (own_cpu() - own_);
    double const capacity = wall * static_cast<double>(std::max(1u, std::thread::hardware_concurrency()));
    return fmt::format("other processes used {:.1f} CPU-s of {:.1f} ({:.0f}% of the machine) during this section; "
                       "steal {:.1f} s; load average now {}",
                       std::max(0.0, others), capacity, std::max(0.0, 100 * others / capacity),
                       steal - machine_.second, load_average());
  }

 private:
  // Busy and stolen CPU seconds of the whole machine so far.
  static std::pair<double, double> machine_busy() {
    std::FILE* file = std::fopen("/proc/stat", "r");
    if (file == nullptr) return {0, 0};
    unsigned long long v[8] = {};
    int const got = std::fscanf(file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                                &v[4], &v[5], &v[6], &v[7]);
    std::fclose(file);
    if (got != 8) return {0, 0};
    double const tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    // user nice system idle iowait irq softirq steal
    return {static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]) / tick, static_cast<double>(v[7]) / tick};
  }
  static double own_cpu() {
    auto seconds = [](timeval const& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    rusage self{};
    rusage children{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    return seconds(self.ru_utime) + seconds(self.ru_stime) + seconds(children.ru_utime) + seconds(children.ru_stime);
  }

  clock_type::time_point start_;
  std::pair<double, double> machine_;
  double own_;
};

// Runs every variant once per round, `reps` timed rounds after an untimed
// warm-up round 0, the order rotating by one each round.
template <class Variant, class RunOne>
void interleave(std::vector<Variant>& variants, int reps, char const* what, RunOne run_one) {
  for (int rep = 0; rep <= reps; ++rep) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(rep)) % variants.size()];
      settle();
      run_one(v, rep > 0);
    }
    std::fprintf(stderr, "  %s: round %d of %d done\n", what, rep, reps);
  }
}

struct settings {
  bool quick = false;
  std::size_t elements = std::size_t(1) << 27;  // 1 GiB of float64
  int map_reps = 7;
  int start_reps = 15;
  long dispatch_auto_tasks = 2'000'000;
  long dispatch_one_tasks = 100'000;
  int dispatch_reps = 7;
  long sum_count = 600'000'000;  // per job; about 0.4 s here
  long md5_rounds = 1'000'000;   // per job
  int compute_reps = 5;
  int pss_runs = 3;
  std::set<int> sections = {1, 2, 3, 4};
};

settings parse_arguments(int argc, char** argv) {
  settings s;
  std::optional<int> reps;
  std::set<int> only;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    if (arg == "--quick") {
      s.quick = true;
    } else if (arg.starts_with("--reps=")) {
      reps = std::atoi(argv[i] + 7);
      if (*reps < 1) fail("--reps needs a positive count");
    } else if (arg.starts_with("--section=")) {
      int const section = std::atoi(argv[i] + 10);
      if (section < 1 || section > 4) fail("--section takes 1 to 4");
      only.insert(section);
    } else if (arg == "--help" || arg == "-h") {
      std::printf("usage: processes_bench [--quick] [--reps=N] [--section=K]...\n"
                  "  --quick      small sizes, 2-3 repetitions (a smoke run of seconds)\n"
                  "  --reps=N     timed repetitions of every section\n"
                  "  --section=K  run section K only (1 map, 2 pool start, 3 dispatch, 4 compute); repeatable\n");
      std::exit(0);
    } else {
      fail(fmt::format("unknown argument '{}' (try --help)", arg));
    }
  }
  if (s.quick) {
    s.elements = std::size_t(1) << 22;  // 32 MiB
    s.map_reps = 3;
    s.start_reps = 3;
    s.dispatch_auto_tasks = 100'000;
    s.dispatch_one_tasks = 2'000;
    s.dispatch_reps = 2;
    s.sum_count = 2'000'000;
    s.md5_rounds = 20'000;
    s.compute_reps = 2;
    s.pss_runs = 1;
  }
  if (reps) s.map_reps = s.start_reps = s.dispatch_reps = s.compute_reps = *reps;
  if (!only.empty()) s.sections = only;
  return s;
}

// ------------------------------------------------------------ PSS sampler

// The Pss lines of one process's smaps_rollup, in KiB.
struct rollup {
  long pss = 0;
  long pss_anon = 0;   // private memory and copy-on-write copies
  long pss_shmem = 0;  // shared memory (the shared_arrays, the call's rings)
};

long field_kib(char const* text, char const* name) {
  char const* line = std::strstr(text, name);
  return line == nullptr ? -1 : std::strtol(line + std::strlen(name), nullptr, 10);
}

// Empty if the file cannot be read (the process ended).
std::optional<rollup> read_rollup(char const* path) {
  int const fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char text[4096];
  std::size_t length = 0;
  for (;;) {
    ssize_t const got = read(fd, text + length, sizeof text - 1 - length);
    if (got <= 0) break;
    length += static_cast<std::size_t>(got);
    if (length == sizeof text - 1) break;
  }
  close(fd);
  text[length] = '\0';
  rollup r{field_kib(text, "\nPss:"), field_kib(text, "\nPss_Anon:"), field_kib(text, "\nPss_Shmem:")};
  if (r.pss < 0) return std::nullopt;
  return r;
}

// The children of every thread of this process.
std::vector<long> child_pids() {
  std::vector<long> pids;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return pids;
  while (dirent const* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::string const path = fmt::format("/proc/self/task/{}/children", entry->d_name);
    std::FILE* file = std::fopen(path.c_str(), "r");
    if (file == nullptr) continue;
    long pid = 0;
    while (std::fscanf(file, "%ld", &pid) == 1) pids.push_back(pid);
    std::fclose(file);
  }
  closedir(tasks);
  return pids;
}

// The state letter of process `pid` ('R', 'S', 'T' stopped, ...), or 0.
char process_state(long pid) {
  std::string const path = fmt::format("/proc/{}/stat", pid);
  int const fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[512];
  ssize_t const length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return 0;
  text[length] = '\0';
  char const* close_paren = std::strrchr(text, ')');
  return close_paren != nullptr && close_paren[1] == ' ' ? close_paren[2] : 0;
}

// Sums the PSS of this process and its children on a thread of its own,
// sleeping `period` between samples, and keeps the peak. The files cannot
// be read at one instant, and while workers fault shared pages in, a page
// moves from 1/1 in the caller to 1/2 + 1/2 (reading the caller before the
// workers would count it 1.5 times, after them 0.5 times; with 2 GiB mapped
// a read takes tens of ms). So each sample stops the workers (SIGSTOP),
// waits until they are stopped, reads every process, and continues them
// (SIGCONT): the caller alone does not change what maps what meanwhile.
class pss_sampler {
 public:
  struct peaks {
    long pss = 0;
    long anon = 0;  // the sum of Pss_Anon: private memory of caller + workers
    long samples = 0;
    std::size_t max_children = 0;
    double seconds = 0;
    double stopped_seconds = 0;  // how long the workers were held stopped, in all
    bool realtime = false;       // the sampler ran at SCHED_FIFO priority
  };

  explicit pss_sampler(std::chrono::microseconds period)
      : start_(clock_type::now()), thread_([this, period] {
          // Ahead of the workers, which would otherwise leave it no CPU of
          // the two (root may; elsewhere it samples less often).
          sched_param const priority{.sched_priority = 1};
          peaks_.realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &priority) == 0;
          while (!stop_.load(std::memory_order_relaxed)) {
            sample();
            std::this_thread::sleep_for(period);
          }
          sample();
        }) {}
  pss_sampler(pss_sampler const&) = delete;
  pss_sampler& operator=(pss_sampler const&) = delete;
  ~pss_sampler() { stop(); }

  peaks stop() {
    if (thread_.joinable()) {
      stop_.store(true);
      thread_.join();
      peaks_.seconds = seconds_since(start_);
    }
    return peaks_;
  }

 private:
  struct held {
    long pid;
    int pidfd;
  };

  void sample() {
    // pidfds: a signal cannot reach a recycled pid.
    std::vector<held> children;
    for (long pid : child_pids()) {
      int const fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
      if (fd < 0) continue;
      if (syscall(SYS_pidfd_send_signal, fd, SIGSTOP, nullptr, 0) == 0) {
        children.push_back({pid, fd});
      } else {
        close(fd);
      }
    }
    auto const stopped_at = clock_type::now();
    for (held const& child : children) {
      auto const deadline = clock_type::now() + std::chrono::milliseconds(50);
      for (;;) {
        char const state = process_state(child.pid);
        if (state == 'T' || state == 't' || state == 'Z' || state == 'X' || state == 0) break;
        if (clock_type::now() > deadline) break;
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    }
    rollup sum;
    bool complete = true;
    if (std::optional<rollup> const self = read_rollup("/proc/self/smaps_rollup")) {
      sum = *self;
    } else {
      complete = false;
    }
    for (held const& child : children) {
      std::string const path = fmt::format("/proc/{}/smaps_rollup", child.pid);
      if (std::optional<rollup> const r = read_rollup(path.c_str())) {
        sum.pss += r->pss;
        sum.pss_anon += r->pss_anon;
      }
    }
    for (held const& child : children) {
      syscall(SYS_pidfd_send_signal, child.pidfd, SIGCONT, nullptr, 0);
      close(child.pidfd);
    }
    if (!children.empty()) peaks_.stopped_seconds += seconds_since(stopped_at);
    if (!complete) return;
    peaks_.pss = std::max(peaks_.pss, sum.pss);
    peaks_.anon = std::max(peaks_.anon, sum.pss_anon);
    peaks_.max_children = std::max(peaks_.max_children, children.size());
    ++peaks_.samples;
  }

  std::atomic<bool> stop_{false};
  peaks peaks_;
  clock_type::time_point start_;
  std::thread thread_;  // last: starts after the rest exists
};

// ------------------------------------------------------- 1. elementwise map

struct map_variant {
  std::string name;
  std::string group;    // "warm" or "fresh"
  std::string backend;  // "processes", "threads", "raw TBB"
  std::function<std::pair<double, long>()> run;  // the timed seconds, and minor faults in them
  std::vector<double> seconds;
  std::vector<double> faults;
};

struct pss_result {
  std::string name;
  std::vector<pss_sampler::peaks> runs;
  std::vector<double> seconds;  // of the calls
};

class map_section {
 public:
  explicit map_section(settings const& s)
      : s_(s), n_(s.elements), x_({n_}, xjob::uninitialized), out_({n_}, xjob::uninitialized) {
    double* const x = x_.data();
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_), [&](auto const& r) {
        for (std::size_t i = r.begin(); i < r.end(); ++i) x[i] = 0.25 + static_cast<double>(i % 4099) * 0.37;
      });
    });
    poison(out_.data());  // touches the warm output
    define_variants();
  }

  void run() {
    double const gib = bytes_one() / (1024.0 * 1024 * 1024);
    fmt::print("\n== 1. Elementwise y = sqrt(x)*2+1: {} float64 ({:.3g} GiB in + {:.3g} GiB out), {} workers ==\n",
               n_, gib, gib, workers);
    fmt::print("{} timed repetitions after 1 warm-up round, interleaved. GB/s = 16 bytes per element / time.\n"
               "x and the warm output are xjob::shared_array<double>; xjob runs par.map_chunks(x, f, out) (warm)\n"
               "or y = par.map_chunks(x, f) (fresh: a new shared_array, recycled by xjob's cache after the first).\n"
               "Raw TBB: tbb::parallel_for in a task_arena(2) into the same warm output, or into a fresh\n"
               "std::unique_ptr<double[]> (new pages every time). f = [](auto const& in, auto&& out) {{\n"
               "out = xt::sqrt(in) * 2.0 + 1.0; }}. Every output is checked against sqrt(x)*2+1.\n\n",
               s_.map_reps);
    std::fflush(stdout);
    interleave(variants_, s_.map_reps, "map", [](map_variant& v, bool timed) {
      auto const [took, faults] = v.run();
      if (timed) {
        v.seconds.push_back(took);
        v.faults.push_back(static_cast<double>(faults));
      }
    });
    print_table();
    measure_pss();
  }

  [[nodiscard]] double median(std::string_view group, std::string_view backend) const {
    for (auto const& v : variants_)
      if (v.group == group && v.backend == backend) return summarize(v.seconds).median;
    return std::numeric_limits<double>::quiet_NaN();
  }
  [[nodiscard]] double bytes_one() const { return static_cast<double>(n_) * sizeof(double); }
  [[nodiscard]] double peak_pss_mib(std::string_view name) const {
    long peak = -1;
    for (auto const& p : pss_)
      if (p.name == name)
        for (auto const& r : p.runs) peak = std::max(peak, r.pss);
    return peak < 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(peak) / 1024.0;
  }
  [[nodiscard]] double baseline_pss_mib() const { return baseline_pss_mib_; }

  // Frees the arrays (and xjob's cache of freed shared memory), so that the
  // next sections do not run with 2 GiB more mapped in the caller.
  void release_arrays() {
    x_ = xjob::shared_array<double>();
    out_ = xjob::shared_array<double>();
    xjob::trim_shared_memory_cache();
  }

 private:
  void poison(double* y) {
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_), [&](auto const& r) {
        std::fill(y + r.begin(), y + r.end(), std::numeric_limits<double>::quiet_NaN());
      });
    });
  }

  // Equal to sqrt(x)*2+1 up to an ulp or two (a fused multiply-add in one
  // variant and not another); NaN (the poison) never passes.
  void check(std::string const& name, double const* y) {
    double const* const x = x_.data();
    std::atomic<std::size_t> first_bad{n_};
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_), [&](auto const& r) {
        for (std::size_t i = r.begin(); i < r.end(); ++i) {
          double const want = kernel(x[i]);
          if (!(std::abs(y[i] - want) <= 4e-16 * std::abs(want))) {
            std::size_t seen = first_bad.load();
            while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
            }
            break;
          }
        }
      });
    });
    std::size_t const bad = first_bad.load();
    if (bad < n_)
      fail(fmt::format("{}: y[{}] = {} but sqrt(x)*2+1 = {} (x = {})", name, bad, y[bad], kernel(x[bad]), x[bad]));
  }

  void raw_tbb(double* y) {
    double const* const x = x_.data();
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_),
                        [&](auto const& r) { map_range(x, y, r.begin(), r.end()); });
    });
  }

  // `settled`: oneTBB's threads (which poisoned the output) go to sleep
  // before the timed call; otherwise it starts right after a TBB loop.
  std::pair<double, long> warm_xjob(std::string const& name, xjob::parallel const& par, bool settled = true) {
    poison(out_.data());
    if (settled) settle();
    long const faults = minor_faults();
    auto const start = clock_type::now();
    par.map_chunks(x_, map_fn, out_);
    double const took = seconds_since(start);
    long const faulted = minor_faults() - faults;
    check(name, out_.data());
    return {took, faulted};
  }

  std::pair<double, long> fresh_xjob(std::string const& name, xjob::parallel const& par) {
    long const faults = minor_faults();
    auto const start = clock_type::now();
    xjob::shared_array<double> y = par.map_chunks(x_, map_fn);
    double const took = seconds_since(start);
    long const faulted = minor_faults() - faults;
    if (y.size() != n_) fail(fmt::format("{}: {} elements, expected {}", name, y.size(), n_));
    check(name, y.data());
    return {took, faulted};
  }

  static constexpr auto map_fn = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };

  void define_variants() {
    auto add = [this](std::string name, std::string group, std::string backend,
                      std::function<std::pair<double, long>()> run) {
      variants_.push_back({std::move(name), std::move(group), std::move(backend), std::move(run), {}, {}});
    };
    add("xjob processes  map_chunks(x, f, out)", "warm", "processes",
        [this] { return warm_xjob("warm processes", procs_); });
    add("xjob processes, fork per call (reuse_workers=false)", "warm", "processes forked",
        [this] { return warm_xjob("warm processes forked", procs_forked_); });
    add("xjob threads    map_chunks(x, f, out)", "warm", "threads",
        [this] { return warm_xjob("warm threads", threads_); });
    add("raw TBB parallel_for into out", "warm", "raw TBB", [this] {
      poison(out_.data());
      settle();
      long const faults = minor_faults();
      auto const start = clock_type::now();
      raw_tbb(out_.data());
      double const took = seconds_since(start);
      long const faulted = minor_faults() - faults;
      check("warm raw TBB", out_.data());
      return std::pair{took, faulted};
    });
    add("(diag.) processes, right after a TBB loop", "warm", "processes after TBB",
        [this] { return warm_xjob("warm processes after TBB", procs_, false); });
    add("xjob processes  y = map_chunks(x, f)", "fresh", "processes",
        [this] { return fresh_xjob("fresh processes", procs_); });
    add("xjob threads    y = map_chunks(x, f)", "fresh", "threads",
        [this] { return fresh_xjob("fresh threads", threads_); });
    add("raw TBB into a fresh unique_ptr<double[]>", "fresh", "raw TBB", [this] {
      long const faults = minor_faults();
      auto const start = clock_type::now();
      std::unique_ptr<double[]> y = std::make_unique_for_overwrite<double[]>(n_);
      raw_tbb(y.get());
      double const took = seconds_since(start);
      long const faulted = minor_faults() - faults;
      check("fresh raw TBB", y.get());
      return std::pair{took, faulted};
    });
  }

  void print_table() const {
    fmt::print("{:<44} {:>8} {:>8} {:>8} {:>7} {:>11} {:>10}\n", "variant", "median s", "min s", "max s", "GB/s",
               "vs threads", "faults");
    std::string group;
    for (auto const& v : variants_) {
      if (v.group != group) {
        group = v.group;
        fmt::print("{}", group == "warm" ? "warm output (one shared_array, already touched, reused):\n"
                                   : "fresh output (new array each repetition):\n");
      }
      summary const t = summarize(v.seconds);
      fmt::print("  {:<42} {:>8.4f} {:>8.4f} {:>8.4f} {:>7.1f} {:>10.3f}x {:>10.0f}\n", v.name, t.median, t.min,
                 t.max, 2 * bytes_one() / t.median / 1e9, median(v.group, "threads") / t.median,
                 summarize(v.faults).median);
    }
    fmt::print("'vs threads' = median time of xjob threads (same output kind) / median time; above 1 is faster.\n"
               "'faults' = minor page faults during the call, caller + its worker processes (median). The\n"
               "(diag.) row starts right after the untimed TBB loop that poisons the output, with oneTBB's\n"
               "threads still spinning; every other row starts after a 20 ms pause.\n");
    std::fflush(stdout);
  }

  // Peak PSS of caller + workers during warm calls, sampled by a thread of
  // its own. Run after the timed rounds, untimed: the sampler walks the page
  // tables of 2 GiB of mappings in three processes, which costs CPU the
  // timed runs should not lose. xjob's cache of freed shared memory (the
  // fresh outputs) is emptied first, so that it is not counted.
  void measure_pss() {
    xjob::trim_shared_memory_cache();
    settle();
    if (std::optional<rollup> const r = read_rollup("/proc/self/smaps_rollup"))
      baseline_pss_mib_ = static_cast<double>(r->pss) / 1024.0;
    struct candidate {
      std::string name;
      xjob::parallel const* par;
    };
    for (candidate const& c : {candidate{"processes", &procs_}, candidate{"threads", &threads_}}) {
      pss_result result{c.name, {}, {}};
      for (int run = 0; run < s_.pss_runs; ++run) {
        poison(out_.data());
        settle();
        pss_sampler sampler(std::chrono::microseconds(2000));
        auto const start = clock_type::now();
        c.par->map_chunks(x_, map_fn, out_);
        result.seconds.push_back(seconds_since(start));
        result.runs.push_back(sampler.stop());
        check("PSS run " + c.name, out_.data());
      }
      pss_.push_back(std::move(result));
    }
    double const in_out = 2 * bytes_one() / mib;
    fmt::print("\nPeak memory during a warm map_chunks(x, f, out): PSS of the caller + its worker processes from\n"
               "/proc/<pid>/smaps_rollup, sampled every 2 ms + the time a sample takes ({} untimed runs per backend,\n"
               "after the table; xjob's shared-memory cache emptied first). Each sample holds the workers stopped\n"
               "(SIGSTOP .. SIGCONT) while it reads, so that no page changes hands between the reads. Caller at\n"
               "rest before: {:.0f} MiB PSS. Input + output = {:.0f} MiB. 'private' = sum of Pss_Anon (private\n"
               "and copy-on-write memory).\n",
               s_.pss_runs, baseline_pss_mib_, in_out);
    fmt::print("{:<10} {:>9} {:>15} {:>13} {:>9} {:>8} {:>10} {:>8} {:>9} {:>8}\n", "backend", "peak PSS",
               "over in+out", "over rest", "private", "samples", "ms/sample", "workers", "stopped", "call s");
    for (auto const& p : pss_) {
      pss_sampler::peaks top;
      long samples = 0;
      double sampled_seconds = 0;
      double stopped_seconds = 0;
      for (auto const& r : p.runs) {
        top.pss = std::max(top.pss, r.pss);
        top.anon = std::max(top.anon, r.anon);
        top.max_children = std::max(top.max_children, r.max_children);
        samples += r.samples;
        sampled_seconds += r.seconds;
        stopped_seconds += r.stopped_seconds;
      }
      double const peak = static_cast<double>(top.pss) / 1024.0;
      fmt::print("{:<10} {:>5.0f} MiB {:>11.0f} MiB {:>9.0f} MiB {:>5.0f} MiB {:>8} {:>10.1f} {:>8} {:>7.0f}ms {:>8.3f}\n",
                 p.name, peak, peak - in_out, peak - baseline_pss_mib_, static_cast<double>(top.anon) / 1024.0,
                 samples, samples > 0 ? sampled_seconds * 1e3 / static_cast<double>(samples) : 0.0, top.max_children,
                 stopped_seconds * 1e3 / static_cast<double>(p.runs.size()), summarize(p.seconds).median);
    }
    bool const realtime = std::all_of(pss_.begin(), pss_.end(), [](auto const& p) {
      return std::all_of(p.runs.begin(), p.runs.end(), [](auto const& r) { return r.realtime; });
    });
    fmt::print("(peaks over the runs; 'workers' = most worker processes seen in a sample; 'stopped' = time per run\n"
               "the workers were held stopped; the sampler runs {};\n"
               "'call s' is slower than the table's: the sampler takes CPU and stops the workers.)\n",
               realtime ? "at SCHED_FIFO priority 1, ahead of the workers" : "at normal priority (SCHED_FIFO refused)");
    std::fflush(stdout);
  }

  settings s_;
  std::size_t n_;
  tbb::task_arena arena_{workers};
  xjob::parallel procs_{xjob::parallel_options{.n_jobs = workers, .backend = "processes"}};
  xjob::parallel procs_forked_{
      xjob::parallel_options{.n_jobs = workers, .backend = "processes", .reuse_workers = false}};
  xjob::parallel threads_{xjob::parallel_options{.n_jobs = workers, .backend = "threads"}};
  xjob::shared_array<double> x_;
  xjob::shared_array<double> out_;
  std::vector<map_variant> variants_;
  std::vector<pss_result> pss_;
  double baseline_pss_mib_ = 0;
};

// ------------------------------------------------------------ 2. pool start

struct start_variant {
  std::string backend;
  std::string holding;  // "nothing", "shared_array", "xtensor"
  std::vector<double> first_ms;
  std::vector<double> all_ms;
  std::vector<double> call_ms;
  std::vector<double> rewrite_ms;  // writing the held array once, after the call
};

class start_section {
 public:
  explicit start_section(settings const& s) : s_(s), stamps_({2}), pids_({2}) {
    for (std::string const backend : {"processes", "threads"})
      for (std::string const holding : {"nothing", "shared_array", "xtensor"})
        variants_.push_back({backend, holding, {}, {}, {}, {}});
  }

  void run() {
    double const gib = static_cast<double>(s_.elements) * sizeof(double) / (1024.0 * 1024 * 1024);
    fmt::print("\n== 2. Pool start: from the call to the first task running, n_jobs = {} ==\n", workers);
    fmt::print("{} timed repetitions after 1 warm-up round, interleaved. The caller holds nothing, or a touched\n"
               "{:.3g} GiB float64 array made just before (untimed): an xjob::shared_array<double> (shared memory)\n"
               "or an xt::xtensor<double,1> (private memory); freed after each run (and xjob's shared-memory\n"
               "cache emptied). t0 = steady_clock::now() just before par.map(task, iota(0, 2)); each task stores\n"
               "steady_clock::now() (system-wide, so worker processes' clocks compare) in a shared_array<long>.\n"
               "first = min(stamps) - t0, all = max(stamps) - t0 (both workers running), call = whole par.map.\n\n",
               s_.start_reps, gib);
    std::fflush(stdout);
    xjob::trim_shared_memory_cache();
    interleave(variants_, s_.start_reps, "pool start", [this](start_variant& v, bool timed) { run_one(v, timed); });
    fmt::print("{:<10} {:<13} {:>9} {:>8} {:>8}   {:>9} {:>8} {:>8}   {:>8} {:>11}\n", "backend", "caller holds",
               "first ms", "min", "max", "all ms", "min", "max", "call ms", "rewrite ms");
    for (auto const& v : variants_) {
      summary const f = summarize(v.first_ms);
      summary const a = summarize(v.all_ms);
      summary const c = summarize(v.call_ms);
      std::string const rewrite = v.rewrite_ms.empty() ? "-" : fmt::format("{:.1f}", summarize(v.rewrite_ms).median);
      fmt::print("{:<10} {:<13} {:>9.3f} {:>8.3f} {:>8.3f}   {:>9.3f} {:>8.3f} {:>8.3f}   {:>8.3f} {:>11}\n",
                 v.backend, v.holding, f.median, f.min, f.max, a.median, a.min, a.max, c.median, rewrite);
    }
    fmt::print("(medians, then min and max; threads: the caller is one of the two workers, so its first task\n"
               "runs at once. 'rewrite ms' = the caller writing its whole array once right after the call, not\n"
               "part of any other column: after a fork its private pages are copy-on-write, so every page faults.)\n");
    std::fflush(stdout);
  }

  [[nodiscard]] double first_ms(std::string_view backend, std::string_view holding) const {
    for (auto const& v : variants_)
      if (v.backend == backend && v.holding == holding) return summarize(v.first_ms).median;
    return std::numeric_limits<double>::quiet_NaN();
  }

 private:
  void run_one(start_variant& v, bool timed) {
    std::optional<xjob::shared_array<double>> shared;
    std::optional<xt::xtensor<double, 1>> private_memory;
    if (v.holding == "shared_array") {
      shared.emplace(std::vector<std::size_t>{s_.elements}, xjob::uninitialized);
      std::fill(shared->begin(), shared->end(), 1.5);
    } else if (v.holding == "xtensor") {
      private_memory.emplace(xt::xtensor<double, 1>::from_shape({s_.elements}));
      std::fill(private_memory->begin(), private_memory->end(), 1.5);
    }
    xjob::parallel const& par = v.backend == "processes" ? procs_ : threads_;
    long* const stamps = stamps_.data();
    long* const pids = pids_.data();
    std::fill(stamps, stamps + 2, 0L);
    std::fill(pids, pids + 2, 0L);
    settle();
    auto const task = [stamps, pids](int i) -> long {
      long const now = static_cast<long>(clock_type::now().time_since_epoch().count());
      stamps[i] = now;
      pids[i] = static_cast<long>(getpid());
      return now;
    };
    auto const t0 = clock_type::now();
    std::vector<long> const returned = par.map(task, std::views::iota(0, 2));
    auto const t1 = clock_type::now();
    std::string const name = v.backend + " holding " + v.holding;
    if (returned.size() != 2) fail(fmt::format("{}: {} results, expected 2", name, returned.size()));
    long const caller = static_cast<long>(getpid());
    for (std::size_t i = 0; i < 2; ++i) {
      if (stamps[i] == 0 || returned[i] != stamps[i])
        fail(fmt::format("{}: task {} stored {} in shared memory and returned {}", name, i, stamps[i], returned[i]));
      bool const in_caller = pids[i] == caller;
      if (in_caller == (v.backend == "processes"))
        fail(fmt::format("{}: task {} ran in process {} (caller {})", name, i, pids[i], caller));
    }
    long const origin = static_cast<long>(t0.time_since_epoch().count());
    // The caller writes its array once after the call: forking made its
    // private pages copy-on-write, so each first write faults.
    auto const rewrite = clock_type::now();
    if (shared) std::fill(shared->begin(), shared->end(), 2.5);
    if (private_memory) std::fill(private_memory->begin(), private_memory->end(), 2.5);
    double const rewrite_ms = std::chrono::duration<double, std::milli>(clock_type::now() - rewrite).count();
    if (timed) {
      v.first_ms.push_back(static_cast<double>(std::min(stamps[0], stamps[1]) - origin) / 1e6);
      v.all_ms.push_back(static_cast<double>(std::max(stamps[0], stamps[1]) - origin) / 1e6);
      v.call_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      if (shared || private_memory) v.rewrite_ms.push_back(rewrite_ms);
    }
    if (shared) {
      shared.reset();
      xjob::trim_shared_memory_cache();
    }
  }

  settings s_;
  xjob::parallel procs_{xjob::parallel_options{.n_jobs = workers, .backend = "processes"}};
  xjob::parallel threads_{xjob::parallel_options{.n_jobs = workers, .backend = "threads"}};
  xjob::shared_array<long> stamps_;
  xjob::shared_array<long> pids_;
  std::vector<start_variant> variants_;
};

// ------------------------------------------------------ 3. tiny task dispatch

struct dispatch_variant {
  std::string name;
  std::string key;
  long tasks = 0;
  std::function<std::vector<long>()> run;
  std::vector<double> ns_per_task;
  std::function<void()> prepare = {};  // untimed, before each run
};

class dispatch_section {
 public:
  explicit dispatch_section(settings const& s) : s_(s) {
    auto add = [this](std::string name, std::string key, long tasks, xjob::parallel const* par) {
      std::function<std::vector<long>()> run;
      if (par == nullptr) {
        run = [tasks] {
          std::vector<long> out(static_cast<std::size_t>(tasks));
          for (long i = 0; i < tasks; ++i) out[static_cast<std::size_t>(i)] = body(i);
          return out;
        };
      } else {
        run = [tasks, par] { return par->map(body, std::views::iota(0L, tasks)); };
      }
      variants_.push_back({std::move(name), std::move(key), tasks, std::move(run), {}});
    };
    long const many = s_.dispatch_auto_tasks;
    long const few = s_.dispatch_one_tasks;
    add("plain loop into std::vector<long> (floor)", "floor", many, nullptr);
    add("processes, automatic batches", "processes auto", many, &procs_);
    add("processes, first call (workers start in it)", "processes first", many, &procs_);
    variants_.back().prepare = [] { xjob::release_process_workers(); };
    add("processes, fork per call (reuse_workers=false)", "processes forked", many, &procs_forked_);
    add("threads,   automatic batches", "threads auto", many, &threads_);
    add("processes, batch_size = 1", "processes one", few, &procs_one_);
    add("processes, batch_size = 1, fork per call", "processes one forked", few, &procs_one_forked_);
    add("threads,   batch_size = 1", "threads one", few, &threads_one_);
  }

  void run() {
    fmt::print("\n== 3. Dispatch cost of tiny tasks: par.map([](long i) {{ return i * 3 + 1; }}, iota(0L, n)) ==\n");
    fmt::print("{} timed repetitions after 1 warm-up round, interleaved; n = {} with automatic batches, {} with\n"
               "batch_size = 1. Per task = wall time of the whole call (fork, result vector, everything) / n.\n\n",
               s_.dispatch_reps, s_.dispatch_auto_tasks, s_.dispatch_one_tasks);
    std::fflush(stdout);
    interleave(variants_, s_.dispatch_reps, "dispatch", [](dispatch_variant& v, bool timed) {
      if (v.prepare) v.prepare();
      auto const start = clock_type::now();
      std::vector<long> const got = v.run();
      double const took = seconds_since(start);
      if (got.size() != static_cast<std::size_t>(v.tasks))
        fail(fmt::format("{}: {} results, expected {}", v.name, got.size(), v.tasks));
      for (long i = 0; i < v.tasks; ++i)
        if (got[static_cast<std::size_t>(i)] != i * 3 + 1)
          fail(fmt::format("{}: result {} is {}, expected {}", v.name, i, got[static_cast<std::size_t>(i)], i * 3 + 1));
      if (timed) v.ns_per_task.push_back(took * 1e9 / static_cast<double>(v.tasks));
    });
    fmt::print("{:<44} {:>9} {:>11} {:>11} {:>11} {:>11}\n", "variant", "tasks", "per task", "min", "max",
               "whole call");
    for (auto const& v : variants_) {
      summary const t = summarize(v.ns_per_task);
      fmt::print("  {:<42} {:>9} {:>11} {:>11} {:>11} {:>9.2f}ms\n", v.name, v.tasks, pretty_ns(t.median),
                 pretty_ns(t.min), pretty_ns(t.max), t.median * static_cast<double>(v.tasks) / 1e6);
    }
    std::fflush(stdout);
  }

  [[nodiscard]] double ns_per_task(std::string_view key) const {
    for (auto const& v : variants_)
      if (v.key == key) return summarize(v.ns_per_task).median;
    return std::numeric_limits<double>::quiet_NaN();
  }

  static std::string pretty_ns(double ns) {
    return ns >= 1000 ? fmt::format("{:.2f} us", ns / 1000) : fmt::format("{:.1f} ns", ns);
  }

 private:
  static long body(long i) { return i * 3 + 1; }

  settings s_;
  xjob::parallel procs_{xjob::parallel_options{.n_jobs = workers, .backend = "processes"}};
  xjob::parallel threads_{xjob::parallel_options{.n_jobs = workers, .backend = "threads"}};
  xjob::parallel procs_one_{xjob::parallel_options{.n_jobs = workers, .backend = "processes", .batch_size = 1}};
  xjob::parallel procs_forked_{
      xjob::parallel_options{.n_jobs = workers, .backend = "processes", .reuse_workers = false}};
  xjob::parallel procs_one_forked_{xjob::parallel_options{
      .n_jobs = workers, .backend = "processes", .batch_size = 1, .reuse_workers = false}};
  xjob::parallel threads_one_{xjob::parallel_options{.n_jobs = workers, .backend = "threads", .batch_size = 1}};
  std::vector<dispatch_variant> variants_;
};

// ------------------------------------------------------ 4. compute-bound jobs

// One seed-4 job: the sum of squares below `count`.
unsigned __int128 sum_squares_job(long count) { return sum_squares(0, count); }

// One seed-3 job: MD5 chained `rounds` times from "Hello World".
digest md5_job(long rounds) { return md5_chain("Hello World", rounds); }

// The same chain through one-shot EVP_Digest(..., EVP_md5(), ...) each round,
// as simple code would write it: OpenSSL 3 then looks MD5 up in its provider
// store (under a lock every thread shares) on every call.
digest md5_chain_one_shot(long rounds) {
  digest d{};
  unsigned int length = 0;
  constexpr std::string_view start = "Hello World";
  if (EVP_Digest(start.data(), start.size(), d.data(), &length, EVP_md5(), nullptr) != 1 || length != d.size())
    throw std::runtime_error("EVP_Digest(MD5) failed");
  for (long r = 1; r < rounds; ++r) {
    digest const previous = d;
    if (EVP_Digest(previous.data(), previous.size(), d.data(), &length, EVP_md5(), nullptr) != 1)
      throw std::runtime_error("EVP_Digest(MD5) failed");
  }
  return d;
}

template <class R>
struct compute_variant {
  std::string name;
  std::string key;  // "sequential", "processes", "threads", "raw"
  std::function<std::vector<R>()> run;
  std::vector<double> seconds;
};

// One workload: `jobs` calls of `f(argument)`, run four ways, every result
// checked with `check(job, result)`.
template <class R, class F, class Check>
class compute_workload {
 public:
  compute_workload(std::string title, F f, std::vector<long> jobs, Check check, int reps)
      : title_(std::move(title)), f_(f), jobs_(std::move(jobs)), check_(check), reps_(reps) {
    auto add = [this](std::string name, std::string key, std::function<std::vector<R>()> run) {
      variants_.push_back({std::move(name), std::move(key), std::move(run), {}});
    };
    add("sequential (a plain loop in the caller)", "sequential", [this] {
      std::vector<R> out;
      for (long job : jobs_) out.push_back(f_(job));
      return out;
    });
    add("xjob processes (delayed calls)", "processes", [this] { return procs_(calls()); });
    add("xjob threads   (delayed calls)", "threads", [this] { return threads_(calls()); });
    add("raw std::thread x2, jobs split by hand", "raw", [this] {
      std::vector<R> out(jobs_.size());
      auto share = [this, &out](std::size_t first) {
        for (std::size_t j = first; j < jobs_.size(); j += workers) out[j] = f_(jobs_[j]);
      };
      std::thread a(share, 0), b(share, 1);
      a.join();
      b.join();
      return out;
    });
  }

  void run() {
    interleave(variants_, reps_, title_.c_str(), [this](compute_variant<R>& v, bool timed) {
      auto const start = clock_type::now();
      std::vector<R> const got = v.run();
      double const took = seconds_since(start);
      if (got.size() != jobs_.size()) fail(fmt::format("{}, {}: {} results for {} jobs", title_, v.name, got.size(), jobs_.size()));
      for (std::size_t j = 0; j < got.size(); ++j) check_(v.name, j, got[j]);
      if (timed) v.seconds.push_back(took);
    });
  }

  void print(double work_units, std::string_view unit) const {
    double const seq = median("sequential");
    fmt::print("{:<42} {:>9} {:>9} {:>9} {:>9} {:>14}\n", "variant", "median s", "min s", "max s", "speed-up",
               fmt::format("ns/{}", unit));
    for (auto const& v : variants_) {
      summary const t = summarize(v.seconds);
      fmt::print("  {:<40} {:>9.4f} {:>9.4f} {:>9.4f} {:>8.2f}x {:>14.3f}\n", v.name, t.median, t.min, t.max,
                 seq / t.median, t.median * 1e9 / work_units);
    }
    double const ratio = median("raw") / median("processes");
    fmt::print("processes speed-up / raw std::thread speed-up = {:.3f}; threads backend / raw = {:.3f}\n", ratio,
               median("raw") / median("threads"));
    std::fflush(stdout);
  }

  [[nodiscard]] double median(std::string_view key) const {
    for (auto const& v : variants_)
      if (v.key == key) return summarize(v.seconds).median;
    return std::numeric_limits<double>::quiet_NaN();
  }

 private:
  auto calls() const {
    return jobs_ | std::views::transform([this](long job) { return xjob::delayed(f_)(job); });
  }

  std::string title_;
  F f_;
  std::vector<long> jobs_;
  Check check_;
  int reps_;
  xjob::parallel procs_{xjob::parallel_options{.n_jobs = workers, .backend = "processes"}};
  xjob::parallel threads_{xjob::parallel_options{.n_jobs = workers, .backend = "threads"}};
  std::vector<compute_variant<R>> variants_;
};

struct compute_results {
  double sum_ratio = std::numeric_limits<double>::quiet_NaN();
  double md5_ratio = std::numeric_limits<double>::quiet_NaN();
  double sum_speedup = std::numeric_limits<double>::quiet_NaN();
  double md5_speedup = std::numeric_limits<double>::quiet_NaN();
  double one_shot_ratio = std::numeric_limits<double>::quiet_NaN();
};

compute_results run_compute_section(settings const& s) {
  compute_results results;
  fmt::print("\n== 4. Compute-bound jobs, {} workers: processes vs threads vs raw std::thread vs sequential ==\n",
             workers);
  fmt::print("{} timed repetitions after 1 warm-up round, interleaved; speed-up = sequential median / median.\n",
             s.compute_reps);

  // (a) sums of squares in 128 bits.
  constexpr int sum_jobs = 4;
  long const count = s.sum_count;
  unsigned __int128 const expected_sum = sum_squares_closed_form(count);
  auto check_sum = [expected_sum, count](std::string const& name, std::size_t job, unsigned __int128 got) {
    if (got != expected_sum)
      fail(fmt::format("sum of squares, {}: job {} gives {}, but (n-1)n(2n-1)/6 for n = {} is {}", name, job,
                       to_decimal(got), count, to_decimal(expected_sum)));
  };
  fmt::print("\n(a) {} jobs, each unsigned __int128 s = sum of (unsigned __int128)i * i for i < {} (checked\n"
             "    against (n-1)n(2n-1)/6 = {}); results come back as unsigned __int128.\n\n",
             sum_jobs, count, to_decimal(expected_sum));
  std::fflush(stdout);
  compute_workload<unsigned __int128, decltype(&sum_squares_job), decltype(check_sum)> sums(
      "sum of squares", &sum_squares_job, std::vector<long>(sum_jobs, count), check_sum, s.compute_reps);
  sums.run();
  sums.print(static_cast<double>(sum_jobs) * static_cast<double>(count), "iteration");
  results.sum_ratio = sums.median("raw") / sums.median("processes");
  results.sum_speedup = sums.median("sequential") / sums.median("processes");

  // (b) chained MD5.
  constexpr int md5_jobs = 8;
  long const rounds = s.md5_rounds;
  digest const sequential = md5_job(rounds);  // the reference, computed once in the caller
  if (md5_chain_one_shot(rounds) != sequential) fail("the two ways of chaining MD5 disagree");
  // Known chains, from Python's hashlib:
  //   d = b"Hello World"; for _ in range(n): d = hashlib.md5(d).digest()
  struct known {
    long rounds;
    std::string_view hex;
  };
  for (known const k : {known{1, "b10a8db164e0754105b7a99be72e3fe5"}, known{20'000, "d05014e7e61fd470e266f50eba57e78b"},
                        known{1'000'000, "1d6c0fc8b1f14a05ea50f6a4e4d85cc4"}}) {
    if (k.rounds != 1 && k.rounds != rounds) continue;
    std::string const got = hex(k.rounds == rounds ? sequential : md5_job(k.rounds));
    if (got != k.hex)
      fail(fmt::format("MD5 chained {} times from \"Hello World\" is {}, expected {}", k.rounds, got, k.hex));
  }
  auto check_md5 = [sequential](std::string const& name, std::size_t job, digest const& got) {
    if (got != sequential)
      fail(fmt::format("chained MD5, {}: job {} gives {}, the caller computed {}", name, job, hex(got),
                       hex(sequential)));
  };
  fmt::print("\n(b) {} jobs, each MD5 chained {} times from \"Hello World\" (the first round hashes the string,\n"
             "    then each the previous 16-byte digest) through OpenSSL's EVP interface, one EVP_MD_CTX per job\n"
             "    re-initialised each round with MD5 fetched once (EVP_MD_fetch) before the workers start:\n"
             "    {} (checked against the caller's own chain{}).\n\n",
             md5_jobs, rounds, hex(sequential),
             rounds == 1'000'000 || rounds == 20'000 ? " and Python's hashlib" : "");
  std::fflush(stdout);
  compute_workload<digest, decltype(&md5_job), decltype(check_md5)> md5s(
      "chained MD5", &md5_job, std::vector<long>(md5_jobs, rounds), check_md5, s.compute_reps);
  md5s.run();
  md5s.print(static_cast<double>(md5_jobs) * static_cast<double>(rounds), "digest");
  results.md5_ratio = md5s.median("raw") / md5s.median("processes");
  results.md5_speedup = md5s.median("sequential") / md5s.median("processes");

  // (b') diagnostic: one-shot EVP_Digest(EVP_md5()) per round.
  constexpr int one_shot_jobs = 4;
  fmt::print("\n(b') diagnostic: the same chain with one-shot EVP_Digest(data, 16, out, &n, EVP_md5(), nullptr) per\n"
             "     round, {} jobs: OpenSSL 3.0 fetches MD5 from its provider store on every call, under locks\n"
             "     that threads of one process share and worker processes do not.\n\n",
             one_shot_jobs);
  std::fflush(stdout);
  compute_workload<digest, decltype(&md5_chain_one_shot), decltype(check_md5)> one_shots(
      "chained MD5, one-shot EVP_Digest", &md5_chain_one_shot, std::vector<long>(one_shot_jobs, rounds), check_md5,
      s.compute_reps);
  one_shots.run();
  one_shots.print(static_cast<double>(one_shot_jobs) * static_cast<double>(rounds), "digest");
  results.one_shot_ratio = one_shots.median("raw") / one_shots.median("processes");
  return results;
}

// ------------------------------------------------------------------ targets

struct all_results {
  std::optional<map_section> map;
  std::optional<start_section> start;
  std::optional<dispatch_section> dispatch;
  std::optional<compute_results> compute;
};

void print_targets(all_results const& r) {
  fmt::print("\n== Summary against the targets (medians of this run) ==\n");
  auto verdict = [](bool ok) { return ok ? "met   " : "MISSED"; };
  if (r.map) {
    for (std::string_view const group : {"warm", "fresh"}) {
      double const ratio = r.map->median(group, "threads") / r.map->median(group, "processes");
      fmt::print("  [{}] processes/threads {} map: {:.2f}x (target >= 0.9)\n", verdict(ratio >= 0.9), group, ratio);
    }
    double const in_out = 2 * r.map->bytes_one() / mib;
    double const peak = r.map->peak_pss_mib("processes");
    fmt::print("  [{}] peak PSS, processes warm map: {:.0f} MiB (target <= input + output + 64 = {:.0f} MiB)\n",
               verdict(peak <= in_out + 64), peak, in_out + 64);
  }
  if (r.start) {
    double const a = r.start->first_ms("processes", "shared_array");
    double const b = r.start->first_ms("processes", "xtensor");
    fmt::print("  [{}] processes pool start, caller holds a shared_array: {:.2f} ms (target < 5 ms)\n", verdict(a < 5),
               a);
    fmt::print("  (info)   processes pool start, caller holds a private xtensor: {:.2f} ms; holds nothing: {:.2f} ms\n",
               b, r.start->first_ms("processes", "nothing"));
  }
  if (r.dispatch) {
    double const automatic = r.dispatch->ns_per_task("processes auto");
    double const one = r.dispatch->ns_per_task("processes one");
    fmt::print("  [{}] processes dispatch, automatic batches: {} per task (target <= 0.5 us)\n",
               verdict(automatic <= 500), dispatch_section::pretty_ns(automatic));
    fmt::print("  [{}] processes dispatch, batch_size = 1: {} per task (target <= 10 us)\n", verdict(one <= 10'000),
               dispatch_section::pretty_ns(one));
  }
  if (r.compute) {
    auto within = [](double ratio) { return ratio >= 0.97; };
    fmt::print("  [{}] sum of squares: processes speed-up / raw threads speed-up = {:.3f} (target within 3%; "
               "speed-up {:.2f}x)\n",
               verdict(within(r.compute->sum_ratio)), r.compute->sum_ratio, r.compute->sum_speedup);
    fmt::print("  [{}] chained MD5:    processes speed-up / raw threads speed-up = {:.3f} (target within 3%; "
               "speed-up {:.2f}x)\n",
               verdict(within(r.compute->md5_ratio)), r.compute->md5_ratio, r.compute->md5_speedup);
    fmt::print("  ('within 3%' is judged as >= 0.97: faster than raw threads is not a miss.)\n");
    fmt::print("  (info)   chained MD5 with one-shot EVP_Digest(EVP_md5()): processes / raw threads speed-up = {:.3f}\n",
               r.compute->one_shot_ratio);
  }
  fmt::print("(Targets are reported, not enforced: the exit status only reflects correctness.)\n");
}

}  // namespace

int main(int argc, char** argv) {
  settings const s = parse_arguments(argc, argv);
  md5_algorithm();  // fetched before any worker starts
  fmt::print("processes_bench{}: {} hardware threads, xjob::cpu_count() = {}, oneTBB {} (runtime {}), {}, {}\n",
             s.quick ? " --quick" : "", std::thread::hardware_concurrency(), xjob::cpu_count(), TBB_VERSION_STRING,
             TBB_runtime_version(), OpenSSL_version(OPENSSL_VERSION), __VERSION__);
  fmt::print("load average at start: {}\n", load_average());
  std::fflush(stdout);
  all_results r;
  auto noise = [](noise_meter const& meter) {
    fmt::print("[noise: {}]\n", meter.report());
    std::fflush(stdout);
  };
  if (s.sections.contains(1)) {
    noise_meter const meter;
    r.map.emplace(s);
    r.map->run();
    r.map->release_arrays();
    noise(meter);
  }
  if (s.sections.contains(2)) {
    noise_meter const meter;
    r.start.emplace(s);
    r.start->run();
    noise(meter);
  }
  if (s.sections.contains(3)) {
    noise_meter const meter;
    r.dispatch.emplace(s);
    r.dispatch->run();
    noise(meter);
  }
  if (s.sections.contains(4)) {
    noise_meter const meter;
    r.compute = run_compute_section(s);
    noise(meter);
  }
  fmt::print("load average at end: {}\n", load_average());
  print_targets(r);
  return 0;
}
