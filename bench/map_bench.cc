// map_bench: xjob against hand-written baselines, all in one process.
//
//   bazel run --config=bench //bench:map_bench            # full size (1 GiB input)
//   bazel run --config=bench //bench:map_bench -- --quick # smoke run (32 MiB, 200k tasks, 3 reps)
//
// 1. An elementwise map y = sqrt(x)*2+1 over float64 with 2 workers: a plain
//    loop, raw oneTBB, OpenMP and xjob's threads backend, each into a warm
//    (reused, already touched) output and into a fresh output per repetition.
// 2. The dispatch cost of tiny tasks: delayed calls and map() through xjob,
//    with automatic batching and with batch_size = 1, against a plain loop.
//
// Every variant runs once per repetition, interleaved (the order rotates each
// repetition), after one untimed warm-up round; the machine is noisy, so
// only numbers from the same run are compared: medians with min-max, and
// ratios to the best raw baseline. Every output is checked against a plain
// loop's; a mismatch aborts with a message.
#include <sys/resource.h>

#include <algorithm>
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
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <xsimd/xsimd.hpp>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/version.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/xjob.hpp>

#include "bench_support.hpp"

namespace {

using namespace xjob::bench;
constexpr int workers = 2;

// ---------------------------------------------------------------- helpers

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

struct settings {
  bool quick = false;
  std::size_t elements = std::size_t(1) << 27;  // 1 GiB of float64
  int tasks = 2'000'000;
  int reps = 7;
  std::string only;  // "map" or "dispatch": that section alone
};

settings parse_arguments(int argc, char** argv) {
  settings s;
  std::optional<int> reps;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    if (arg == "--quick") {
      s.quick = true;
    } else if (arg.starts_with("--reps=")) {
      reps = std::atoi(argv[i] + 7);
      if (*reps < 1) fail("--reps needs a positive count");
    } else if (arg == "--only=map" || arg == "--only=dispatch") {
      s.only = arg.substr(7);
    } else if (arg == "--help" || arg == "-h") {
      std::printf("usage: map_bench [--quick] [--reps=N] [--only=map|dispatch]\n"
                  "  --quick   2^22 elements, 200k tasks, 3 repetitions (a smoke run)\n"
                  "  --reps=N  timed repetitions (default 7, or 3 with --quick)\n"
                  "  --only=S  run section S alone (no targets)\n");
      std::exit(0);
    } else {
      fail(fmt::format("unknown argument '{}' (try --help)", arg));
    }
  }
  if (s.quick) {
    s.elements = std::size_t(1) << 22;
    s.tasks = 200'000;
    s.reps = 3;
  }
  if (reps) s.reps = *reps;
  return s;
}

// ------------------------------------------------------- 1. elementwise map

void map_omp(double const* __restrict in, double* __restrict out, std::size_t n) {
#ifdef _OPENMP
  auto const count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd num_threads(workers) schedule(static)
  for (std::ptrdiff_t i = 0; i < count; ++i) out[i] = std::sqrt(in[i]) * 2.0 + 1.0;
#else
  map_range(in, out, 0, n);
#endif
}

#ifdef _OPENMP
constexpr bool have_openmp = true;
constexpr long openmp_version = _OPENMP;
#else
constexpr bool have_openmp = false;
constexpr long openmp_version = 0;
#endif

struct sample {
  double seconds = 0;
  double release_seconds = 0;  // fresh outputs: freeing the output afterwards (untimed above)
  long faults = 0;             // minor page faults during the timed part
};

struct map_variant {
  std::string name;
  std::string group;  // "warm", "fresh", "ceiling"
  std::function<sample()> run;
  std::vector<sample> samples;
  bool is_raw_parallel = false;  // a candidate for "best raw baseline"
};

