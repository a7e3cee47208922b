// Resumable .npy outputs (shared_array::resume_npy) in one process: the
// files they leave, what a rerun runs, the plan and shape checks, the lock
// and a torn journal. The conformance suite kills writers with SIGKILL on
// every backend.
#include <xjob/map_chunks.hpp>
#include <xjob/shared_array.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <xtensor/xtensor.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>

namespace {

using xjob::testing::temp_dir;

constexpr std::size_t rows = 60;
constexpr std::size_t cols = 5;

xt::xtensor<double, 2> input() {
  xt::xtensor<double, 2> x = xt::zeros<double>({rows, cols});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 0.25 * static_cast<double>(i) - 3.0;
  return x;
}

bool holds_affine(xjob::shared_array<double> const& out) {
  auto const x = input();
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out.data()[i] != 2.0 * x.data()[i] + 1.0) return false;
  return true;
}

// f for the first run: fails at the chunk starting at slice `fail_at`.
auto failing_at(std::size_t fail_at) {
  return [fail_at](auto const& in, auto&& out, xjob::chunk_info const& c) {
    if (c.offset == fail_at) throw std::runtime_error("chunk failed on purpose");
    out = 2.0 * in + 1.0;
  };
}

// f for a rerun: counts the chunks it runs.
auto counting(std::atomic<int>& ran) {
  return [&ran](auto const& in, auto&& chunk) {
    ++ran;
    chunk = 2.0 * in + 1.0;
  };
}

bool unfinished_files(std::filesystem::path const& path) {
  return std::filesystem::exists(path.string() + ".partial") && std::filesystem::exists(path.string() + ".journal");
}

bool no_leftovers(std::filesystem::path const& path) {
  return !std::filesystem::exists(path.string() + ".partial") && !std::filesystem::exists(path.string() + ".journal");
}

// A first run on one worker, in order, that fails at slice 35: with chunks
// of 5 slices, chunks 0 to 6 are done and journaled.
void fail_first_run(std::filesystem::path const& path, xjob::chunking how = {.axis = 0, .size = 5}) {
  xjob::parallel sequential({.n_jobs = 1, .backend = "sequential", .batch_size = 1});
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  REQUIRE_THROWS_AS(sequential.map_chunks(input(), failing_at(35), out, how), xjob::task_error);
  CHECK_FALSE(out.committed());
}

}  // namespace

TEST_CASE("resume_npy makes a fresh output that map_chunks fills and commits, and NumPy reads") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  CHECK(unfinished_files(path));
  CHECK_FALSE(std::filesystem::exists(path));
  par.map_chunks(input(), [](auto const& in, auto&& chunk) { chunk = 2.0 * in + 1.0; }, out, {.size = 7});
  CHECK(out.committed());
  CHECK(std::filesystem::exists(path));
  CHECK(no_leftovers(path));
  CHECK(holds_affine(out));
  xjob::testing::python_run const numpy = xjob::testing::run_python(
      "import numpy as np\n"
      "a = np.load('" + path.string() + "')\n"
      "x = (np.arange(" + std::to_string(rows * cols) + ") * 0.25 - 3.0).reshape(" + std::to_string(rows) + ", " +
      std::to_string(cols) + ")\n"
      "print(a.dtype, a.shape, np.array_equal(a, 2.0 * x + 1.0))\n");
  INFO(numpy.output);
  CHECK(numpy.output == "float64 (60, 5) True\n");
}

TEST_CASE("a failed call leaves an unfinished output; a rerun runs only the chunks not done, then commits") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  fail_first_run(path);
  CHECK(unfinished_files(path));
  CHECK_FALSE(std::filesystem::exists(path));

  std::atomic<int> ran = 0;
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  par.map_chunks(input(), counting(ran), out, {.size = 5});
  CHECK(ran == 12 - 7);
  CHECK(out.committed());
  CHECK(no_leftovers(path));
  CHECK(holds_affine(out));
}

TEST_CASE("chunks along axis 1 resume too") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  xjob::parallel sequential({.n_jobs = 1, .backend = "sequential", .batch_size = 1});
  {
    auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
    REQUIRE_THROWS_AS(sequential.map_chunks(input(), failing_at(3), out, {.axis = 1, .size = 1}), xjob::task_error);
  }
  std::atomic<int> ran = 0;
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  xjob::parallel({.n_jobs = 2}).map_chunks(input(), counting(ran), out, {.axis = 1});
  CHECK(ran == 2);  // columns 3 and 4; the chunk size of 1 came from the journal
  CHECK(holds_affine(out));
}

TEST_CASE("an automatic chunk size follows the unfinished output's plan; another plan is refused, naming both") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  fail_first_run(path);
  xjob::parallel par({.n_jobs = 3});
  {
    auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
    XJOB_REQUIRE_THROWS_WITH_TEXT(par.map_chunks(input(), [](auto const& in, auto&& o) { o = in; }, out, {.size = 4}),
                                  xjob::invalid_argument, "was planned as shape (60, 5), dtype <f8, axis 0 cut into chunks of 5");
    XJOB_REQUIRE_THROWS_WITH_TEXT(par.map_chunks(input(), [](auto const& in, auto&& o) { o = in; }, out, {.size = 4}),
                                  xjob::invalid_argument, "axis 0 cut into chunks of 4");
    XJOB_REQUIRE_THROWS_WITH_TEXT(
        par.map_chunks(input(), [](auto const& in, auto&& o) { o = in; }, out, {.axis = 1, .size = 5}),
        xjob::invalid_argument, "axis 1 cut into chunks of 5");
    CHECK(unfinished_files(path));
  }
  std::atomic<int> ran = 0;
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  par.map_chunks(input(), counting(ran), out);
  CHECK(ran == 5);
  CHECK(holds_affine(out));
}

