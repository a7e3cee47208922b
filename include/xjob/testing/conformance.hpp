// The conformance suite as a library, for any backend, a user's too (like
// abseil's hash_testing.h): the same calls on the backend under test and on
// "sequential", compared. Test-only: Bazel @xjob//:testing (testonly).
//
// What it checks: results of map and delayed calls in input order, every
// task run exactly once, an empty call, the first failing task reported
// with its index, type and message and the next call running normally,
// map_chunks along every axis and odd chunk sizes, map_reduce bitwise as on
// "sequential", progress reaching every task, a stream of results in input
// order, a call nested in a task, and concurrent calls on one parallel
// object from two threads.
//
// Needs: a registered backend. For backends whose workers share no memory
// with the caller (worker processes, ranks of an MPI job), memory::none
// counts tasks through their results instead of shared counters. A backend
// spanning machines (SPMD) runs the suite on every rank: it makes the same
// calls in the same order on each, aborts none midway, and skips the
// concurrent calls (every rank must reach every call in the same order).
//
// Throws: nothing for a failing check (the report lists it); what the
// parallel object's constructor throws for a backend it cannot make.
//
// Thread-safety: one run at a time per backend object; runs start their
// own threads for the concurrent-call case.
//
//   xjob::testing::conformance_report const r = xjob::testing::check_conformance({.backend = "openmp"});
//   if (!r.ok()) std::cerr << r.summary();
#pragma once

#include <xjob/detail/config.hpp>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/errors.hpp>
#include <xjob/map_chunks.hpp>
#include <xjob/parallel.hpp>
#include <xjob/results.hpp>
#include <xjob/shared_array.hpp>

namespace xjob::testing {

enum class worker_memory {
  shared,  // workers see the caller's memory (threads) or its shared memory
  none,    // workers share no memory with the caller: count through results
};

struct conformance_options {
  std::string backend;
  int n_jobs = 2;
  worker_memory memory = worker_memory::shared;
  // Calls on one parallel object from two threads at once; off for
  // backends spanning machines, whose ranks must reach calls in one order.
  bool concurrent_calls = true;
  // Whether its workers run closures; off for workers that hold none of
  // the caller's memory (processes started with forkserver or spawn): the
  // cases then use callables without captures.
  bool runs_closures = true;
};

struct conformance_report {
  int checks = 0;
  std::vector<std::string> failures;
  [[nodiscard]] bool ok() const noexcept { return failures.empty(); }
  [[nodiscard]] std::string summary() const {
    std::string text = fmt::format("{} checks, {} failed", checks, failures.size());
    for (std::string const& f : failures) text += "\n  " + f;
    return text;
  }
};

namespace conformance_detail {

inline int triple_plus_one(int i) { return i * 3 + 1; }

class recorder {
 public:
  explicit recorder(conformance_report& report) : report_(report) {}
  void check(bool passed, std::string const& what) {
    ++report_.checks;
    if (!passed) report_.failures.push_back(what);
  }
  // Runs a case; an exception it lets out is a failure of that case.
  template <class Case>
  void run(std::string const& name, Case&& body) {
    try {
      body();
    } catch (std::exception const& e) {
      check(false, fmt::format("{}: threw {}", name, e.what()));
    } catch (...) {
      check(false, fmt::format("{}: threw something not derived from std::exception", name));
    }
  }

