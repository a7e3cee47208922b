// A resumable .npy output (shared_array::resume_npy): the unfinished file
// `<path>.partial` and its journal `<path>.journal`, which records the plan
// (shape, dtype, chunked axis, chunk extent) and the chunks whose data are
// durable. A chunk is journaled only after the file was written back
// (msync MS_SYNC, an fdatasync of the file) with it, and every journal record carries a checksum, so
// neither a SIGKILL nor a power cut at any moment leaves a chunk recorded
// that is not on disk.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <xjob/detail/mapped_region.hpp>

namespace xjob::detail {

// How map_chunks cuts a resumable output: the part of the plan the journal
// learns at the first call (the shape and dtype it knows from the start).
struct output_plan {
  std::size_t axis = 0;
  std::size_t chunk_extent = 0;
  friend bool operator==(output_plan const&, output_plan const&) = default;
};

// The journal of one resumable output, locked against every other writer
// while it is open (an fcntl lock: another process, or another resume_npy of
// the same file in this one, is refused; the lock goes with a killed
// process). Thread-safe.
class output_journal {
 public:
  // The journal of a file already complete at its final path: every chunk
  // counts as done and nothing is written.
  output_journal() = default;
  output_journal(output_journal const&) = delete;
  output_journal& operator=(output_journal const&) = delete;
  ~output_journal();

  [[nodiscard]] bool complete() const noexcept { return fd_ < 0; }
  // The plan an earlier call recorded, if any.
  [[nodiscard]] std::optional<output_plan> plan() const;

  // Checks `plan` against the recorded one, or records it durably, and
  // returns the chunks of the call's `chunk_count` not yet journaled, in
  // order. Throws xjob::invalid_argument naming both plans if they differ.
  [[nodiscard]] std::vector<std::size_t> start(output_plan const& plan, std::size_t chunk_count);

  // Chunks [first, end) were written (into the mapping). They are recorded
  // in groups: once the flush interval has passed since the last group, the
  // thread that reports chunks writes the file back to disk (write_back),
  // then records every chunk reported before that began. So a chunk is
  // recorded only once its data are durable, at a cost of one write-back
  // per interval, not per chunk. Throws std::system_error if the file or
  // the journal cannot be written.
  void chunks_written(std::size_t first, std::size_t end);
  // Writes back and records every chunk reported so far.
  void flush();
  // The same, ignoring errors (a call that failed already).
  void flush_quietly() noexcept;

  // How long chunks may wait to be recorded: what a killed run may lose
  // beyond the chunks that were running. XJOB_JOURNAL_INTERVAL_MS sets
  // another (0: at every report), for experiments and tests.
  static constexpr std::chrono::milliseconds default_flush_interval{250};

  // After the output was committed: deletes the journal and unlocks it.
  void finish() noexcept;

 private:
  friend struct resumed_npy;
  std::string describe(output_plan const& plan) const;

  // Appends a record of chunks [first, end); mutex_ held.
  void append_done(std::size_t first, std::size_t end);
  // flush(), flush_mutex_ held.
  void flush_held();

  mutable std::mutex mutex_;
  std::mutex flush_mutex_;  // one write-back at a time
  int fd_ = -1;
  // The .partial file's mapping (the array's, which outlives its journal),
  // written back before chunks are recorded.
  std::byte const* data_ = nullptr;
  std::size_t data_bytes_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> written_;  // reported, not yet recorded
  std::chrono::steady_clock::time_point last_flush_ = std::chrono::steady_clock::now();
  std::chrono::milliseconds flush_interval_ = default_flush_interval;
  std::filesystem::path path_;
  std::string descr_;
  std::vector<std::size_t> shape_;
  std::optional<output_plan> plan_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> done_;  // journaled [first, end) runs
  std::uint64_t header_key_ = 0;  // mixed into each record's checksum
};

// What resume_npy opens: the file's mapping (the final file if it is
// complete, else `<path>.partial`, kept when uncommitted), where its data
// start, and its journal.
struct resumed_npy {
  mapped_region region;
  std::size_t data_offset = 0;
  std::shared_ptr<output_journal> journal;

  // Throws xjob::invalid_argument if an unfinished or complete output at
  // `path` has another shape or dtype (naming both), xjob::error if another
  // writer holds its journal, std::system_error if the files cannot be made.
  [[nodiscard]] static resumed_npy open(std::filesystem::path const& path, std::string const& descr,
                                        std::vector<std::size_t> const& shape, std::size_t element_bytes);
};

}  // namespace xjob::detail