class map_section {
 public:
  explicit map_section(settings const& s) : s_(s), n_(s.elements), arena_(workers) {
    x_ = xt::xtensor<double, 1>::from_shape({n_});
    warm_ = xt::xtensor<double, 1>::from_shape({n_});
    ref_ = std::make_unique_for_overwrite<double[]>(n_);
    double* const x = x_.data();
    // Positive, varied, and cheap to make; filling in parallel also touches
    // the pages, so input and warm output start resident.
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_), [&](auto const& r) {
        for (std::size_t i = r.begin(); i < r.end(); ++i) x[i] = 0.25 + static_cast<double>(i % 4099) * 0.37;
      });
    });
    std::fill(warm_.begin(), warm_.end(), 0.0);
    map_range(x, ref_.get(), 0, n_);  // the reference every output is checked against
    define_variants();
  }

  void run() {
    print_header();
    // Round 0 warms up (thread pools, the shared-memory cache) and is not
    // timed; every round checks every output.
    for (int rep = 0; rep <= s_.reps; ++rep) {
      for (std::size_t k = 0; k < variants_.size(); ++k) {
        map_variant& v = variants_[(k + static_cast<std::size_t>(rep)) % variants_.size()];
        settle();
        sample const got = v.run();
        if (rep > 0) v.samples.push_back(got);
      }
      std::fprintf(stderr, "  map: round %d of %d done\n", rep, s_.reps);
    }
    print_table();
  }

  // Median seconds of a variant (for the targets).
  [[nodiscard]] double median_in(std::string_view group, std::string_view name) const {
    for (auto const& v : variants_)
      if (v.group == group && v.name == name) return summarize(seconds_of(v)).median;
    return std::numeric_limits<double>::quiet_NaN();
  }
  [[nodiscard]] std::pair<std::string, double> best_raw(std::string_view group) const {
    std::pair<std::string, double> best{"", std::numeric_limits<double>::infinity()};
    for (auto const& v : variants_)
      if (v.is_raw_parallel && v.group == group) {
        double const m = summarize(seconds_of(v)).median;
        if (m < best.second) best = {v.name, m};
      }
    return best;
  }
  [[nodiscard]] double bytes_moved() const { return 2.0 * static_cast<double>(n_) * sizeof(double); }

 private:
  static std::vector<double> seconds_of(map_variant const& v) {
    std::vector<double> out;
    for (auto const& smp : v.samples) out.push_back(smp.seconds);
    return out;
  }

  // Runs `body` timed into the warm buffer, after poisoning it (untimed) so
  // a variant that writes nothing cannot pass on a previous one's output.
  // `expected` is the plain loop's output unless given (the copy expects x).
  template <class Body>
  sample warm_run(std::string const& name, Body body, double const* expected = nullptr) {
    poison(warm_.data());
    long const faults = minor_faults();
    auto const start = clock_type::now();
    body(warm_.data());
    sample out{seconds_since(start), 0, minor_faults() - faults};
    check(name, warm_.data(), expected);
    return out;
  }

  // A raw fresh output: new memory from malloc each time (glibc maps blocks
  // this large straight from the kernel, so every page faults on first use).
  template <class Body>
  sample fresh_raw_run(std::string const& name, Body body) {
    long const faults = minor_faults();
    auto const start = clock_type::now();
    std::unique_ptr<double[]> y = std::make_unique_for_overwrite<double[]>(n_);
    body(y.get());
    sample out{seconds_since(start), 0, minor_faults() - faults};
    check(name, y.get());
    auto const release = clock_type::now();
    y.reset();
    out.release_seconds = seconds_since(release);
    return out;
  }

  template <class Body>
  sample fresh_xjob_run(std::string const& name, bool use_cache, Body body) {
    if (!use_cache) xjob::trim_shared_memory_cache();
    long const faults = minor_faults();
    auto const start = clock_type::now();
    xjob::shared_array<double> y = body();
    sample out{seconds_since(start), 0, minor_faults() - faults};
    if (y.size() != n_) fail(fmt::format("{}: output has {} elements, expected {}", name, y.size(), n_));
    check(name, y.data());
    auto const release = clock_type::now();
    y = xjob::shared_array<double>();
    out.release_seconds = seconds_since(release);
    return out;
  }

  void poison(double* y) {
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_), [&](auto const& r) {
        std::fill(y + r.begin(), y + r.end(), std::numeric_limits<double>::quiet_NaN());
      });
    });
  }

  // Equal to the plain loop's output up to an ulp or two (a compiler may fuse
  // the multiply-add in one variant and not in another); NaN never passes.
  void check(std::string const& name, double const* y, double const* expected = nullptr) {
    double const* const ref = expected != nullptr ? expected : ref_.get();
    std::atomic<std::size_t> first_bad{n_};
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_), [&](auto const& r) {
        for (std::size_t i = r.begin(); i < r.end(); ++i) {
          if (!(std::abs(y[i] - ref[i]) <= 4e-16 * std::abs(ref[i]))) {
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
      fail(fmt::format("{}: y[{}] = {} but the plain loop gives {} (x = {})", name, bad, y[bad], ref[bad],
                       x_.data()[bad]));
  }

  void define_variants() {
    double const* const x = x_.data();
    std::size_t const n = n_;
    auto tbb_body = [this, x, n](double* y) {
      arena_.execute([&] {
        tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                          [&](auto const& r) { map_range(x, y, r.begin(), r.end()); });
      });
    };
    auto map_fn = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };
    // Diagnostic: the same without xtensor's aliasing-safe assignment, which
    // evaluates `out = expr` into a temporary and then copies it into `out`.
    auto map_fn_noalias = [](auto const& in, auto&& out) { xt::noalias(out) = xt::sqrt(in) * 2.0 + 1.0; };

    std::string const omp_name = have_openmp ? "OpenMP parallel for simd" : "OpenMP (not compiled: plain loop)";

    auto add = [this](std::string name, std::string group, bool raw, std::function<sample()> run) {
      variants_.push_back({std::move(name), std::move(group), std::move(run), {}, raw});
    };

    add("plain loop, 1 thread", "warm", false,
        [=, this] { return warm_run("warm plain loop", [=](double* y) { map_range(x, y, 0, n); }); });
    add("raw TBB parallel_for", "warm", true, [=, this] { return warm_run("warm raw TBB", tbb_body); });
    add(omp_name, "warm", have_openmp,
        [=, this] { return warm_run("warm OpenMP", [=](double* y) { map_omp(x, y, n); }); });
    add("xjob map_chunks(x, f, y)", "warm", false, [=, this] {
      return warm_run("warm xjob", [&](double*) { par_.map_chunks(x_, map_fn, warm_); });
    });
    add("xjob map_chunks(x, f_noalias, y)", "warm", false, [=, this] {
      return warm_run("warm xjob noalias", [&](double*) { par_.map_chunks(x_, map_fn_noalias, warm_); });
    });
    add("raw TBB parallel_for, streaming stores", "warm", true, [=, this] {
      return warm_run("warm raw TBB streaming", [&](double* y) {
        arena_.execute([&] {
          tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                            [&](auto const& r) { map_range_streaming(x, y, r.begin(), r.end()); });
        });
      });
    });
    add("xjob map_chunks(x, f, y), streaming on", "warm", false, [=, this] {
      return warm_run("warm xjob streaming on", [&](double*) { par_on_.map_chunks(x_, map_fn, warm_); });
    });
    add("xjob map_chunks(x, f, y), streaming off", "warm", false, [=, this] {
      return warm_run("warm xjob streaming off", [&](double*) { par_off_.map_chunks(x_, map_fn, warm_); });
    });

    add("plain loop, 1 thread", "fresh", false,
        [=, this] { return fresh_raw_run("fresh plain loop", [=](double* y) { map_range(x, y, 0, n); }); });
    add("raw TBB parallel_for", "fresh", true, [=, this] { return fresh_raw_run("fresh raw TBB", tbb_body); });
    add(omp_name, "fresh", have_openmp,
        [=, this] { return fresh_raw_run("fresh OpenMP", [=](double* y) { map_omp(x, y, n); }); });
    add("xjob y = map_chunks(x, f)", "fresh", false,
        [=, this] { return fresh_xjob_run("fresh xjob", true, [&] { return par_.map_chunks(x_, map_fn); }); });
    add("xjob y = map_chunks(x, f_noalias)", "fresh", false, [=, this] {
      return fresh_xjob_run("fresh xjob noalias", true, [&] { return par_.map_chunks(x_, map_fn_noalias); });
    });
    add("xjob y = map_chunks(x, f), cache trimmed", "fresh", false, [=, this] {
      return fresh_xjob_run("fresh xjob (no cache)", false, [&] { return par_.map_chunks(x_, map_fn); });
    });

    add("copy loop, raw TBB (STREAM copy)", "ceiling", false, [=, this] {
      return warm_run("copy", [&](double* y) {
        arena_.execute([&] {
          tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                            [&](auto const& r) { copy_range(x, y, r.begin(), r.end()); });
        });
      }, x);
    });
  }

  void print_header() const {
    double const gib = static_cast<double>(n_) * sizeof(double) / static_cast<double>(1 << 30);
    fmt::print("\n== 1. Elementwise y = sqrt(x)*2+1: {} float64 ({:.3g} GiB in + {:.3g} GiB out), {} workers ==\n",
               n_, gib, gib, workers);
    fmt::print("{} timed repetitions after 1 warm-up round, variants interleaved (order rotates each round).\n",
               s_.reps);
    fmt::print("GB/s = (input + output bytes) / time, 1 GB = 1e9 bytes. Fresh outputs: time = allocate + compute;\n"
               "freeing the output is not in it (shown as 'free ms'). 'faults' = minor page faults per rep.\n"
               "xjob's fresh output reuses freed shared memory through its cache (intended); the 'cache trimmed'\n"
               "row calls xjob::trim_shared_memory_cache() before each rep (untimed, and where its unmapping\n"
               "is paid), so it maps new memory. f = [](auto const& in, auto&& out) {{ out = xt::sqrt(in) * 2.0 + 1.0; }};\n"
               "f_noalias (diagnostic) assigns with xt::noalias(out) = ..., skipping xtensor's temporary.\n\n");
    std::fflush(stdout);
  }

  void print_table() const {
    auto const [warm_best_name, warm_best] = best_raw("warm");
    auto const [fresh_best_name, fresh_best] = best_raw("fresh");
    double const tbb_fresh = median_fresh_tbb();
    fmt::print("{:<44} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>8}\n", "variant", "median s", "min s",
               "max s", "GB/s", "x best", "x TBB", "faults", "free ms");
    fmt::print("{:<44} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>8}\n", "", "", "", "", "(median)",
               "raw warm", "fresh", "(median)", "(median)");
    std::string group;
    for (auto const& v : variants_) {
      if (v.group != group) {
        group = v.group;
        if (group == "warm") fmt::print("warm output (one preallocated buffer, already touched, reused):\n");
        if (group == "fresh") fmt::print("fresh output (new memory each repetition):\n");
        if (group == "ceiling") fmt::print("memory-bound ceiling:\n");
      }
      summary const t = summarize(seconds_of(v));
      std::vector<double> faults, release;
      for (auto const& smp : v.samples) {
        faults.push_back(static_cast<double>(smp.faults));
        release.push_back(smp.release_seconds);
      }
      std::string const vs_tbb_fresh = group == "fresh" ? fmt::format("{:.2f}x", tbb_fresh / t.median) : "";
      std::string const free_ms = group == "fresh" ? fmt::format("{:.1f}", summarize(release).median * 1e3) : "";
      fmt::print("  {:<42} {:>8.4f} {:>8.4f} {:>8.4f} {:>7.1f} {:>8.2f}x {:>9} {:>9.0f} {:>8}\n", v.name, t.median,
                 t.min, t.max, bytes_moved() / t.median / 1e9, warm_best / t.median, vs_tbb_fresh,
                 summarize(faults).median, free_ms);
    }
    fmt::print("'x best raw warm' = (median of the best raw warm baseline, here {}: {:.4f} s) / median;\n"
               "'x TBB fresh' = (median of raw TBB into fresh memory: {:.4f} s) / median. Above 1 is faster.\n"
               "Best raw fresh baseline: {} ({:.4f} s).\n",
               warm_best_name, warm_best, tbb_fresh, fresh_best_name, fresh_best);
    std::fflush(stdout);
  }

  [[nodiscard]] double median_fresh_tbb() const { return median_in("fresh", "raw TBB parallel_for"); }

  settings s_;
  std::size_t n_;
  tbb::task_arena arena_;
  xjob::parallel par_{xjob::parallel_options{.n_jobs = workers, .backend = "threads"}};
  xjob::parallel par_on_{
      xjob::parallel_options{.n_jobs = workers, .backend = "threads", .streaming = xjob::streaming_stores::on}};
  xjob::parallel par_off_{
      xjob::parallel_options{.n_jobs = workers, .backend = "threads", .streaming = xjob::streaming_stores::off}};
  xt::xtensor<double, 1> x_;
  xt::xtensor<double, 1> warm_;
  std::unique_ptr<double[]> ref_;
  std::vector<map_variant> variants_;
};