 private:
  conformance_report& report_;
};

}  // namespace conformance_detail

inline conformance_report check_conformance(conformance_options const& options) {
  using conformance_detail::triple_plus_one;
  conformance_report report;
  conformance_detail::recorder r(report);
  bool const counts_here = options.memory == worker_memory::shared && options.runs_closures;
  auto make = [&](parallel_options o = {}) {
    o.backend = options.backend;
    o.n_jobs = options.n_jobs;
    return parallel(o);
  };
  parallel const sequential({.n_jobs = 1, .backend = "sequential"});

  r.run("map in input order", [&] {
    for (std::optional<std::size_t> batch : {std::optional<std::size_t>(), std::optional<std::size_t>(1),
                                             std::optional<std::size_t>(7)}) {
      parallel const par = make({.batch_size = batch});
      for (int n : {0, 1, 7, 1000}) {
        std::vector<int> const got = par.map(triple_plus_one, std::views::iota(0, n));
        std::vector<int> const want = sequential.map(triple_plus_one, std::views::iota(0, n));
        r.check(got == want, fmt::format("map of {} tasks (batch size {}) differs from sequential", n,
                                         batch ? std::to_string(*batch) : "automatic"));
      }
    }
  });

  r.run("every task exactly once", [&] {
    parallel const par = make();
    constexpr int n = 2000;
    // Each task says which task it was; a task run twice or never shows in
    // the results (memory::none) or in a shared count per task.
    shared_array<std::uint32_t> runs({std::size_t(n)});
    std::uint32_t* counts = runs.data();
    std::vector<int> const seen =
        counts_here ? par.map(
                          [counts](int i) {
                            std::atomic_ref<std::uint32_t>(counts[i]).fetch_add(1, std::memory_order_relaxed);
                            return i;
                          },
                          std::views::iota(0, n))
                    : par.map([](int i) { return i; }, std::views::iota(0, n));
    bool each_once = seen.size() == std::size_t(n);
    for (int i = 0; each_once && i < n; ++i) each_once = seen[std::size_t(i)] == i;
    r.check(each_once, "results do not name every task exactly once");
    if (counts_here) {
      bool counted_once = true;
      for (int i = 0; i < n; ++i) counted_once = counted_once && counts[i] == 1;
      r.check(counted_once, "a task ran other than once (shared counts)");
    }
  });

  r.run("delayed calls and strings", [&] {
    parallel const par = make();
    std::vector<delayed_call<std::string (*)(int), int>> calls;
    for (int i = 0; i < 100; ++i)
      calls.push_back(delayed(static_cast<std::string (*)(int)>([](int v) { return std::to_string(v * v); }))(i));
    std::vector<std::string> const got = par(calls);
    r.check(got.size() == 100 && got[99] == "9801", "delayed calls returning strings differ");
  });

  r.run("the first failure", [&] {
    parallel const par = make({.batch_size = 1});
    std::optional<std::size_t> index;
    std::string type, message;
    try {
      (void)par.map(
          [](int i) {
            if (i == 37) throw std::out_of_range("item 37");
            return i;
          },
          std::views::iota(0, 100));
    } catch (task_error const& e) {
      index = e.task_index();
      type = e.type_name();
      message = e.message();
    }
    r.check(index == std::optional<std::size_t>(37) && type == "std::out_of_range" && message == "item 37",
            fmt::format("a failing task was reported as task {}, {}: {}", index ? std::to_string(*index) : "none",
                        type, message));
    std::vector<int> const next = par.map(triple_plus_one, std::views::iota(0, 50));
    r.check(next.size() == 50 && next[49] == triple_plus_one(49), "the call after a failure went wrong");
  });

  r.run("map_chunks", [&] {
    parallel const par = make();
    xt::xtensor<double, 3> const x = xt::reshape_view(xt::arange<double>(0.0, 7.0 * 11.0 * 5.0) * 0.25, {7, 11, 5});
    auto const f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };
    for (std::size_t axis = 0; axis < 3; ++axis) {
      for (std::size_t size : {1UL, 3UL, 4UL}) {
        auto const got = par.map_chunks(x, f, {.axis = axis, .size = size});
        auto const want = sequential.map_chunks(x, f, {.axis = axis, .size = size});
        r.check(got.template view<3>() == want.template view<3>(),
                fmt::format("map_chunks along axis {} in chunks of {} differs from sequential", axis, size));
      }
    }
  });

  r.run("map_reduce bits", [&] {
    auto const g = [](int i) { return 1.0 / (1.0 + i); };
    for (std::optional<std::size_t> batch : {std::optional<std::size_t>(), std::optional<std::size_t>(3)}) {
      double const got = make({.batch_size = batch}).map_reduce(g, std::views::iota(0, 30001), 0.0, std::plus<>{});
      double const want = sequential.map_reduce(g, std::views::iota(0, 30001), 0.0, std::plus<>{});
      r.check(std::bit_cast<std::uint64_t>(got) == std::bit_cast<std::uint64_t>(want),
              fmt::format("map_reduce gave {:.17g}, sequential {:.17g}", got, want));
    }
  });

  r.run("progress", [&] {
    std::atomic<std::size_t> most{0};
    parallel const par = make({.on_progress = [&most](progress const& p) {
      std::size_t seen = most.load();
      while (p.done > seen && !most.compare_exchange_weak(seen, p.done)) {
      }
    }});
    (void)par.map(triple_plus_one, std::views::iota(0, 500));
    r.check(most.load() == 500, fmt::format("progress reached {} of 500 tasks", most.load()));
  });

  // A stream keeps its callable in the caller (a closure, in effect).
  if (options.runs_closures) r.run("a stream of results", [&] {
    parallel const par = make();
    std::vector<int> got;
    for (int v : par.map(triple_plus_one, std::views::iota(0, 300), return_as_generator)) got.push_back(v);
    r.check(got == sequential.map(triple_plus_one, std::views::iota(0, 300)), "a result stream differs");
  });

  r.run("a nested call", [&] {
    parallel const par = make();
    std::vector<std::size_t> const sizes = par.map(
        [](int i) {
          return parallel({.n_jobs = 2, .backend = "threads"})
              .map(triple_plus_one, std::views::iota(0, i + 1))
              .size();
        },
        std::views::iota(0, 10));
    r.check(sizes.size() == 10 && sizes[9] == 10, "a call nested in a task went wrong");
  });

  if (options.concurrent_calls) {
    r.run("concurrent calls on one parallel object", [&] {
      parallel const par = make();
      std::vector<int> const want = sequential.map(triple_plus_one, std::views::iota(0, 3000));
      std::atomic<int> wrong{0};
      {
        std::vector<std::jthread> threads;
        for (int t = 0; t < 2; ++t)
          threads.emplace_back([&] {
            for (int k = 0; k < 5; ++k) {
              try {
                if (par.map(triple_plus_one, std::views::iota(0, 3000)) != want) wrong.fetch_add(1);
              } catch (...) {
                wrong.fetch_add(1);
              }
            }
          });
      }
      r.check(wrong.load() == 0, fmt::format("{} of 10 concurrent calls went wrong", wrong.load()));
    });
  }
  return report;
}

}  // namespace xjob::testing
