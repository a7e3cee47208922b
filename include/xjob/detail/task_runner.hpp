// The type-erased body of one parallel call: run tasks [begin, end), and
// carry their results out of a worker process and back in. The front end
// implements it per kind of call (delayed calls, map, map_chunks); backends
// only ever see it through batch_call. One virtual call per batch.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xjob::detail {

// What a failing task left behind.
struct task_failure {
  std::size_t task_index = 0;
  std::string type_name;
  std::string message;
  std::exception_ptr original;
  // Where it ran, when the call spans machines ("rank 2 on node7"); empty
  // on one machine.
  std::string where = {};
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
  // is set (checked before each task). If `current_task` is given, each
  // task's index is stored there before it starts, so a supervisor can tell
  // which task a dead or stuck worker was running.
  [[nodiscard]] virtual batch_outcome run(std::size_t begin, std::size_t end, std::atomic<bool> const& stop,
                                          std::atomic<std::size_t>* current_task = nullptr) noexcept = 0;

  // For workers in another process: appends the results of tasks [begin,
  // end) to `bytes` (in the worker), and stores them from `bytes` (in the
  // caller). Calls without results carry nothing.
  virtual void save_results(std::size_t /*begin*/, std::size_t /*end*/, std::string& /*bytes*/) const {}
  // Throws xjob::error if `bytes` does not hold exactly those results.
  virtual void load_results(std::size_t /*begin*/, std::size_t /*end*/, std::string_view /*bytes*/) {}
  // Empty if the results can leave a worker process; else why not.
  [[nodiscard]] virtual std::string results_stay_in_process() const { return {}; }
  // Whether save_results moves the results out (a reduction's subtrees, as
  // a worker process sends them away), so that a worker that also needs
  // them (a rank of an MPI job) loads them back.
  [[nodiscard]] virtual bool saving_moves_results() const noexcept { return false; }

  // For workers that share no memory with the caller (ranks of an MPI job,
  // see backend_capabilities::spans_machines): what tasks [begin, end)
  // wrote in place (map_chunks' output chunks), appended to `bytes` where
  // they ran, and written from `bytes` everywhere else. Calls that write
  // nothing in place carry nothing. Throws xjob::error if `bytes` does not
  // hold exactly those outputs.
  virtual void save_outputs(std::size_t /*begin*/, std::size_t /*end*/, std::string& /*bytes*/) const {}
  virtual void load_outputs(std::size_t /*begin*/, std::size_t /*end*/, std::string_view /*bytes*/) {}

  // Where the results (outputs) of tasks [begin, end) lie as the bytes that
  // would travel, if they lie so contiguously: trivially copyable results in
  // the caller's vector, neighbouring chunks of a contiguous output. A
  // backend may then move those bytes directly instead of through
  // save/load. Empty if not (save/load carry them); the same on every rank
  // for the same call. What lies in place is not also saved.
  [[nodiscard]] virtual std::span<std::byte> results_in_place(std::size_t /*begin*/, std::size_t /*end*/) { return {}; }
  [[nodiscard]] virtual std::span<std::byte> outputs_in_place(std::size_t /*begin*/, std::size_t /*end*/) { return {}; }
};

// Results that are written in place and need no carrying (void tasks, or
// side effects in shared memory).
struct no_results {
  void save(std::size_t, std::size_t, std::string&) const {}
  void load(std::size_t, std::size_t, std::string_view) {}
  [[nodiscard]] std::string stays_in_process() const { return {}; }
};

// The usual implementation: `run_one(i)` per task, the failing index kept;
// `results` carries what the tasks stored (see result_codec.hpp), and what
// they wrote in place if it has save_outputs/load_outputs too.
template <class RunOne, class Results = no_results>
class task_loop final : public task_runner {
 public:
  explicit task_loop(RunOne run_one, Results results = {})
      : run_one_(std::move(run_one)), results_(std::move(results)) {}

  batch_outcome run(std::size_t begin, std::size_t end, std::atomic<bool> const& stop,
                    std::atomic<std::size_t>* current_task) noexcept override {
    std::size_t i = begin;
    try {
      for (; i < end && !stop.load(std::memory_order_relaxed); ++i) {
        if (current_task != nullptr) current_task->store(i, std::memory_order_relaxed);
        run_one_(i);
      }
    } catch (...) {
      return {i, describe_current_exception(i)};
    }
    return {i, std::nullopt};
  }

  void save_results(std::size_t begin, std::size_t end, std::string& bytes) const override {
    results_.save(begin, end, bytes);
  }
  void load_results(std::size_t begin, std::size_t end, std::string_view bytes) override {
    results_.load(begin, end, bytes);
  }
  [[nodiscard]] std::string results_stay_in_process() const override { return results_.stays_in_process(); }
  void save_outputs(std::size_t begin, std::size_t end, std::string& bytes) const override {
    if constexpr (requires { results_.save_outputs(begin, end, bytes); }) results_.save_outputs(begin, end, bytes);
  }
  void load_outputs(std::size_t begin, std::size_t end, std::string_view bytes) override {
    if constexpr (requires { results_.load_outputs(begin, end, bytes); }) results_.load_outputs(begin, end, bytes);
  }
  std::span<std::byte> results_in_place(std::size_t begin, std::size_t end) override {
    if constexpr (requires { results_.in_place(begin, end); }) return results_.in_place(begin, end);
    return {};
  }
  std::span<std::byte> outputs_in_place(std::size_t begin, std::size_t end) override {
    if constexpr (requires { results_.outputs_in_place(begin, end); }) return results_.outputs_in_place(begin, end);
    return {};
  }

 private:
  RunOne run_one_;
  Results results_;
};

// How a worker process that started before the call (a warm worker of the
// processes backend) runs it: a function of the program, found there by its
// code address, rebuilds the call's tasks from `payload` and the call's
// shared memory, then hands them to `loop`, which runs batches until the
// call is done. The front end makes one only for callables without
// captures: a closure's state exists only in the caller.
class remote_loop {
 public:
  virtual void run(task_runner& runner, std::size_t task_count) = 0;

 protected:
  ~remote_loop() = default;
};

// Memory of the caller that a warm worker maps: a memfd or file mapping
// (see mapped_region), passed as a descriptor.
struct shared_mapping {
  int fd = -1;            // the caller's descriptor, still owned by the mapping
  std::uint64_t id = 0;   // unique in the caller while the mapping lives
  std::size_t bytes = 0;  // mapped length
  bool writable = true;
};

// Rebuilds and runs a call in a warm worker. `mappings[i]` is where the
// call's shared_mapping i is mapped there.
using remote_entry = void (*)(std::string_view payload, std::span<std::byte* const> mappings, remote_loop& loop);

struct remote_form {
  remote_entry entry = nullptr;
  std::string payload;
  std::vector<shared_mapping> mappings;
};

}  // namespace xjob::detail
