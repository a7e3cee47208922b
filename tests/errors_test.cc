#include <xjob/errors.hpp>

#include <stdexcept>

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
