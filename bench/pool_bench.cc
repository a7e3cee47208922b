// pool_bench: what a persistent process_pool saves over forking per call, and
// what each start method costs, all in one process.
//
//   bazel run --config=bench //bench:pool_bench            # full (a minute)
//   bazel run --config=bench //bench:pool_bench -- --quick # smoke run (seconds)
//
// 1. Start: constructing a pool of 2 and getting one task's result back, per
//    start method (fork, forkserver, spawn), while the caller holds 256 MiB
//    (--held-mib) of private memory, which fork must copy the page tables of.
// 2. Round trip: submit(f, i).get() one at a time on a warm pool of 1, per
//    start method: the latency of a single task, the cost batching hides.
// 3. Tiny tasks: 200,000 calls of int(int) through pool.map (automatic
//    chunks), against the processes backend (forks per call) and the threads
//    backend, interleaved.
// 4. A large argument: submit(sum, x).get() with x of 80 MiB (--arg-mib) as
//    an xt::xtensor (1 MB or more: through shared memory, by name) against
//    the same data as a std::vector (inside the message, through the
//    worker's socket), interleaved on one warm pool of 1.
// Medians of --reps repetitions after an untimed warm-up; ratios only
// between numbers of this run. Every result is checked; a wrong one exits 1.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <ranges>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_support.hpp"
#include <xjob/init.hpp>
#include <xjob/parallel.hpp>
#include <xjob/process_pool.hpp>
#include <xjob/transfer_xtensor.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

namespace {

using xjob::bench::clock_type;
using xjob::bench::fail;
using xjob::bench::seconds_since;
using xjob::bench::summarize;

int tiny(int i) { return i * 3 + 1; }
double sum_tensor(xt::xtensor<double, 1> const& x) { return xt::sum(x)(); }
double sum_vector(std::vector<double> const& x) { return std::accumulate(x.begin(), x.end(), 0.0); }

struct settings {
  int reps = 7;
  int tiny_tasks = 200'000;
  int round_trips = 2'000;
  std::size_t held_mib = 256;
  std::size_t arg_mib = 80;
};

settings parse_arguments(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    std::string const arg = argv[i];
    if (arg == "--quick") {
      s.reps = 2;
      s.tiny_tasks = 20'000;
      s.round_trips = 200;
      s.held_mib = 16;
      s.arg_mib = 8;
    } else if (arg.starts_with("--reps=")) {
      s.reps = std::max(1, std::atoi(argv[i] + 7));
    } else if (arg.starts_with("--arg-mib=")) {
      s.arg_mib = static_cast<std::size_t>(std::max(1L, std::atol(argv[i] + 10)));
    } else if (arg.starts_with("--held-mib=")) {
      s.held_mib = static_cast<std::size_t>(std::atol(argv[i] + 11));
    } else {
      std::printf("usage: pool_bench [--quick] [--reps=N] [--held-mib=M] [--arg-mib=M]\n");
      std::exit(arg == "--help" ? 0 : 2);
    }
  }
  return s;
}

constexpr xjob::start_method methods[] = {xjob::start_method::fork, xjob::start_method::forkserver,
                                          xjob::start_method::spawn};

void start_section(settings const& s) {
  // Private memory the caller holds (and has touched), as a real program would.
  std::vector<char> held(s.held_mib << 20);
  std::memset(held.data(), 1, held.size());
  std::printf("\n1. Pool start: construct a pool of 2, first result back (caller holds %zu MiB private)\n", s.held_mib);
  std::printf("%-12s %12s %12s %12s\n", "method", "median ms", "min ms", "max ms");
  std::vector<std::vector<double>> times(std::size(methods));
  for (int rep = 0; rep <= s.reps; ++rep)
    for (std::size_t k = 0; k < std::size(methods); ++k) {
      xjob::bench::settle();
      auto const start = clock_type::now();
      xjob::process_pool pool({.processes = 2, .start_method = methods[k]});
      if (pool.submit(tiny, 1).get() != 4) fail("wrong result from a fresh pool");
      if (rep > 0) times[k].push_back(seconds_since(start) * 1e3);
    }
  for (std::size_t k = 0; k < std::size(methods); ++k) {
    auto const t = summarize(times[k]);
    std::printf("%-12s %12.2f %12.2f %12.2f\n", std::string(xjob::to_string(methods[k])).c_str(), t.median, t.min,
                t.max);
  }
  if (held[held.size() / 2] != 1) fail("held memory changed");
}

