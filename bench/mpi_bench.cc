// The "mpi" backend against raw MPI and one machine, in one mpirun job (run
// by bench/mpi_bench.sh, which adds mpi4py and dask.distributed):
//   mpirun -np 2 --bind-to none bazel-bin/bench/mpi_bench [--reps 7] [--npy-dir /dev/shm]
// Workloads, each variant interleaved per repetition, medians over the
// repetitions, the time of the slowest rank (a barrier before and after):
//   tiny      f(i) = i * 3 + 1 over many tasks: the dispatch cost per task,
//             automatic batches and batch_size = 1;
//   npy       y = sqrt(x) * 2 + 1 into a new .npy file (--npy-mib of output);
//   reduce    sum of 1 / (1 + i) over --reduce-count items (map_reduce).
// Baselines in the same process: raw MPI (a static block per rank, then
// MPI_Allgatherv of the results, MPI_File_write_at_all of the rows, or
// MPI_Allreduce of the partial sums) and one machine (xjob threads on rank
// 0 alone, with all the machine's CPUs, the other ranks waiting). Prints one line per row, from rank 0:
//   row <workload> <variant> <median seconds> <per-task ns or GB/s>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <ranges>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/mpi.hpp>
#include <xjob/xjob.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

struct settings {
  int reps = 7;
  int n_jobs = 0;  // 0: this machine's CPUs shared by the ranks (all on this machine)
  std::size_t tiny_tasks = 1'000'000;
  std::size_t tiny_unbatched_tasks = 50'000;
  std::size_t npy_mib = 256;
  std::size_t reduce_count = 50'000'000;
  std::string npy_dir = "/dev/shm";
};

std::int64_t tiny(int i) { return std::int64_t(i) * 3 + 1; }

// The slowest rank's time for `run`, which every rank calls.
double timed(std::function<void()> const& run) {
  MPI_Barrier(MPI_COMM_WORLD);
  auto const start = clock_type::now();
  run();
  MPI_Barrier(MPI_COMM_WORLD);
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
  std::ranges::sort(v);
  return v[v.size() / 2];
}

// [begin, end) of rank r's static block of n.
std::pair<std::size_t, std::size_t> block(std::size_t n, int r, int p) {
  auto at = [&](std::size_t k) { return n / std::size_t(p) * k + std::min<std::size_t>(k, n % std::size_t(p)); };
  return {at(std::size_t(r)), at(std::size_t(r) + 1)};
}

