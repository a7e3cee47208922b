// The type-erased body of one parallel call: run tasks [begin, end). The
// front end implements it per kind of call (delayed calls, map, map_chunks);
// backends only ever see it through batch_call. One virtual call per batch.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <utility>

namespace xjob::detail {

// What a failing task left behind.
struct task_failure {
  std::size_t task_index = 0;
  std::string type_name;
  std::string message;
  std::exception_ptr original;
};

// What running a batch came to: tasks [begin, completed_end) succeeded; if
// `failure` is set, the task at completed_end threw; otherwise the rest were
// skipped because the call stopped.
struct batch_outcome {
  std::size_t completed_end = 0;
  std::optional<task_failure> failure;
};

// Describes the exception being handled; call only inside a catch block.
[[nodiscard]] task_failure describe_current_exception(std::size_t task_index);

class task_runner {
 public:
  virtual ~task_runner() = default;
  // Runs tasks begin, begin+1, ... < end in order until one throws or `stop`
  // is set (checked before each task).
  [[nodiscard]] virtual batch_outcome run(std::size_t begin, std::size_t end,
                                          std::atomic<bool> const& stop) noexcept = 0;
};

// The usual implementation: `run_one(i)` per task, the failing index kept.
template <class RunOne>
class task_loop final : public task_runner {
 public:
  explicit task_loop(RunOne run_one) : run_one_(std::move(run_one)) {}

  batch_outcome run(std::size_t begin, std::size_t end, std::atomic<bool> const& stop) noexcept override {
    std::size_t i = begin;
    try {
      for (; i < end && !stop.load(std::memory_order_relaxed); ++i) run_one_(i);
    } catch (...) {
      return {i, describe_current_exception(i)};
    }
    return {i, std::nullopt};
  }

 private:
  RunOne run_one_;
};

}  // namespace xjob::detail