// ------------------------------------------------------ 2. tiny task dispatch

// Trivial, but opaque: the compiler can neither inline it nor see through it.
__attribute__((noinline)) int tiny(int i) {
  asm volatile("" : "+r"(i));
  return i ^ 0x5a;
}

struct dispatch_variant {
  std::string name;
  std::function<std::vector<int>()> run;
  std::vector<double> ns_per_task;
};

class dispatch_section {
 public:
  explicit dispatch_section(settings const& s) : s_(s) {
    int const n = s_.tasks;
    expected_.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) expected_[static_cast<std::size_t>(i)] = i ^ 0x5a;

    auto add = [this](std::string name, std::function<std::vector<int>()> run) {
      variants_.push_back({std::move(name), std::move(run), {}});
    };
    auto delayed_calls = [n] {
      return std::views::iota(0, n) | std::views::transform([](int i) { return xjob::delayed(tiny)(i); });
    };
    add("plain loop into std::vector<int> (floor)", [n] {
      std::vector<int> out(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = tiny(i);
      return out;
    });
    // The raw baseline: oneTBB's own parallel_for in an arena of as many
    // threads, writing into a result vector made in the call, as xjob's are.
    add("raw oneTBB parallel_for, 2 threads", [this, n] {
      std::vector<int> out(static_cast<std::size_t>(n));
      arena_.execute([&] {
        tbb::parallel_for(0, n, [&out](int i) { out[static_cast<std::size_t>(i)] = tiny(i); });
      });
      return out;
    });
    add("n_jobs=1 (sequential), delayed calls", [this, delayed_calls] { return seq_(delayed_calls()); });
    add("n_jobs=1 (sequential), map", [this, n] { return seq_.map(tiny, std::views::iota(0, n)); });
    add("n_jobs=2 threads, delayed calls, auto batch", [this, delayed_calls] { return par_(delayed_calls()); });
    add("n_jobs=2 threads, map, auto batch", [this, n] { return par_.map(tiny, std::views::iota(0, n)); });
    add("n_jobs=2 threads, delayed calls, batch_size=1", [this, delayed_calls] { return one_(delayed_calls()); });
    add("n_jobs=2 threads, map, batch_size=1", [this, n] { return one_.map(tiny, std::views::iota(0, n)); });
  }