// Raw MPI map: a static block each, then every rank gets every result.
std::vector<std::int64_t> raw_mpi_map(std::size_t n, int rank, int ranks) {
  std::vector<std::int64_t> all(n);
  auto [begin, end] = block(n, rank, ranks);
  for (std::size_t i = begin; i < end; ++i) all[i] = tiny(int(i));
  std::vector<int> counts(static_cast<std::size_t>(ranks));
  std::vector<int> offsets(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    auto [b, e] = block(n, r, ranks);
    counts[std::size_t(r)] = int(e - b);
    offsets[std::size_t(r)] = int(b);
  }
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all.data(), counts.data(), offsets.data(), MPI_INT64_T,
                 MPI_COMM_WORLD);
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  xjob::mpi::session mpi(argc, argv);
  settings s;
  CLI::App app("xjob's mpi backend against raw MPI and one machine (run under mpirun)");
  app.add_option("--reps", s.reps, "repetitions of each variant, interleaved (default 7)");
  app.add_option("--n-jobs", s.n_jobs, "workers per rank (default: the CPUs divided by the ranks, at least 1)");
  app.add_option("--tiny-tasks", s.tiny_tasks, "tiny: tasks with automatic batches (default 1000000)");
  app.add_option("--tiny-unbatched-tasks", s.tiny_unbatched_tasks, "tiny: tasks with batch_size 1 (default 50000)");
  app.add_option("--npy-mib", s.npy_mib, "npy: MiB of output (default 256)");
  app.add_option("--reduce-count", s.reduce_count, "reduce: items (default 50000000)");
  app.add_option("--npy-dir", s.npy_dir, "npy: where the .npy files go (default /dev/shm)");
  CLI11_PARSE(app, argc, argv);
  int const rank = mpi.rank();
  int const ranks = mpi.size();
  // The ranks share this machine: together they get its CPUs, as the
  // one-machine rows do (and raw MPI, one thread per rank).
  int const n_jobs = s.n_jobs > 0 ? s.n_jobs : std::max(1, xjob::cpu_count() / ranks);

  xjob::parallel const on_mpi({.n_jobs = n_jobs, .backend = "mpi"});
  xjob::parallel const on_mpi_unbatched({.n_jobs = n_jobs, .backend = "mpi", .batch_size = 1});
  xjob::parallel const on_threads({.n_jobs = xjob::cpu_count(), .backend = "threads"});
  xjob::parallel const on_threads_unbatched({.n_jobs = xjob::cpu_count(), .backend = "threads", .batch_size = 1});

  std::size_t const cols = 512;
  std::size_t const rows = std::max<std::size_t>(1, s.npy_mib * (std::size_t(1) << 20) / sizeof(double) / cols);
  xt::xtensor<double, 2> const x = xt::reshape_view(xt::arange<double>(0.0, double(rows * cols)) * 1e-3, {rows, cols});
  // Named after rank 0's pid: MPI_File_open needs the same name on every rank.
  long job = getpid();
  MPI_Bcast(&job, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  std::filesystem::path const npy = std::filesystem::path(s.npy_dir) / ("xjob_mpi_bench_" + std::to_string(job));
  std::string const mpi_npy = npy.string() + "_mpi.npy";
  std::string const one_npy = npy.string() + "_one_rank" + std::to_string(rank) + ".npy";
  std::string const raw_npy = npy.string() + "_raw.npy";
  auto const f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };

  std::map<std::string, std::vector<double>> times;
  auto sample = [&](std::string const& row, std::function<void()> const& run) { times[row].push_back(timed(run)); };
  for (int rep = 0; rep < s.reps; ++rep) {
    int const n = int(s.tiny_tasks);
    int const m = int(s.tiny_unbatched_tasks);
    sample("tiny xjob-mpi", [&] { (void)on_mpi.map(tiny, std::views::iota(0, n)); });
    sample("tiny raw-mpi", [&] { (void)raw_mpi_map(s.tiny_tasks, rank, ranks); });
    sample("tiny one-machine", [&] { if (rank == 0) (void)on_threads.map(tiny, std::views::iota(0, n)); });
    sample("tiny1 xjob-mpi", [&] { (void)on_mpi_unbatched.map(tiny, std::views::iota(0, m)); });
    sample("tiny1 one-machine", [&] { if (rank == 0) (void)on_threads_unbatched.map(tiny, std::views::iota(0, m)); });

    sample("npy xjob-mpi", [&] {
      auto y = xjob::shared_array<double>::create_npy(mpi_npy, {rows, cols});
      on_mpi.map_chunks(x, f, y);
    });
    sample("npy one-machine", [&] {
      if (rank != 0) return;
      auto y = xjob::shared_array<double>::create_npy(one_npy, {rows, cols});
      on_threads.map_chunks(x, f, y);
    });
    sample("npy raw-mpi", [&] {
      // Each rank its rows in private memory, then one collective write.
      auto [begin, end] = block(rows, rank, ranks);
      std::vector<double> mine((end - begin) * cols);
      for (std::size_t i = begin * cols; i < end * cols; ++i) mine[i - begin * cols] = std::sqrt(x.data()[i]) * 2.0 + 1.0;
      MPI_File file;
      MPI_File_open(MPI_COMM_WORLD, raw_npy.c_str(), MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &file);
      MPI_Offset const at = MPI_Offset(128 + begin * cols * sizeof(double));
      std::size_t const bytes = mine.size() * sizeof(double);
      MPI_File_write_at_all(file, at, mine.data(), int(bytes / 8), MPI_DOUBLE, MPI_STATUS_IGNORE);
      MPI_File_close(&file);
    });

    auto const g = [](int i) { return 1.0 / (1.0 + i); };
    int const count = int(s.reduce_count);
    sample("reduce xjob-mpi", [&] { (void)on_mpi.map_reduce(g, std::views::iota(0, count), 0.0, std::plus<>{}); });
    sample("reduce raw-mpi", [&] {
      auto [begin, end] = block(s.reduce_count, rank, ranks);
      double local = 0.0;
      for (std::size_t i = begin; i < end; ++i) local += g(int(i));
      double total = 0.0;
      MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    });
    sample("reduce one-machine", [&] {
      if (rank == 0) (void)on_threads.map_reduce(g, std::views::iota(0, count), 0.0, std::plus<>{});
    });
  }
  if (rank == 0) {
    std::filesystem::remove(mpi_npy);
    std::filesystem::remove(raw_npy);
  }
  std::filesystem::remove(one_npy);
  if (rank == 0) {
    std::printf("# mpi_bench: %d ranks, %d workers per rank, %d reps, medians\n", ranks, n_jobs, s.reps);
    double const npy_gb = double(rows * cols * sizeof(double)) / 1e9;
    for (auto const& [row, samples] : times) {
      double const t = median(samples);
      std::string const workload = row.substr(0, row.find(' '));
      double per = 0;
      char const* unit = "";
      if (workload == "tiny") { per = t / double(s.tiny_tasks) * 1e9; unit = "ns/task"; }
      if (workload == "tiny1") { per = t / double(s.tiny_unbatched_tasks) * 1e9; unit = "ns/task"; }
      if (workload == "npy") { per = npy_gb / t; unit = "GB/s"; }
      if (workload == "reduce") { per = t / double(s.reduce_count) * 1e9; unit = "ns/item"; }
      std::printf("row %s %.6f %.3f %s\n", row.c_str(), t, per, unit);
    }
  }
}
