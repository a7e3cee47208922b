#include <xjob/parallel_config.hpp>

#include <cstdlib>
#include <thread>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/cpu_count.hpp>
#include <xjob/errors.hpp>
#include <xjob/parallel.hpp>

namespace {
// Sets an environment variable for one test section.
class scoped_env {
 public:
  scoped_env(char const* name, char const* value) : name_(name) { setenv(name, value, 1); }
  ~scoped_env() { unsetenv(name_); }
  scoped_env(scoped_env const&) = delete;
  scoped_env& operator=(scoped_env const&) = delete;

 private:
  char const* name_;
};
}  // namespace

TEST_CASE("defaults: one job, so the sequential backend, as joblib's n_jobs=None") {
  auto const o = xjob::resolve_options({});
  REQUIRE(*o.n_jobs == 1);
  REQUIRE(o.backend == "sequential");
}

TEST_CASE("negative n_jobs counts back from the CPU count") {
  int const cpus = xjob::cpu_count();
  REQUIRE(*xjob::resolve_options({.n_jobs = -1}).n_jobs == cpus);
  if (cpus >= 2) REQUIRE(*xjob::resolve_options({.n_jobs = -2}).n_jobs == cpus - 1);
  REQUIRE(*xjob::resolve_options({.n_jobs = 5}).n_jobs == 5);
}

TEST_CASE("bad n_jobs, batch and chunk sizes are errors that name the value") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({.n_jobs = 0}), xjob::invalid_argument, "n_jobs must not be 0");
  int const too_low = -xjob::cpu_count() - 1;
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({.n_jobs = too_low}), xjob::invalid_argument,
                                "n_jobs=" + std::to_string(too_low));
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({.n_jobs = 2, .batch_size = 0}), xjob::invalid_argument,
                                "batch_size must be at least 1, got 0");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({.n_jobs = 2, .chunk_size = 0}), xjob::invalid_argument,
                                "chunk_size must be at least 1, got 0");
}

TEST_CASE("an unknown backend is an error listing the known ones, even with one job") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({.n_jobs = 1, .backend = "thread"}), xjob::invalid_argument,
                                "unknown backend 'thread'; registered backends: ");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({.n_jobs = 2, .backend = "thread"}), xjob::invalid_argument,
                                "threads");
}

TEST_CASE("precedence: explicit options, then parallel_config scopes, then environment, then defaults") {
  scoped_env jobs("XJOB_N_JOBS", "3");
  scoped_env backend("XJOB_BACKEND", "threads");
  SECTION("environment over defaults") {
    auto const o = xjob::resolve_options({});
    REQUIRE(*o.n_jobs == 3);
    REQUIRE(o.backend == "threads");
  }
  SECTION("a scope over the environment, unset fields falling through") {
    xjob::parallel_config scope({.n_jobs = 2, .verbose = 4});
    auto const o = xjob::resolve_options({});
    REQUIRE(*o.n_jobs == 2);
    REQUIRE(o.backend == "threads");
    REQUIRE(o.verbose == 4);
    SECTION("the innermost scope first") {
      xjob::parallel_config inner({.n_jobs = 4, .batch_size = 8});
      auto const i = xjob::resolve_options({});
      REQUIRE(*i.n_jobs == 4);
      REQUIRE(*i.batch_size == 8);
      REQUIRE(i.verbose == 4);
    }
    SECTION("explicit options over every scope") {
      REQUIRE(*xjob::resolve_options({.n_jobs = 5}).n_jobs == 5);
    }
  }
  SECTION("a scope ends with its block") {
    { xjob::parallel_config scope({.n_jobs = 2}); }
    REQUIRE(*xjob::resolve_options({}).n_jobs == 3);
  }
  SECTION("a scope applies to its own thread only") {
    xjob::parallel_config scope({.n_jobs = 2});
    int seen = 0;
    std::thread([&seen] { seen = *xjob::resolve_options({}).n_jobs; }).join();
    REQUIRE(seen == 3);
  }
}

TEST_CASE("a malformed XJOB_N_JOBS is an error naming the value") {
  scoped_env jobs("XJOB_N_JOBS", "two");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({}), xjob::invalid_argument,
                                "XJOB_N_JOBS must be an integer, got 'two'");
}

TEST_CASE("an unknown XJOB_BACKEND is an error") {
  scoped_env backend("XJOB_BACKEND", "gpu");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::resolve_options({}), xjob::invalid_argument, "unknown backend 'gpu'");
}

TEST_CASE("cpu_count is positive and at most the hardware's") {
  REQUIRE(xjob::cpu_count() >= 1);
  REQUIRE(xjob::cpu_count() <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

TEST_CASE("XJOB_STREAMING_STORES forces the choice, and a bad value names itself") {
  REQUIRE(xjob::resolve_options({}).streaming == xjob::streaming_stores::automatic);
  {
    scoped_env forced("XJOB_STREAMING_STORES", "on");
    REQUIRE(xjob::resolve_options({.streaming = xjob::streaming_stores::off}).streaming ==
            xjob::streaming_stores::on);
  }
  scoped_env bad("XJOB_STREAMING_STORES", "sometimes");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parallel(2), xjob::invalid_argument,
                                "XJOB_STREAMING_STORES must be auto, on or off, got 'sometimes'");
}

// A parallel's resolved options are valid options: they make a parallel
// with the same settings (the process settings stay unset for in-process
// backends, which refuse them).
TEST_CASE("a parallel made from another's options has the same settings") {
  for (char const* backend : {"threads", "sequential", "processes"}) {
    CAPTURE(backend);
    xjob::parallel const first({.n_jobs = 2, .backend = backend});
    xjob::parallel const second(first.options());
    REQUIRE(second.backend_name() == first.backend_name());
    REQUIRE(second.n_jobs() == first.n_jobs());
    REQUIRE(second.options().start_method == first.options().start_method);
    REQUIRE(second.options().reuse_workers == first.options().reuse_workers);
  }
  xjob::parallel const threads({.n_jobs = 2, .backend = "threads"});
  REQUIRE_FALSE(threads.options().start_method.has_value());
  xjob::parallel const processes({.n_jobs = 2, .backend = "processes"});
  REQUIRE(processes.options().start_method == xjob::start_method::fork);
}
