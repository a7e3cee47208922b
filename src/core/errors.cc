#include <xjob/errors.hpp>

#include <cxxabi.h>

#include <cstring>

#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>

#include <fmt/format.h>

#include <xjob/detail/task_runner.hpp>

namespace xjob {

npy_error::npy_error(std::filesystem::path path, std::string const& problem, std::error_code code)
    : error(code ? fmt::format("{}: {} ({})", path.string(), problem, code.message())
                 : fmt::format("{}: {}", path.string(), problem)),
      path_(std::move(path)),
      code_(code) {}

task_error::task_error(std::size_t task_index, std::string type_name, std::string message,
                       std::exception_ptr original, std::string where)
    : error(fmt::format("task {} threw {}: {}{}", task_index, type_name, message,
                        where.empty() ? std::string() : fmt::format(" ({})", where))),
      task_index_(task_index),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      original_(std::move(original)),
      where_(std::move(where)) {}

void task_error::rethrow_original() const {
  if (original_) std::rethrow_exception(original_);
  throw *this;
}

namespace {
std::string describe_death(int signal, int exit_status) {
  if (signal == 0) return fmt::format("exited with status {}", exit_status);
  char const* abbreviation = sigabbrev_np(signal);
  return fmt::format("killed by signal {} (SIG{}: {})", signal, abbreviation != nullptr ? abbreviation : "?",
                     strsignal(signal));
}
}  // namespace

worker_crashed::worker_crashed(std::optional<std::size_t> task_index, int pid, int signal, int exit_status,
                               int attempts, std::string where)
    : error(fmt::format("worker process {}{} died {}: {}{}", pid,
                        where.empty() ? std::string() : fmt::format(" ({})", where),
                        task_index ? fmt::format("running task {}", *task_index) : std::string("between tasks"),
                        describe_death(signal, exit_status),
                        attempts > 1 ? fmt::format(" (the task ran {} times, killing its worker each time)", attempts)
                                     : std::string())),
      task_index_(task_index),
      pid_(pid),
      signal_(signal),
      exit_status_(exit_status),
      attempts_(attempts),
      where_(std::move(where)) {}

timeout_error::timeout_error(std::string const& what, std::optional<std::size_t> task_index,
                             std::chrono::duration<double> limit)
    : error(what), task_index_(task_index), limit_(limit) {}

cancelled::cancelled(std::size_t done, std::size_t total)
    : error(fmt::format("the call was cancelled (its stop token was requested) after {} of {} tasks", done, total)),
      done_(done),
      total_(total) {}

namespace detail {

namespace {
std::string demangle(char const* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}
}  // namespace

task_failure describe_current_exception(std::size_t task_index) {
  task_failure failure;
  failure.task_index = task_index;
  failure.original = std::current_exception();
  std::type_info const* type = abi::__cxa_current_exception_type();
  failure.type_name = type != nullptr ? demangle(type->name()) : "unknown exception";
  try {
    throw;
  } catch (std::exception const& e) {
    failure.message = e.what();
  } catch (...) {
    failure.message = "(not derived from std::exception)";
  }
  return failure;
}

void throw_errno(int code, std::string const& what_failed) {
  throw std::system_error(code, std::generic_category(), what_failed);
}

}  // namespace detail
}  // namespace xjob
