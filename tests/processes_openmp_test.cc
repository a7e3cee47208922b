// OpenMP inside worker processes: GNU OpenMP has no fork handler, so a worker
// forked after the caller ran a parallel region would wait forever for pool
// threads that do not exist in it. xjob releases the pool before it forks,
// and caps each worker's OpenMP threads at its share of the CPUs.
#include <omp.h>

#include <chrono>
#include <ranges>

#include <catch2/catch.hpp>

#include <xjob/cpu_count.hpp>
#include <xjob/parallel.hpp>

TEST_CASE("workers run nested OpenMP regions after the caller ran one, capped at their share") {
  using namespace std::chrono_literals;
  auto par = xjob::parallel({.n_jobs = 2, .backend = "processes", .task_timeout = 20s});
  int const share = std::max(1, xjob::cpu_count() / 2);
  for (int round = 0; round < 20; ++round) {
    long caller_sum = 0;
#pragma omp parallel for reduction(+ : caller_sum) num_threads(2)
    for (long i = 0; i < 100000; ++i) caller_sum += i;
    REQUIRE(caller_sum == 4999950000L);
    auto const nested = par.map([](int) {
      long sum = 0;
#pragma omp parallel for reduction(+ : sum)
      for (long i = 0; i < 100000; ++i) sum += i;
      return std::array<long, 2>{sum, omp_get_max_threads()};
    }, std::views::iota(0, 4));
    for (auto const& [sum, threads] : nested) {
      REQUIRE(sum == 4999950000L);
      REQUIRE(threads == share);
    }
  }
}
