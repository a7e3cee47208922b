// What a "processes" call shares with its worker processes: per worker, where
// it is (the batch it holds, the task it runs) and a one-way ring of bytes
// through which it sends results and failures to the caller. The worker
// writes without system calls; it wakes the caller (an eventfd) only when
// the caller sleeps and wants to hear: promptly for calls someone follows,
// else when the ring is half full.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <xjob/batch_call.hpp>

namespace xjob::detail::process {

inline constexpr std::size_t ring_bytes = std::size_t(512) << 10;

struct alignas(64) call_header {
  std::atomic<std::uint32_t> caller_sleeping{0};
  // Where the call's batches are taken (see batch_call::dispatch_state).
  batch_call::dispatch_state dispatch;
};

struct alignas(64) worker_slot {
  // Written by the worker; read by the caller, also after the worker died.
  std::atomic<std::size_t> current_task{0};
  std::atomic<std::uint32_t> in_task{0};
  // The batch the worker holds: taken, and its results not yet all sent.
  std::atomic<std::size_t> held_begin{0};
  std::atomic<std::size_t> held_end{0};
  // Written by the caller before the worker starts: tasks to run first (a
  // retry of what a dead worker held).
  std::size_t retry_begin = 0;
  std::size_t retry_end = 0;
  alignas(64) std::atomic<std::uint64_t> written{0};   // ring bytes published
  alignas(64) std::atomic<std::uint64_t> consumed{0};  // ring bytes the caller took
  std::atomic<std::uint32_t> writer_sleeping{0};       // futex word
};

enum class record_kind : std::uint32_t { results = 1, failure = 2 };

struct record_header {
  record_kind kind = record_kind::results;
  std::uint32_t reserved = 0;
  std::uint64_t begin = 0;  // results: the tasks [begin, end); failure: the task
  std::uint64_t end = 0;
  std::uint64_t payload_bytes = 0;
};

// The worker's end.
class record_sender {
 public:
  // `wake_fd`: the caller's eventfd, as this process has it.
  record_sender(call_header& header, worker_slot& slot, std::byte* ring, bool prompt, int wake_fd) noexcept
      : header_(header), slot_(slot), ring_(ring), prompt_(prompt), wake_fd_(wake_fd) {}
  // Whether someone follows the call (see batch_call::reports_progress).
  [[nodiscard]] bool prompt() const noexcept { return prompt_; }

  // Blocks while the ring is full.
  void send(record_kind kind, std::size_t begin, std::size_t end, std::string_view payload) noexcept;
  // A failure: the task's exception type and message.
  void send_failure(std::size_t task, std::string_view type_name, std::string_view message) noexcept;

 private:
  void put(std::string_view bytes) noexcept;
  void wake_caller() noexcept;

  call_header& header_;
  worker_slot& slot_;
  std::byte* ring_;
  bool prompt_;
  int wake_fd_;
  std::string scratch_;
};

// The caller's end, one per worker.
class record_receiver {
 public:
  struct record {
    record_header header;
    std::string_view payload;
  };

  record_receiver(worker_slot& slot, std::byte* ring) noexcept : slot_(&slot), ring_(ring) {}

  // Takes what the worker published; true if there was anything.
  bool drain();
  // The next whole record (valid until the next call), or nothing.
  std::optional<record> next();
  [[nodiscard]] bool has_unpublished_data() const noexcept {
    return slot_->written.load(std::memory_order_seq_cst) != slot_->consumed.load(std::memory_order_relaxed);
  }
  // For a fresh worker in the same slot: forgets a dead worker's partial record.
  void reset() noexcept;

 private:
  worker_slot* slot_;
  std::byte* ring_;
  std::string pending_;
  std::size_t parsed_ = 0;
};

// A worker process's part of a call, whatever started the worker: first
// the tasks of `retry` (what a dead worker held), then batches taken from
// the call until none is left or the call stopped. Results go back through
// `sender`; `slot` says what the worker holds and runs. With `per_task`,
// results are sent after each task, so that a worker dying loses only the
// task it was running (retries re-run just that one). When someone follows
// the call (sender.prompt()), a batch's finished tasks are sent at least
// every batch_call::progress_interval, however large the batch. Never throws: a
// result that cannot be encoded is sent as a failure.
void run_batches(batch_call& call, record_sender& sender, worker_slot& slot, int worker, batch_range retry,
                 bool per_task) noexcept;

}  // namespace xjob::detail::process
