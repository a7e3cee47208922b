// Warm workers of the processes backend: worker processes started once and
// kept between calls, as loky's reusable executor keeps them for joblib.
// One set per (worker count, start method), shared by every parallel object
// that asks for it; its workers exit after an idle timeout (started again on
// demand) and at exit.
//
// A warm worker started before the call it runs, so it holds none of the
// call's closures: it runs calls that have a remote form (a callable without
// captures; see task_runner.hpp). For each call it is sent, on its channel,
// the call's remote form and descriptors: the call's block (dispatch state,
// its slot and result ring, as a forked worker of the call has them), the
// caller's eventfd, and the shared memory of the call's arrays. It maps
// each mapping once and keeps it until the caller unmaps its own.
//
// Workers are started by one keeper thread that lives as long as the sets:
// a forked worker dies with the thread that forked it (PR_SET_PDEATHSIG),
// which must not be whichever thread made the first call.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <xjob/detail/remote_call.hpp>
#include <xjob/start_method.hpp>

#include "worker_process.hpp"

namespace xjob::detail::warm {

enum class frame : std::uint32_t {
  call = 1,    // caller -> worker: a call_request, then descriptors (eventfd, block, arrays)
  forget = 2,  // caller -> worker: unmap the mapping with this id
  quit = 3,    // caller -> worker: exit
  done = 10,   // worker -> caller: its part of the call is over (empty, or why it could not run)
};

// What a warm worker is sent for one call. The descriptors that come with
// it: the caller's eventfd, then one per mapping (the first is the block).
struct call_request {
  code_address entry;  // the call's remote_entry
  std::string payload;  // or, if large, in the last mapping:
  std::int32_t payload_mapping = -1;
  std::uint64_t payload_bytes = 0;
  std::uint64_t task_count = 0;
  std::int32_t workers = 1;
  std::uint64_t batch_size = 0;  // 0: automatic
  std::int64_t target_batch_ns = 0;
  bool prompt = false;    // report finished batches at once (see record_sender)
  bool per_task = false;  // send results per task (see run_batches)
  std::int32_t worker = 0;
  std::uint64_t retry_begin = 0;
  std::uint64_t retry_end = 0;
  std::uint64_t slots_at = 0;  // where the worker slots and rings start in the block
  std::uint64_t rings_at = 0;
  std::vector<std::uint64_t> mapping_ids;
  std::vector<std::uint64_t> mapping_bytes;
  std::vector<std::uint8_t> mapping_writable;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(entry, payload, payload_mapping, payload_bytes, task_count, workers, batch_size, target_batch_ns, prompt, per_task, worker, retry_begin,
            retry_end, slots_at, rings_at, mapping_ids, mapping_bytes, mapping_writable);
  }
};

class worker_set {
 public:
  worker_set(int size, start_method method);
  worker_set(worker_set const&) = delete;
  worker_set& operator=(worker_set const&) = delete;
  ~worker_set();

  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] start_method method() const noexcept { return method_; }

  // Held by a call for as long as it uses the workers: one call at a time.
  [[nodiscard]] std::unique_lock<std::mutex> try_acquire() { return std::unique_lock(call_mutex_, std::try_to_lock); }
  [[nodiscard]] std::unique_lock<std::mutex> acquire() { return std::unique_lock(call_mutex_); }

  // Worker w (0 <= w < size), started first if it is not alive: one that
  // died or exited since is reaped and replaced. Needs the call lock.
  // Throws what starting a worker throws.
  worker_process& ready_worker(std::size_t w);
  // Worker w as it is. Needs the call lock.
  [[nodiscard]] worker_process& worker(std::size_t w) { return workers_[w]; }

  // Sends a frame to worker w. Needs the call lock, or is the keeper's.
  [[nodiscard]] bool send(std::size_t w, frame kind, std::string_view payload, std::span<int const> fds = {});
  // Notes the mappings a call handed the workers, so they are told when
  // the caller unmaps them.
  void handed_out(std::span<std::uint64_t const> ids);
  // The call is over: the idle clock starts, for `idle_timeout`.
  void call_ended(std::chrono::duration<double> idle_timeout);

  // The pids of the workers alive now.
  [[nodiscard]] std::vector<int> pids();
  // Tells every worker that was handed mapping `id` to unmap it.
  void forget(std::uint64_t id) noexcept;
  // Stops the workers (quit, then SIGKILL after a grace period): with
  // `always` now (after a call in progress), else if the set is not in a
  // call and has been idle past its timeout. Returns whether it stopped them.
  bool retire(bool always) noexcept;
  // When the idle timeout ends, or nothing if no worker is alive.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> idle_deadline();

 private:
  // Sends a frame to `worker`, with state_mutex_ held: the one way frames
  // go out, so that two never interleave on a channel.
  static bool send_locked(worker_process const& worker, frame kind, std::string_view payload,
                          std::span<int const> fds = {}) noexcept;

  int const size_;
  start_method const method_;
  std::mutex call_mutex_;
  std::vector<worker_process> workers_;  // guarded by call_mutex_
  std::mutex state_mutex_;               // guards what follows, and sends
  std::vector<std::uint64_t> handed_;    // sorted ids of mappings the workers may hold
  std::chrono::steady_clock::time_point idle_since_{};
  std::chrono::duration<double> idle_timeout_ = std::chrono::seconds(300);
};

// The set for `size` workers started by `method`, made on first use; null
// in a process that is a forked copy of the one that made the sets (a
// worker, or a fork of the program), which must not use its workers.
[[nodiscard]] std::shared_ptr<worker_set> find_worker_set(int size, start_method method);

}  // namespace xjob::detail::warm