void round_trip_section(settings const& s) {
  std::printf("\n2. Round trip: submit(f, i).get() one at a time on a warm pool of 1 (%d tasks)\n", s.round_trips);
  std::printf("%-12s %12s %12s %12s\n", "method", "median us", "min us", "max us");
  for (xjob::start_method method : methods) {
    xjob::process_pool pool({.processes = 1, .start_method = method});
    std::vector<double> per_task;
    for (int rep = 0; rep <= s.reps; ++rep) {
      auto const start = clock_type::now();
      for (int i = 0; i < s.round_trips; ++i)
        if (pool.submit(tiny, i).get() != tiny(i)) fail("wrong round-trip result");
      if (rep > 0) per_task.push_back(seconds_since(start) * 1e6 / s.round_trips);
    }
    auto const t = summarize(per_task);
    std::printf("%-12s %12.1f %12.1f %12.1f\n", std::string(xjob::to_string(method)).c_str(), t.median, t.min, t.max);
  }
}

void tiny_section(settings const& s) {
  std::printf("\n3. Tiny tasks: %d calls of int(int), 2 workers, results in input order\n", s.tiny_tasks);
  xjob::process_pool pool(2);
  auto const processes = xjob::parallel({.n_jobs = 2, .backend = "processes"});
  auto const threads = xjob::parallel({.n_jobs = 2, .backend = "threads"});
  auto const args = std::views::iota(0, s.tiny_tasks);
  auto check = [&](std::vector<int> const& out) {
    if (out.size() != static_cast<std::size_t>(s.tiny_tasks)) fail("wrong result count");
    for (int i = 0; i < s.tiny_tasks; ++i)
      if (out[static_cast<std::size_t>(i)] != tiny(i)) fail(fmt::format("wrong result for task {}", i));
  };
  struct variant {
    char const* name;
    std::function<std::vector<int>()> run;
    std::vector<double> ns;
  };
  std::vector<variant> variants = {
      {"process_pool.map, automatic chunks", [&] { return pool.map(tiny, args); }, {}},
      {"parallel processes (fork per call), automatic batches", [&] { return processes.map(tiny, args); }, {}},
      {"parallel threads, automatic batches", [&] { return threads.map(tiny, args); }, {}},
  };
  for (int rep = 0; rep <= s.reps; ++rep)
    for (std::size_t k = 0; k < variants.size(); ++k) {
      variant& v = variants[(k + static_cast<std::size_t>(rep)) % variants.size()];
      xjob::bench::settle();
      auto const start = clock_type::now();
      auto const out = v.run();
      double const elapsed = seconds_since(start);
      check(out);
      if (rep > 0) v.ns.push_back(elapsed * 1e9 / s.tiny_tasks);
    }
  double const base = summarize(variants[1].ns).median;
  std::printf("%-56s %10s %10s %10s %14s\n", "variant", "ns/task", "min", "max", "vs fork/call");
  for (variant const& v : variants) {
    auto const t = summarize(v.ns);
    std::printf("%-56s %10.1f %10.1f %10.1f %13.2fx\n", v.name, t.median, t.min, t.max, base / t.median);
  }
}

void large_argument_section(settings const& s) {
  std::size_t const count = s.arg_mib * (std::size_t(1) << 20) / sizeof(double);
  std::printf("\n4. A large argument: submit(sum, x).get() with x of %zu MiB, on a warm pool of 1\n", s.arg_mib);
  xjob::process_pool pool(1);
  xt::xtensor<double, 1> const tensor = xt::arange<double>(static_cast<double>(count));
  std::vector<double> const vector(tensor.begin(), tensor.end());
  double const expected = (static_cast<double>(count) - 1) * static_cast<double>(count) / 2;
  struct variant {
    char const* name;
    std::function<double()> run;
    std::vector<double> ms;
  };
  std::vector<variant> variants = {
      {"std::vector (inside the message, through the socket)", [&] { return pool.submit(sum_vector, vector).get(); }, {}},
      {"xt::xtensor (through shared memory, by name)", [&] { return pool.submit(sum_tensor, tensor).get(); }, {}},
  };
  for (int rep = 0; rep <= s.reps; ++rep)
    for (std::size_t k = 0; k < variants.size(); ++k) {
      variant& v = variants[(k + static_cast<std::size_t>(rep)) % variants.size()];
      auto const start = clock_type::now();
      double const got = v.run();
      double const elapsed = seconds_since(start);
      if (got != expected) fail(fmt::format("wrong sum {} (expected {})", got, expected));
      if (rep > 0) v.ms.push_back(elapsed * 1e3);
    }
  double const base = summarize(variants[0].ms).median;
  std::printf("%-56s %10s %10s %10s %14s\n", "argument", "median ms", "min", "max", "vs in message");
  for (variant const& v : variants) {
    auto const t = summarize(v.ms);
    std::printf("%-56s %10.1f %10.1f %10.1f %13.2fx\n", v.name, t.median, t.min, t.max, base / t.median);
  }
}

}  // namespace

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  settings const s = parse_arguments(argc, argv);
  std::printf("pool_bench: %d repetitions after a warm-up; medians\n", s.reps);
  start_section(s);
  round_trip_section(s);
  tiny_section(s);
  large_argument_section(s);
  return 0;
}
