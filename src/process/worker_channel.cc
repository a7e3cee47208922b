#include "worker_channel.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>

#include <xjob/errors.hpp>

#include "src/core/futex.hpp"
#include "frame_channel.hpp"

namespace xjob::detail::process {


void record_sender::send(record_kind kind, std::size_t begin, std::size_t end, std::string_view payload) noexcept {
  record_header const header{kind, 0, begin, end, payload.size()};
  put({reinterpret_cast<char const*>(&header), sizeof header});
  put(payload);
  std::uint64_t const unread =
      slot_.written.load(std::memory_order_relaxed) - slot_.consumed.load(std::memory_order_relaxed);
  if (prompt_ || kind == record_kind::failure || unread > ring_bytes / 2) wake_caller();
}

void record_sender::send_failure(std::size_t task, std::string_view type_name, std::string_view message) noexcept {
  try {
    scratch_.clear();
    encode_failure(scratch_, {task, std::string(type_name), std::string(message)});
  } catch (...) {
    scratch_.clear();  // out of memory: the failure still goes, without words
  }
  send(record_kind::failure, task, task + 1, scratch_);
}

void record_sender::put(std::string_view bytes) noexcept {
  while (!bytes.empty()) {
    std::uint64_t const written = slot_.written.load(std::memory_order_relaxed);
    std::uint64_t const free = ring_bytes - (written - slot_.consumed.load(std::memory_order_acquire));
    if (free == 0) {
      // Full: make sure the caller drains, then sleep until it has.
      wake_caller();
      slot_.writer_sleeping.store(1, std::memory_order_seq_cst);
      if (slot_.consumed.load(std::memory_order_seq_cst) == written - ring_bytes)
        try {
          (void)futex_wait(slot_.writer_sleeping, 1, deadline_after(std::chrono::milliseconds(20)));
        } catch (...) {
          // Cannot fail on a word of the ring's own shared block; were it to,
          // the loop just looks again.
        }
      slot_.writer_sleeping.store(0, std::memory_order_relaxed);
      continue;
    }
    std::size_t const count = static_cast<std::size_t>(std::min<std::uint64_t>(free, bytes.size()));
    std::size_t const at = static_cast<std::size_t>(written % ring_bytes);
    std::size_t const first = std::min(count, ring_bytes - at);
    std::memcpy(ring_ + at, bytes.data(), first);
    std::memcpy(ring_, bytes.data() + first, count - first);
    // seq_cst, with the caller's store to caller_sleeping before its last
    // look at `written`: either it sees these bytes, or we see it sleeping.
    slot_.written.store(written + count, std::memory_order_seq_cst);
    bytes.remove_prefix(count);
  }
}

void record_sender::wake_caller() noexcept {
  if (header_.caller_sleeping.load(std::memory_order_seq_cst) != 0 &&
      header_.caller_sleeping.exchange(0, std::memory_order_relaxed) != 0) {
    std::uint64_t const one = 1;
    [[maybe_unused]] ssize_t const ignored = write(wake_fd_, &one, sizeof one);
  }
}

bool record_receiver::drain() {
  std::uint64_t const written = slot_->written.load(std::memory_order_acquire);
  std::uint64_t const consumed = slot_->consumed.load(std::memory_order_relaxed);
  if (written == consumed) return false;
  if (parsed_ > 0) {
    pending_.erase(0, parsed_);
    parsed_ = 0;
  }
  std::size_t const count = static_cast<std::size_t>(written - consumed);
  std::size_t const at = static_cast<std::size_t>(consumed % ring_bytes);
  std::size_t const first = std::min(count, ring_bytes - at);
  pending_.append(reinterpret_cast<char const*>(ring_ + at), first);
  pending_.append(reinterpret_cast<char const*>(ring_), count - first);
  slot_->consumed.store(written, std::memory_order_seq_cst);
  if (slot_->writer_sleeping.load(std::memory_order_seq_cst) != 0 &&
      slot_->writer_sleeping.exchange(0, std::memory_order_relaxed) != 0)
    futex_wake(slot_->writer_sleeping, 1);
  return true;
}

std::optional<record_receiver::record> record_receiver::next() {
  std::size_t const available = pending_.size() - parsed_;
  if (available < sizeof(record_header)) return std::nullopt;
  record header;
  std::memcpy(&header.header, pending_.data() + parsed_, sizeof(record_header));
  if (available - sizeof(record_header) < header.header.payload_bytes) return std::nullopt;
  header.payload = std::string_view(pending_).substr(parsed_ + sizeof(record_header),
                                                     static_cast<std::size_t>(header.header.payload_bytes));
  parsed_ += sizeof(record_header) + static_cast<std::size_t>(header.header.payload_bytes);
  return header;
}

void record_receiver::reset() noexcept {
  pending_.clear();
  parsed_ = 0;
}

void run_batches(batch_call& call, record_sender& sender, worker_slot& slot, int worker, batch_range retry,
                 bool per_task) noexcept {
  std::string bytes;
  batch_cursor cursor{worker, 1, {}};
  // Runs [begin, end) and sends what completed; false if a task failed.
  // Sends the results of [begin, end), which are then no longer held.
  auto send_part = [&](std::size_t begin, std::size_t end) {
    if (end > begin) {
      bytes.clear();
      call.runner().save_results(begin, end, bytes);
      sender.send(record_kind::results, begin, end, bytes);
    }
    slot.held_begin.store(end, std::memory_order_relaxed);
  };
  // Runs [begin, end) and, when `send` says so or a task failed, sends the
  // tasks completed from `unsent` on (and the failure); returns the outcome.
  auto run_part = [&](std::size_t begin, std::size_t end, std::size_t unsent, bool send) {
    slot.in_task.store(1, std::memory_order_relaxed);
    batch_outcome outcome = call.execute_batch({begin, end}, &slot.current_task);
    slot.in_task.store(0, std::memory_order_relaxed);
    if (send || outcome.failure) send_part(unsent, outcome.completed_end);
    if (outcome.failure)
      sender.send_failure(outcome.failure->task_index, outcome.failure->type_name, outcome.failure->message);
    return outcome;
  };
  auto run_batch = [&](batch_range batch, bool tune) {
    slot.held_begin.store(batch.begin, std::memory_order_relaxed);
    slot.held_end.store(batch.end, std::memory_order_relaxed);
    std::size_t completed_end = batch.begin;
    bool failed = false;
    if (per_task || (sender.prompt() && batch.size() > 1)) {
      // Task by task: sent after each (per_task), or at least every
      // progress_interval, so that progress is not held until the batch ends.
      std::size_t unsent = batch.begin;
      auto sent_at = std::chrono::steady_clock::now();
      for (std::size_t task = batch.begin; task < batch.end && !failed; ++task) {
        bool const send = per_task || task + 1 == batch.end ||
                          std::chrono::steady_clock::now() - sent_at >= batch_call::progress_interval;
        batch_outcome const outcome = run_part(task, task + 1, unsent, send);
        completed_end = outcome.completed_end;
        failed = outcome.failure.has_value();
        if (send || failed) {
          unsent = completed_end;
          sent_at = std::chrono::steady_clock::now();
        }
        if (completed_end == task) break;  // stopped
      }
      if (!failed) send_part(unsent, completed_end);
    } else {
      batch_outcome const outcome = run_part(batch.begin, batch.end, batch.begin, true);
      completed_end = outcome.completed_end;
      failed = outcome.failure.has_value();
    }
    slot.held_end.store(slot.held_begin.load(std::memory_order_relaxed), std::memory_order_relaxed);
    if (tune) call.tune_batch_size(cursor, batch, completed_end);
    return !failed;
  };
  try {
    if (!retry.empty() && !call.stopped()) (void)run_batch(retry, false);
    for (;;) {
      batch_range const batch = call.next_batch(cursor);
      if (batch.empty() || !run_batch(batch, true)) break;
    }
  } catch (...) {
    // A result that cannot be encoded (out of memory, a throwing save()).
    task_failure failure = describe_current_exception(slot.held_begin.load(std::memory_order_relaxed));
    call.cancel();
    sender.send_failure(failure.task_index, failure.type_name,
                        "its result could not be sent back from the worker: " + failure.message);
    slot.in_task.store(0, std::memory_order_relaxed);
    slot.held_end.store(slot.held_begin.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}


}  // namespace xjob::detail::process
