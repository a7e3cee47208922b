// The "mpi" backend, run by mpi_test.sh under mpirun with 1 to 4 ranks
// (and without mpirun: a world of one). Every rank runs every test case in
// the same order, as an MPI program does; cases check after their calls
// (CHECK, not REQUIRE) so that a failing rank still reaches every
// collective step and the run fails instead of hanging.
// XJOB_TEST_MPI_LOCAL names the backend each rank runs its share on.
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/mpi.hpp>
#include <xjob/testing/conformance.hpp>
#include <xjob/xjob.hpp>

namespace {

xjob::mpi::session* mpi_session = nullptr;

int rank() { return mpi_session->rank(); }
int ranks() { return mpi_session->size(); }
// Whether tasks run in this process (threads), so that side effects on its
// memory count them; in worker processes they are counted through results.
bool tasks_run_here() { return mpi_session->options().local_backend != "processes"; }

std::uint64_t sum_over_ranks(std::uint64_t mine) {
  std::uint64_t total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

std::uint64_t min_over_ranks(std::uint64_t mine) {
  std::uint64_t least = 0;
  MPI_Allreduce(&mine, &least, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  return least;
}

// Whether every rank passed the same 64 bits.
bool same_on_every_rank(std::uint64_t mine) {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  MPI_Allreduce(&mine, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&mine, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

// Tasks run on this rank, counted by the tasks themselves.
std::atomic<std::uint64_t> ran_here{0};

int square_counted(int i) {
  ran_here.fetch_add(1, std::memory_order_relaxed);
  return i * i;
}

xjob::parallel mpi_parallel(xjob::parallel_options options = {}) {
  options.backend = "mpi";
  if (!options.n_jobs) options.n_jobs = 2;
  return xjob::parallel(options);
}

}  // namespace

TEST_CASE("the mpi backend declares that it spans machines and keeps n_jobs = 1 on every rank") {
  xjob::parallel const par = mpi_parallel({.n_jobs = 1});
  CHECK(par.backend_name() == "mpi");
  CHECK(par.capabilities().spans_machines);
  CHECK(par.capabilities().results_cross_address_spaces);
  CHECK(par.runs_out_of_process());
  CHECK(xjob::parallel({.backend = "mpi"}).n_jobs() == xjob::cpu_count());
}

TEST_CASE("map: every rank gets every result in input order, each task run once over all ranks") {
  for (std::size_t const n : {0UL, 1UL, 2UL, 3UL, 7UL, 100UL, 10007UL}) {
    for (std::optional<std::size_t> const batch : {std::optional<std::size_t>(), std::optional<std::size_t>(1)}) {
      CAPTURE(n, batch.value_or(0));
      ran_here = 0;
      xjob::parallel const par = mpi_parallel({.batch_size = batch});
      std::vector<int> const r = par.map(square_counted, std::views::iota(0, static_cast<int>(n)));
      REQUIRE(r.size() == n);
      bool in_order = true;
      for (std::size_t i = 0; i < n; ++i) in_order = in_order && r[i] == static_cast<int>(i * i);
      CHECK(in_order);
      if (tasks_run_here()) {
        CHECK(sum_over_ranks(ran_here.load()) == n);
        // Every rank takes part once there is a block for each.
        if (n >= 100) CHECK(min_over_ranks(ran_here.load()) > 0);
      }
    }
  }
}

TEST_CASE("map with closures, string results and delayed calls") {
  xjob::parallel const par = mpi_parallel();
  std::string const prefix = "item-";
  auto const named = par.map([&prefix](int i) { return prefix + std::to_string(i); }, std::views::iota(0, 501));
  REQUIRE(named.size() == 501);
  CHECK(named[0] == "item-0");
  CHECK(named[500] == "item-500");
  std::vector<xjob::delayed_call<double (*)(double), double>> calls;
  for (int i = 0; i < 333; ++i) calls.push_back(xjob::delayed(static_cast<double (*)(double)>(std::sqrt))(double(i)));
  std::vector<double> const roots = par(calls);
  REQUIRE(roots.size() == 333);
  CHECK(roots[144] == 12.0);
  std::atomic<int> side_effects{0};
  par(std::views::iota(0, 64) | std::views::transform([&side_effects](int) {
        return xjob::delayed([&side_effects] { side_effects.fetch_add(1); })();
      }));
  if (tasks_run_here()) CHECK(sum_over_ranks(static_cast<std::uint64_t>(side_effects.load())) == 64);
}

TEST_CASE("map_reduce and reduce_chunks give the same bits on every rank as on threads") {
  auto const f = [](int i) { return 1.0 / (1.0 + i); };
  double const on_threads = xjob::parallel({.n_jobs = 2, .backend = "threads"})
                                .map_reduce(f, std::views::iota(0, 200001), 0.0, std::plus<>{});
  double const on_mpi = mpi_parallel().map_reduce(f, std::views::iota(0, 200001), 0.0, std::plus<>{});
  CHECK(std::bit_cast<std::uint64_t>(on_mpi) == std::bit_cast<std::uint64_t>(on_threads));
  CHECK(same_on_every_rank(std::bit_cast<std::uint64_t>(on_mpi)));

  xt::xtensor<double, 2> x = xt::reshape_view(xt::arange<double>(0.0, 40000.0) * 0.001, {400, 100});
  auto const sum_chunk = [](auto const& chunk) { return double(xt::sum(chunk)()); };
  double const t_threads =
      xjob::parallel({.n_jobs = 2, .backend = "threads"}).reduce_chunks(x, sum_chunk, 0.0, std::plus<>{});
  double const t_mpi = mpi_parallel().reduce_chunks(x, sum_chunk, 0.0, std::plus<>{});
  CHECK(std::bit_cast<std::uint64_t>(t_mpi) == std::bit_cast<std::uint64_t>(t_threads));
}

TEST_CASE("map_chunks: every rank has every chunk of the output, along any axis and into any output") {
  xt::xtensor<double, 2> x = xt::reshape_view(xt::arange<double>(0.0, 60000.0), {600, 100});
  xt::xtensor<double, 2> const expected = xt::sqrt(x) * 2.0 + 1.0;
  xjob::parallel const par = mpi_parallel();
  auto const f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };

  auto y = par.map_chunks(x, f, xjob::chunking{.size = 7});
  CHECK(bool(y.template view<2>() == expected));
  auto across = par.map_chunks(x, f, xjob::chunking{.axis = 1, .size = 3});
  CHECK(bool(across.template view<2>() == expected));

  xt::xtensor<double, 1> sums = xt::zeros<double>({600});
  par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sum(in, {1}); }, sums, xjob::chunking{.size = 11});
  CHECK(bool(sums == xt::eval(xt::sum(x, {1}))));

  auto into = xjob::shared_array<double>({600, 100});
  par.map_chunks(x, f, into);
  CHECK(bool(into.template view<2>() == expected));
}

TEST_CASE("a task that throws on one rank gives every rank the same task_error naming that rank") {
  int const last = ranks() - 1;
  // Task 999 lies in the last rank's block (the blocks cover the first
  // three quarters of 1000 tasks in rank order; with one rank, rank 0's).
  std::size_t const failing = ranks() > 1 ? 740 : 999;
  xjob::parallel const par = mpi_parallel();
  bool threw = false;
  try {
    (void)par.map(
        [failing](int i) {
          if (static_cast<std::size_t>(i) == failing) throw std::out_of_range("no such item");
          return i;
        },
        std::views::iota(0, 1000));
  } catch (xjob::task_error const& e) {
    threw = true;
    CHECK(e.task_index() == failing);
    CHECK(e.type_name() == "std::out_of_range");
    CHECK(e.message() == "no such item");
    CHECK(e.where().starts_with("rank " + std::to_string(last) + " on "));
    CHECK(std::string(e.what()).find("(rank " + std::to_string(last) + " on ") != std::string::npos);
    CHECK(static_cast<bool>(e.original()) == (rank() == last && tasks_run_here()));
  }
  CHECK(threw);

  // Several ranks fail: the lowest task index wins, on every rank.
  std::uint64_t seen = 0;
  try {
    (void)par.map(
        [](int i) {
          if (i % 97 == 5) throw std::runtime_error("every 97th");
          return i;
        },
        std::views::iota(0, 1000));
  } catch (xjob::task_error const& e) {
    seen = e.task_index();
  }
  CHECK(seen == 5);
  CHECK(same_on_every_rank(seen));

  // And the next call runs normally.
  CHECK(par.map(square_counted, std::views::iota(0, 50)).back() == 49 * 49);
}

TEST_CASE("a stop requested on one rank makes every rank throw cancelled") {
  std::stop_source stop;
  if (rank() == 0) stop.request_stop();
  xjob::parallel const par = mpi_parallel({.stop = stop.get_token()});
  bool cancelled = false;
  try {
    (void)par.map(square_counted, std::views::iota(0, 1000));
  } catch (xjob::cancelled const& e) {
    cancelled = true;
    CHECK(e.total() == 1000);
  }
  CHECK(cancelled);
  CHECK(mpi_parallel().map(square_counted, std::views::iota(0, 10)).size() == 10);
}

TEST_CASE("many calls in a row hand out the tail from one counter") {
  xjob::parallel const par = mpi_parallel({.batch_size = 1});
  bool all_right = true;
  for (int call = 0; call < 60; ++call) {
    ran_here = 0;
    int const n = 1 + call * 7;
    auto const r = par.map(square_counted, std::views::iota(0, n));
    all_right = all_right && r.size() == static_cast<std::size_t>(n) && r.back() == (n - 1) * (n - 1) &&
                (!tasks_run_here() || sum_over_ranks(ran_here.load()) == static_cast<std::uint64_t>(n));
  }
  CHECK(all_right);
}

TEST_CASE("a stream and a progress callback see every task") {
  xjob::parallel const par = mpi_parallel();
  std::size_t count = 0;
  long long sum = 0;
  for (int value : par.map([](int i) { return i; }, std::views::iota(0, 300), xjob::return_as_generator)) {
    sum += value;
    ++count;
  }
  CHECK(count == 300);
  CHECK(sum == 299LL * 300 / 2);

  std::atomic<std::size_t> last_done{0};
  xjob::parallel const followed = mpi_parallel({.on_progress = [&](xjob::progress const& p) {
    last_done.store(std::max(last_done.load(), p.done));
  }});
  (void)followed.map([](int i) { return i; }, std::views::iota(0, 400));
  CHECK(last_done.load() == 400);
}

TEST_CASE("a call from inside a task of an mpi call is an error that says why") {
  xjob::parallel const par = mpi_parallel();
  std::string message;
  try {
    (void)par.map([&par](int i) { return par.map([](int j) { return j; }, std::views::iota(0, i + 1)).size(); },
                  std::views::iota(0, 8));
  } catch (xjob::task_error const& e) {
    message = e.message();
  }
  CHECK(message.find("one call at a time") != std::string::npos);
  // Nested calls on a local backend are fine.
  auto const nested = par.map(
      [](int i) { return xjob::parallel({.n_jobs = 2, .backend = "threads"}).map([](int j) { return j; },
                                                                                  std::views::iota(0, i + 1)).size(); },
      std::views::iota(0, 8));
  CHECK(nested.back() == 8);
}

TEST_CASE("the conformance library passes on mpi in its no-shared-memory mode, on every rank") {
  xjob::testing::conformance_report const report = xjob::testing::check_conformance(
      {.backend = "mpi", .memory = xjob::testing::worker_memory::none, .concurrent_calls = false});
  INFO(report.summary());
  CHECK(report.checks >= 30);
  CHECK(report.ok());
}

TEST_CASE("a resumable output on mpi is refused, naming the problem, on every rank") {
  // A path of each rank's own: the refusal must not depend on sharing one.
  std::filesystem::path const dir = std::filesystem::temp_directory_path() /
                                    ("xjob_mpi_resume_" + std::to_string(rank()) + "_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  xt::xtensor<double, 2> const x = xt::ones<double>({8, 4});
  std::string message;
  {
    auto out = xjob::shared_array<double>::resume_npy(dir / "out.npy", {8, 4});
    try {
      mpi_parallel().map_chunks(x, [](auto const& in, auto&& o) { o = in; }, out);
    } catch (xjob::invalid_argument const& e) {
      message = e.what();
    }
  }
  std::filesystem::remove_all(dir);
  CHECK(message.find("resumable output") != std::string::npos);
  CHECK(message.find("\"mpi\"") != std::string::npos);
}

TEST_CASE("a worker process that crashes on one rank is a worker_crashed naming that rank", "[processes]") {
  if (mpi_session->options().local_backend != "processes") return;
  int const last = ranks() - 1;
  std::size_t const failing = ranks() > 1 ? 700 : 999;
  xjob::parallel const par = mpi_parallel();
  std::string where;
  try {
    par.map(
        [failing](int i) {
          if (static_cast<std::size_t>(i) == failing) raise(SIGSEGV);
          return i;
        },
        std::views::iota(0, 1000));
  } catch (xjob::worker_crashed const& e) {
    where = e.where();
    CHECK(e.signal() == SIGSEGV);
    CHECK(e.task_index() == std::optional<std::size_t>(failing));
  }
  CHECK(where.starts_with("rank " + std::to_string(last) + " on "));
}

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  char const* local = std::getenv("XJOB_TEST_MPI_LOCAL");
  xjob::mpi::session session(argc, argv, {.local_backend = local != nullptr ? local : "threads"});
  mpi_session = &session;
  int const failed = Catch::Session().run(argc, argv);
  // A rank whose cases passed still fails the run if another's did not.
  int const any_failed = static_cast<int>(sum_over_ranks(failed != 0 ? 1 : 0));
  return any_failed != 0 ? 1 : 0;
}