  void run() {
    fmt::print("\n== 2. Dispatch cost of tiny tasks: {} calls of int tiny(int), results in a std::vector<int> ==\n",
               s_.tasks);
    fmt::print("{} timed repetitions after 1 warm-up round, interleaved. ns/task = call time / tasks; the time\n"
               "includes building the delayed calls and the result vector, as a caller would see it.\n"
               "sequential backend: '{}'; threads backends: '{}' and '{}' (batch_size=1).\n\n",
               s_.reps, seq_.backend_name(), par_.backend_name(), one_.backend_name());
    std::fflush(stdout);
    for (int rep = 0; rep <= s_.reps; ++rep) {
      for (std::size_t k = 0; k < variants_.size(); ++k) {
        dispatch_variant& v = variants_[(k + static_cast<std::size_t>(rep)) % variants_.size()];
        settle();
        auto const start = clock_type::now();
        std::vector<int> const got = v.run();
        double const took = seconds_since(start);
        if (got != expected_) fail(fmt::format("{}: results differ from the plain loop's", v.name));
        if (rep > 0) v.ns_per_task.push_back(took * 1e9 / s_.tasks);
      }
      std::fprintf(stderr, "  dispatch: round %d of %d done\n", rep, s_.reps);
    }
    double const floor = median("plain loop into std::vector<int> (floor)");
    fmt::print("{:<48} {:>9} {:>9} {:>9} {:>12}\n", "variant", "ns/task", "min", "max", "over floor");
    for (auto const& v : variants_) {
      summary const t = summarize(v.ns_per_task);
      fmt::print("  {:<46} {:>9.1f} {:>9.1f} {:>9.1f} {:>12.1f}\n", v.name, t.median, t.min, t.max,
                 t.median - floor);
    }
    fmt::print("('over floor' = median ns/task minus the plain loop's median.)\n");
    double const raw = median("raw oneTBB parallel_for, 2 threads");
    for (auto const& v : variants_)
      if (v.name.starts_with("n_jobs=2 threads") && v.name.find("auto batch") != std::string::npos)
        fmt::print("  {:<46} {:.2f}x raw oneTBB\n", v.name, raw / summarize(v.ns_per_task).median);
    std::fflush(stdout);
  }

