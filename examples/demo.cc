// The project's main job, end to end: map y = sqrt(x) * 2 + 1 over a large
// float64 array (512 MiB by default) with every registered backend at several
// worker counts, time each, and check that all agree with the sequential
// backend bit for bit.
//   bazel run //examples:demo                       # 2^26 doubles, 512 MiB
//   bazel run //examples:demo -- --elements 100000  # smaller
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <ranges>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <xtensor/xmath.hpp>

#include <xjob/xjob.hpp>

namespace {

constexpr std::size_t default_elements = std::size_t(1) << 26;  // 512 MiB of float64
// x, the reference and y must fit in the address space, and their sizes in
// bytes in a std::size_t.
constexpr std::size_t most_elements = std::numeric_limits<std::size_t>::max() / (3 * sizeof(double));
constexpr int repeats = 3;

// A deterministic value in [0, 1) for element i: splitmix64 of the index,
// top 53 bits. Cheap, so filling 512 MiB in parallel takes a fraction of a
// second, and the same on every run and machine.
double input_value(std::uint64_t i) {
  std::uint64_t z = i + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

// Calls fill(begin, end) on blocks of [0, size) with every CPU.
template <class Fill>
void for_blocks(xjob::parallel const& par, std::size_t size, Fill const& fill) {
  constexpr std::size_t block = std::size_t(1) << 16;
  std::size_t const blocks = (size + block - 1) / block;
  par.map(
      [&fill, size](std::size_t b) {
        std::size_t const begin = b * block;
        fill(begin, std::min(size, begin + block));
      },
      std::views::iota(std::size_t(0), blocks));
}

struct row {
  std::string backend;
  int n_jobs = 1;
  double seconds = 0.0;
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t elements = default_elements;
  CLI::App app{"Maps y = sqrt(x) * 2 + 1 over a float64 array with every registered xjob backend at n_jobs 1, 2\n"
               "and cpu_count(), best of " + std::to_string(repeats) +
                   " runs each into a preallocated shared_array, prints a table and checks\n"
                   "that every result equals the sequential backend's exactly.",
               "demo"};
  app.footer("Exit status: 0 all agree, 1 a result differs or a run failed, 2 bad usage.");
  app.add_option("--elements", elements, "float64 elements of x (default 2^26: 512 MiB in, 512 MiB out)")
      // A type check first, so that "abc" is called what it is, not out of range.
      ->check(CLI::TypeValidator<std::size_t>("").description(""))
      ->check(CLI::Range(std::size_t{1}, most_elements));
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    // app.exit prints the help (--help, status 0) or the error; every error
    // is bad usage, status 2 as the footer says (CLI11's own codes are 100+).
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    auto const backends = xjob::registered_backends();
    if (std::ranges::find(backends, "sequential") == backends.end()) {
      std::fprintf(stderr, "demo: the \"sequential\" backend, the reference, is not registered\n");
      return 1;
    }
    // The sequential backend first: it makes the reference result.
    std::vector<std::string> order = {"sequential"};
    for (auto const& name : backends) {
      if (name != "sequential") order.push_back(name);
    }
    std::vector<int> worker_counts = {1, 2, xjob::cpu_count()};
    std::ranges::sort(worker_counts);
    worker_counts.erase(std::unique(worker_counts.begin(), worker_counts.end()), worker_counts.end());

    double const mib = static_cast<double>(elements * sizeof(double)) / (1024.0 * 1024.0);
    std::printf("xjob demo: y = sqrt(x) * 2 + 1 over %zu float64 elements (%.1f MiB in, %.1f MiB out)\n", elements,
                mib, mib);
    std::printf("cpu_count() = %d; backends:", xjob::cpu_count());
    for (auto const& name : backends) std::printf(" %s", name.c_str());
    std::printf("; best of %d runs each\n", repeats);

    // The input, and two outputs: the sequential backend's result (the
    // reference) and one reused by every other run. All three are touched
    // here, in parallel, so no timed run pays first-touch page faults.
    xjob::parallel const all_cpus({.n_jobs = -1, .backend = "threads"});
    auto const generate_start = std::chrono::steady_clock::now();
    xjob::shared_array<double> x({elements}, xjob::uninitialized);
    xjob::shared_array<double> reference({elements}, xjob::uninitialized);
    xjob::shared_array<double> y({elements}, xjob::uninitialized);
    double const poison = std::numeric_limits<double>::quiet_NaN();
    for_blocks(all_cpus, elements, [&](std::size_t begin, std::size_t end) {
      double* const xs = x.data();
      for (std::size_t i = begin; i < end; ++i) xs[i] = input_value(i);
      std::fill(reference.data() + begin, reference.data() + end, poison);
      std::fill(y.data() + begin, y.data() + end, poison);
    });
    std::chrono::duration<double> const generate_time = std::chrono::steady_clock::now() - generate_start;
    std::printf("generated x and touched the outputs in %.3f s\n\n", generate_time.count());

    auto const f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };
    double const bytes_moved = 2.0 * static_cast<double>(elements * sizeof(double));

    std::vector<row> rows;
    std::vector<std::string> disagreements;
    for (auto const& name : order) {
      for (int n_jobs : worker_counts) {
        if (name == "sequential" && n_jobs > 1) continue;
        bool const is_reference = rows.empty();
        xjob::shared_array<double>& out = is_reference ? reference : y;
        // Poison the output so that a run which skips elements cannot pass
        // on the previous run's values.
        if (!is_reference) {
          for_blocks(all_cpus, elements,
                     [&](std::size_t begin, std::size_t end) { std::fill(y.data() + begin, y.data() + end, poison); });
        }
        xjob::parallel const par({.n_jobs = n_jobs, .backend = name});
        double best = std::numeric_limits<double>::infinity();
        for (int r = 0; r < repeats; ++r) {
          auto const start = std::chrono::steady_clock::now();
          par.map_chunks(x, f, out);
          std::chrono::duration<double> const took = std::chrono::steady_clock::now() - start;
          best = std::min(best, took.count());
        }
        rows.push_back({name, n_jobs, best});
        if (!is_reference && std::memcmp(y.data(), reference.data(), y.bytes()) != 0) {
          std::size_t i = 0;
          double const* const got = y.data();
          double const* const want = reference.data();
          while (i < elements && std::memcmp(got + i, want + i, sizeof(double)) == 0) ++i;
          char message[256];
          std::snprintf(message, sizeof(message), "%s, n_jobs %d: y[%zu] = %.17g, sequential gives %.17g",
                        name.c_str(), n_jobs, i, got[i], want[i]);
          disagreements.emplace_back(message);
        }
      }
    }

    double const sequential_seconds = rows.front().seconds;
    std::printf("%-12s %6s %12s %9s %9s\n", "backend", "n_jobs", "seconds", "GB/s", "speed-up");
    for (auto const& r : rows) {
      std::printf("%-12s %6d %12.6f %9.2f %8.2fx\n", r.backend.c_str(), r.n_jobs, r.seconds,
                  bytes_moved / r.seconds / 1e9, sequential_seconds / r.seconds);
    }
    std::printf("(GB/s counts the bytes read and written: %.0f MB per run)\n\n", bytes_moved / 1e6);

    if (!disagreements.empty()) {
      std::printf("results agree: no\n");
      for (auto const& d : disagreements) std::printf("  %s\n", d.c_str());
      return 1;
    }
    std::printf("results agree: yes (every backend and n_jobs equals the sequential result bit for bit)\n");
    return 0;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "demo: %s\n", e.what());
    return 1;
  }
}
