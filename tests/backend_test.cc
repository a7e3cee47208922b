#include <xjob/backend.hpp>

#include <algorithm>
#include <climits>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>
#include <xjob/parallel.hpp>

TEST_CASE("the built-in backends are registered") {
  auto const names = xjob::registered_backends();
  REQUIRE(std::find(names.begin(), names.end(), "sequential") != names.end());
  REQUIRE(std::find(names.begin(), names.end(), "threads") != names.end());
  REQUIRE(std::is_sorted(names.begin(), names.end()));
  REQUIRE(xjob::is_registered_backend("threads"));
  REQUIRE_FALSE(xjob::is_registered_backend("nope"));
}

TEST_CASE("a user's backend plugs in by name and runs calls") {
  int made_with = 0;
  xjob::register_backend("std_threads", [&made_with](xjob::backend_settings const& s) {
    made_with = s.n_jobs;
    return std::make_unique<xjob::testing::std_thread_backend>();
  });
  xjob::parallel par({.n_jobs = 3, .backend = "std_threads"});
  REQUIRE(made_with == 3);
  REQUIRE(par.backend_name() == "std_threads");
  auto const squares = par.map([](int i) { return i * i; }, std::views::iota(0, 1000));
  for (int i = 0; i < 1000; ++i) REQUIRE(squares[static_cast<std::size_t>(i)] == i * i);
}

TEST_CASE("registering again replaces the factory") {
  int version = 0;
  xjob::register_backend("replaceable", [&version](xjob::backend_settings const&) {
    version = 1;
    return std::make_unique<xjob::testing::std_thread_backend>();
  });
  xjob::register_backend("replaceable", [&version](xjob::backend_settings const&) {
    version = 2;
    return std::make_unique<xjob::testing::std_thread_backend>();
  });
  (void)xjob::make_backend("replaceable", {.n_jobs = 2});
  REQUIRE(version == 2);
}

TEST_CASE("bad registrations and unknown names are errors") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::register_backend("", [](auto const&) { return nullptr; }),
                                xjob::invalid_argument, "empty");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::register_backend("x", nullptr), xjob::invalid_argument, "backend 'x'");
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::make_backend("missing", {}), xjob::invalid_argument,
                                "unknown backend 'missing'; registered backends: ");
  xjob::register_backend("null_factory", [](auto const&) { return std::unique_ptr<xjob::backend>(); });
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::make_backend("null_factory", {}), xjob::invalid_argument,
                                "returned no backend");
}

TEST_CASE("the threads backend really runs n_jobs workers at once, even above the CPU count") {
  // Each task waits until all have started. Only if every worker runs at
  // the same time does each task see the full count before giving up.
  int const workers = static_cast<int>(std::thread::hardware_concurrency()) + 2;
  std::atomic<int> started{0};
  std::atomic<int> saw_everyone{0};
  xjob::parallel par({.n_jobs = workers, .backend = "threads", .batch_size = 1});
  par.map(
      [&](int) {
        started.fetch_add(1);
        auto const give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (started.load() < workers && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        if (started.load() >= workers) saw_everyone.fetch_add(1);
      },
      std::views::iota(0, workers));
  REQUIRE(saw_everyone.load() == workers);
}

TEST_CASE("the threads backend refuses more workers than it can start, naming the count and the bound") {
  auto make_and_run = [](int n_jobs) {
    xjob::parallel par({.n_jobs = n_jobs, .backend = "threads"});
    return par.map([](int i) { return i * i; }, std::views::iota(0, 3));
  };
  XJOB_REQUIRE_THROWS_WITH_TEXT(make_and_run(INT_MAX), xjob::invalid_argument,
                                "n_jobs=2147483647 is more workers than backend \"threads\" can start (at most 4096)");
  XJOB_REQUIRE_THROWS_WITH_TEXT(make_and_run(4097), xjob::invalid_argument, "n_jobs=4097 is more workers");
  // The bound itself is accepted, and a call starts no more threads than it has tasks.
  REQUIRE(make_and_run(4096) == std::vector<int>{0, 1, 4});
}

using xjob::testing::declaring_backend;

TEST_CASE("the front end decides from a backend's declared capabilities") {
  xjob::register_backend("in_process", [](xjob::backend_settings const&) {
    return std::make_unique<declaring_backend>(xjob::backend_capabilities{});
  });
  xjob::register_backend("isolating", [](xjob::backend_settings const&) {
    return std::make_unique<declaring_backend>(xjob::backend_capabilities{.isolates_crashes = true});
  });
  xjob::register_backend("elsewhere", [](xjob::backend_settings const&) {
    return std::make_unique<declaring_backend>(xjob::backend_capabilities{.results_cross_address_spaces = true});
  });

  SECTION("what parallel reports is what the backend declared") {
    REQUIRE(xjob::parallel({.n_jobs = 2, .backend = "in_process"}).capabilities() == xjob::backend_capabilities{});
    REQUIRE(xjob::parallel({.n_jobs = 2, .backend = "isolating"}).capabilities().isolates_crashes);
    REQUIRE(xjob::parallel({.n_jobs = 2, .backend = "elsewhere"}).runs_out_of_process());
    REQUIRE_FALSE(xjob::parallel({.n_jobs = 2, .backend = "isolating"}).runs_out_of_process());
    REQUIRE_FALSE(xjob::parallel({.n_jobs = 2, .backend = "isolating"}).reuses_workers());
  }
  SECTION("one worker runs sequentially unless the backend isolates crashes") {
    REQUIRE(xjob::parallel({.n_jobs = 1, .backend = "in_process"}).backend_name() == "sequential");
    REQUIRE(xjob::parallel({.n_jobs = 1, .backend = "isolating"}).backend_name() == "isolating");
  }
  SECTION("the options that kill workers need a backend that isolates crashes") {
    XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parallel({.n_jobs = 2, .backend = "in_process", .retries = 1}),
                                  xjob::invalid_argument, "retries needs a backend that runs tasks in worker processes");
    xjob::parallel const par({.n_jobs = 2, .backend = "isolating", .retries = 1});
    REQUIRE(par.options().retries == 1);
  }
}