  [[nodiscard]] double median(std::string_view name) const {
    for (auto const& v : variants_)
      if (v.name == name) return summarize(v.ns_per_task).median;
    return std::numeric_limits<double>::quiet_NaN();
  }

 private:
  settings s_;
  std::vector<int> expected_;
  xjob::parallel seq_{xjob::parallel_options{.n_jobs = 1}};
  xjob::parallel par_{xjob::parallel_options{.n_jobs = workers, .backend = "threads"}};
  xjob::parallel one_{xjob::parallel_options{.n_jobs = workers, .backend = "threads", .batch_size = 1}};
  tbb::task_arena arena_{workers};
  std::vector<dispatch_variant> variants_;
};

// ------------------------------------------------------------------ targets

void print_targets(map_section const& map, dispatch_section const& dispatch) {
  fmt::print("\n== Targets (medians of this run) ==\n");
  auto verdict = [](bool ok) { return ok ? "MET   " : "MISSED"; };
  auto const [warm_name, warm_best] = map.best_raw("warm");
  double const xjob_warm = map.median_in("warm", "xjob map_chunks(x, f, y)");
  double const warm_ratio = warm_best / xjob_warm;
  fmt::print("  [{}] xjob warm output >= 0.95x best raw baseline ({}): {:.3f}x\n", verdict(warm_ratio >= 0.95),
             warm_name, warm_ratio);
  double const streaming_raw = map.median_in("warm", "raw TBB parallel_for, streaming stores");
  double const ordinary_raw = map.median_in("warm", "raw TBB parallel_for");
  fmt::print("  (info)   streaming stores on this machine, raw TBB: {:.3f}x ordinary stores\n",
             ordinary_raw / streaming_raw);
  fmt::print("  [{}] xjob warm output (streaming automatic) >= 0.95x raw TBB with streaming stores: {:.3f}x\n",
             verdict(streaming_raw / xjob_warm >= 0.95), streaming_raw / xjob_warm);
  double const off = map.median_in("warm", "xjob map_chunks(x, f, y), streaming off");
  fmt::print("  (info)   xjob streaming automatic / off: {:.3f}x, on / off: {:.3f}x\n", off / xjob_warm,
             off / map.median_in("warm", "xjob map_chunks(x, f, y), streaming on"));
  double const noalias_ratio = warm_best / map.median_in("warm", "xjob map_chunks(x, f_noalias, y)");
  fmt::print("  (info)   the same with f_noalias (xt::noalias(out) = ...): {:.3f}x\n", noalias_ratio);
  double const tbb_fresh = map.median_in("fresh", "raw TBB parallel_for");
  for (std::string_view const name : {"xjob y = map_chunks(x, f)", "xjob y = map_chunks(x, f), cache trimmed"}) {
    double const ratio = tbb_fresh / map.median_in("fresh", name);
    fmt::print("  [{}] fresh output at least as fast as raw TBB into fresh malloc memory, {}: {:.3f}x\n",
               verdict(ratio >= 1.0), name, ratio);
  }
  for (std::string_view const name : {"n_jobs=2 threads, delayed calls, auto batch", "n_jobs=2 threads, map, auto batch"}) {
    double const ns = dispatch.median(name);
    fmt::print("  [{}] tiny-task dispatch <= 300 ns/task, {}: {:.1f} ns\n", verdict(ns <= 300), name, ns);
  }
  fmt::print("(Targets are reported, not enforced: the exit status only reflects correctness.)\n");
}

}  // namespace

int main(int argc, char** argv) {
  settings const s = parse_arguments(argc, argv);
  fmt::print("map_bench{}: {} hardware threads, oneTBB {}, {}, {}\n", s.quick ? " --quick" : "",
             std::thread::hardware_concurrency(), TBB_VERSION_STRING,
             have_openmp ? fmt::format("OpenMP {} (libgomp)", openmp_version) : std::string("no OpenMP"),
             __VERSION__);
  std::fflush(stdout);
  if (s.only != "dispatch") {
    map_section map(s);
    map.run();
    if (s.only == "map") return 0;
    dispatch_section dispatch(s);
    dispatch.run();
    print_targets(map, dispatch);
  } else {
    dispatch_section dispatch(s);
    dispatch.run();
  }
  return 0;
}