TEST_CASE("an unfinished or complete output of another shape or dtype is refused, naming both") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  fail_first_run(path);
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::resume_npy(path, {rows, cols + 1}),
                                xjob::invalid_argument, "shape (60, 5), dtype <f8; this run asks for shape (60, 6)");
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<float>::resume_npy(path, {rows, cols}),
                                xjob::invalid_argument, "dtype <f8; this run asks for shape (60, 5), dtype <f4");
  CHECK(unfinished_files(path));
  {
    auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
    xjob::parallel({.n_jobs = 2}).map_chunks(input(), [](auto const& in, auto&& o) { o = 2.0 * in + 1.0; }, out);
  }
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::resume_npy(path, {rows + 1, cols}),
                                xjob::invalid_argument, "the complete output");
}

TEST_CASE("a complete output counts as all done") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  xjob::parallel par({.n_jobs = 2});
  {
    auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
    par.map_chunks(input(), [](auto const& in, auto&& o) { o = 2.0 * in + 1.0; }, out);
  }
  auto again = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  CHECK(no_leftovers(path));
  par.map_chunks(input(), failing_at(0), again);  // runs no chunk
  CHECK(holds_affine(again));
  CHECK(again.committed());
}

TEST_CASE("one writer at a time: another resume of the same output is refused while it is open") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  {
    auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
    XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::resume_npy(path, {rows, cols}), xjob::error,
                                  "this process is writing it already");
    std::fflush(nullptr);
    pid_t const child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      try {
        (void)xjob::shared_array<double>::resume_npy(path, {rows, cols});
      } catch (xjob::error const& e) {
        std::string const expected = "process " + std::to_string(getppid()) + " is writing it";
        _exit(std::string(e.what()).find(expected) != std::string::npos ? 0 : 2);
      }
      _exit(1);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  // Dropped: the next writer may go on.
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  CHECK(unfinished_files(path));
}

TEST_CASE("a torn journal tail is ignored: its chunks run again") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  fail_first_run(path);
  auto const journal = path.string() + ".journal";
  auto const size = std::filesystem::file_size(journal);
  {
    // Half a record, as a power cut while appending might leave.
    std::ofstream(journal, std::ios::app | std::ios::binary) << std::string(17, '\x5a');
  }
  std::atomic<int> ran = 0;
  {
    auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
    CHECK(std::filesystem::file_size(journal) == size);  // cut back to the last whole record
    xjob::parallel({.n_jobs = 2}).map_chunks(input(), counting(ran), out);
    CHECK(holds_affine(out));
  }
  CHECK(ran == 5);
  // A whole record whose checksum fails ends the journal there too: here
  // the one record of the chunks done, so all of them run again.
  temp_dir dir2;
  auto const path2 = dir2 / "out.npy";
  fail_first_run(path2);
  auto const journal2 = path2.string() + ".journal";
  {
    std::fstream file(journal2, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(std::filesystem::file_size(journal2)) - 20);
    file.put('\x7f');  // inside the record's chunk range
  }
  ran = 0;
  auto out = xjob::shared_array<double>::resume_npy(path2, {rows, cols});
  xjob::parallel({.n_jobs = 2}).map_chunks(input(), counting(ran), out);
  CHECK(ran == 12);
  CHECK(holds_affine(out));
}

TEST_CASE("finished chunks are recorded during the call, once per flush interval, not only at its end") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  auto const journal = path.string() + ".journal";
  xjob::parallel sequential({.n_jobs = 1, .backend = "sequential", .batch_size = 1});
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  std::uintmax_t const fresh = std::filesystem::file_size(journal);
  std::atomic<std::uintmax_t> seen = 0;
  // 60 chunks of 10 ms: the journal has grown (plan, then chunks) well
  // before the last.
  sequential.map_chunks(
      input(),
      [&](auto const& in, auto&& chunk, xjob::chunk_info const& c) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (c.index == rows - 1) seen = std::filesystem::file_size(journal);
        chunk = 2.0 * in + 1.0;
      },
      out, {.size = 1});
  CHECK(seen > fresh + 32);  // more than the plan's record
  CHECK(holds_affine(out));
}

TEST_CASE("without its journal an unfinished output starts over") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  fail_first_run(path);
  std::filesystem::remove(path.string() + ".journal");
  std::atomic<int> ran = 0;
  auto out = xjob::shared_array<double>::resume_npy(path, {rows, cols});
  xjob::parallel({.n_jobs = 2}).map_chunks(input(), counting(ran), out, {.size = 5});
  CHECK(ran == 12);
  CHECK(holds_affine(out));
}
