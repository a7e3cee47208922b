#include <xjob/errors.hpp>

#include <csignal>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include <xjob/detail/task_runner.hpp>

TEST_CASE("task_error says which task threw what") {
  xjob::task_error const e(17, "std::runtime_error", "boom");
  REQUIRE(std::string(e.what()) == "task 17 threw std::runtime_error: boom");
  REQUIRE(e.task_index() == 17);
  REQUIRE(e.type_name() == "std::runtime_error");
  REQUIRE(e.message() == "boom");
  REQUIRE(e.original() == nullptr);
  REQUIRE_THROWS_AS(e.rethrow_original(), xjob::task_error);
}

TEST_CASE("the original exception can be rethrown with its own type") {
  xjob::detail::task_failure failure;
  try {
    throw std::out_of_range("index 9");
  } catch (...) {
    failure = xjob::detail::describe_current_exception(3);
  }
  REQUIRE(failure.type_name == "std::out_of_range");
  REQUIRE(failure.message == "index 9");
  xjob::task_error const e(failure.task_index, failure.type_name, failure.message, failure.original);
  REQUIRE_THROWS_AS(e.rethrow_original(), std::out_of_range);
}

TEST_CASE("exceptions that are not std::exception are described too") {
  struct odd {};
  xjob::detail::task_failure failure;
  try {
    throw odd{};
  } catch (...) {
    failure = xjob::detail::describe_current_exception(0);
  }
  REQUIRE(failure.type_name.find("odd") != std::string::npos);
  REQUIRE(failure.message == "(not derived from std::exception)");
  try {
    throw 42;
  } catch (...) {
    failure = xjob::detail::describe_current_exception(1);
  }
  REQUIRE(failure.type_name == "int");
}

TEST_CASE("every xjob exception is an xjob::error") {
  REQUIRE_THROWS_AS(throw xjob::invalid_argument("x"), xjob::error);
  REQUIRE_THROWS_AS(throw xjob::task_error(0, "t", "m"), xjob::error);
  REQUIRE_THROWS_AS(throw xjob::npy_error("f.npy", "bad"), xjob::error);
}

TEST_CASE("npy_error names the file, the problem, and the system error") {
  xjob::npy_error const e("in.npy", "cannot open", std::make_error_code(std::errc::no_such_file_or_directory));
  REQUIRE(std::string(e.what()) == "in.npy: cannot open (No such file or directory)");
  REQUIRE(e.path() == "in.npy");
  REQUIRE(e.code() == std::errc::no_such_file_or_directory);
}

TEST_CASE("worker_crashed says which worker died running which task, and how") {
  xjob::worker_crashed const killed(17, 4711, SIGSEGV, -1, 1);
  REQUIRE(std::string(killed.what()) ==
          "worker process 4711 died running task 17: killed by signal 11 (SIGSEGV: Segmentation fault)");
  REQUIRE(killed.task_index() == std::optional<std::size_t>(17));
  REQUIRE(killed.pid() == 4711);
  REQUIRE(killed.signal() == SIGSEGV);
  xjob::worker_crashed const exited(std::nullopt, 12, 0, 3, 1);
  REQUIRE(std::string(exited.what()) == "worker process 12 died between tasks: exited with status 3");
  REQUIRE(exited.exit_status() == 3);
  xjob::worker_crashed const retried(5, 13, SIGKILL, -1, 3);
  REQUIRE_THAT(retried.what(), Catch::Contains("(the task ran 3 times, killing its worker each time)"));
  REQUIRE_THROWS_AS(throw retried, xjob::error);
}

TEST_CASE("timeout_error keeps the task and the limit") {
  xjob::timeout_error const e("task 4 ran too long", 4, std::chrono::milliseconds(300));
  REQUIRE(e.task_index() == std::optional<std::size_t>(4));
  REQUIRE(e.limit().count() == Approx(0.3));
  REQUIRE_THROWS_AS(throw e, xjob::error);
}
