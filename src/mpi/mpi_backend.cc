// "mpi": a call's tasks spread over the ranks of an MPI job (see
// <xjob/mpi.hpp>). Each rank runs its share on a local backend, as a call
// of its own over the same tasks (its "share"), fed one range at a time
// through its dispatch source (batch_call::dispatch):
//   1. a static block: the first three quarters of the tasks, cut evenly by
//      rank, so that equal ranks need no message to start;
//   2. the last quarter in pieces claimed from a counter on rank 0
//      (MPI_Fetch_and_op, passive target: rank 0 is not interrupted), so a
//      slower rank takes fewer; a rank that fails claims the rest at once,
//      which stops the others at their next claim;
//   3. the exchange, the call's only collective steps: every rank's outcome
//      (Allgather, Allgatherv), then, if every rank succeeded, each rank's
//      results and in-place outputs (Bcast from each rank in turn, in
//      pieces below MPI's 2 GiB count limit), loaded where they did not run;
//   4. every rank's batches reported to the caller's call, in task order:
//      only now, since a reduction takes what is reported (folding it into
//      the same fixed tree as on one machine) and it must be sent first.
// Every MPI call of a call is made by the thread that runs it (the local
// backend's workers make none): MPI_THREAD_SERIALIZED is enough.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <xjob/backend_author.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>

#include "world.hpp"

namespace xjob::mpi {
namespace {

using detail::check;

// The most bytes one MPI_Bcast carries (its count is an int): 1 GiB, or
// XJOB_MPI_MAX_MESSAGE_BYTES (at least 1), which lets a test split small
// messages as a 2 GiB one would be.
std::size_t max_message_bytes() {
  static std::size_t const bytes = [] {
    std::size_t value = std::size_t(1) << 30;
    if (char const* text = std::getenv("XJOB_MPI_MAX_MESSAGE_BYTES"); text != nullptr) {
      char* end = nullptr;
      unsigned long long const parsed = std::strtoull(text, &end, 10);
      if (end != text && *end == '\0' && parsed > 0 && parsed <= value) value = static_cast<std::size_t>(parsed);
    }
    return value;
  }();
  return bytes;
}

// Exchange buffers up to this size are kept between calls.
constexpr std::size_t kept_buffer_bytes = std::size_t(64) << 20;

// The share of a call's tasks handed out on demand rather than in blocks.
constexpr std::size_t tail_share_divisor = 4;

// How a rank's part of a call ended.
enum class ending : std::uint8_t { succeeded, cancelled, task_failed, worker_crashed, timed_out, failed };

// What a rank tells every other at a call's end.
struct rank_report {
  ending how = ending::succeeded;
  std::uint64_t task_index = std::numeric_limits<std::uint64_t>::max();  // of a failure, if it names one
  std::string type_name;                                                  // task_failed
  std::string message;
  std::int64_t pid = 0, signal = 0, exit_status = 0, attempts = 0;  // worker_crashed
  double limit_seconds = 0;                                          // timed_out
  std::uint64_t done = 0;                                            // tasks finished here
  std::vector<std::uint64_t> ranges;                                 // begin, end, ... of what ran here

  [[nodiscard]] bool ok() const noexcept { return how == ending::succeeded; }

  void encode(std::string& bytes) const {
    xjob::detail::encode_values(bytes, static_cast<std::uint8_t>(how), task_index, type_name, message, pid, signal,
                                exit_status, attempts, limit_seconds, done, ranges);
  }
  static rank_report decode(std::string_view bytes) {
    rank_report r;
    std::uint8_t how = 0;
    xjob::detail::decode_values(bytes, "a rank's report of an mpi call", how, r.task_index, r.type_name, r.message,
                                r.pid, r.signal, r.exit_status, r.attempts, r.limit_seconds, r.done, r.ranges);
    if (how > static_cast<std::uint8_t>(ending::failed)) throw error("a rank's report of an mpi call is malformed");
    r.how = static_cast<ending>(how);
    return r;
  }
};

// Describes the local backend's own failure (not a task's).
rank_report describe_backend_failure(std::exception_ptr const& failure) {
  rank_report r;
  try {
    std::rethrow_exception(failure);
  } catch (worker_crashed const& e) {
    r.how = ending::worker_crashed;
    if (e.task_index()) r.task_index = *e.task_index();
    r.pid = e.pid();
    r.signal = e.signal();
    r.exit_status = e.exit_status();
    r.attempts = e.attempts();
  } catch (timeout_error const& e) {
    r.how = ending::timed_out;
    if (e.task_index()) r.task_index = *e.task_index();
    r.message = e.what();
    r.limit_seconds = e.limit().count();
  } catch (std::exception const& e) {
    r.how = ending::failed;
    r.message = e.what();
  } catch (...) {
    r.how = ending::failed;
    r.message = "an exception not derived from std::exception";
  }
  return r;
}

// Bcast of `size` bytes at `data` from `root`, in pieces MPI can count.
void broadcast_bytes(char* data, std::size_t size, int root, MPI_Comm comm) {
  std::size_t const most = max_message_bytes();
  for (std::size_t at = 0; at < size; at += most) {
    int const piece = static_cast<int>(std::min(most, size - at));
    check(MPI_Bcast(data + at, piece, MPI_BYTE, root, comm), "MPI_Bcast");
  }
}

class mpi_backend final : public backend {
 public:
  mpi_backend(backend_settings const& settings, session& owner)
      : state_(&session_access::of(owner)),
        local_(make_backend(state_->options.local_backend, settings)),
        local_capabilities_(local_->capabilities()) {}

  [[nodiscard]] backend_capabilities capabilities() const noexcept override {
    backend_capabilities c = local_capabilities_;
    c.results_cross_address_spaces = true;
    c.spans_machines = true;
    return c;
  }

  void run(batch_call& call) override {
    session* const live = session::current();
    if (live == nullptr || &session_access::of(*live) != state_)
      throw error("backend \"mpi\" was made with an xjob::mpi::session that has ended");
    bool idle = false;
    if (!state_->call_running.compare_exchange_strong(idle, true))
      throw error("backend \"mpi\" runs one call at a time in a process, and one is running: a call cannot start "
                  "inside a task of another mpi call or beside it on another thread, since every rank must reach "
                  "every call in the same order; inside tasks, use a local backend such as \"threads\"");
    struct running_flag {
      std::atomic<bool>& flag;
      ~running_flag() { flag.store(false); }
    } const running{state_->call_running};

    rank_report const mine = run_share(call);
    std::vector<rank_report> const reports = exchange_reports(mine);
    throw_if_any_failed(call, reports);
    exchange_results(call, reports);
    // Only now is any batch reported to the call (a reduction takes what it
    // reports, so it must not be taken before it was sent), in task order.
    std::vector<batch_range> done;
    for (rank_report const& r : reports)
      for (std::size_t i = 0; i + 1 < r.ranges.size(); i += 2) done.push_back({r.ranges[i], r.ranges[i + 1]});
    std::ranges::sort(done, {}, &batch_range::begin);
    for (batch_range const range : done) call.record_done(range);
  }

 private:
  // Runs this rank's block and its claims on the tail, as a call of its
  // own over the same tasks (see run()); returns how it went and what ran.
  rank_report run_share(batch_call& call) {
    session::state& w = *state_;
    std::size_t const n = call.task_count();
    auto const ranks = static_cast<std::size_t>(w.size);
    auto const me = static_cast<std::size_t>(w.rank);
    std::size_t const tail = ranks > 1 ? n / tail_share_divisor : 0;
    std::size_t const statics = n - tail;
    std::size_t const piece = std::max<std::size_t>(1, tail / (4 * ranks));
    auto block_start = [&](std::size_t r) { return statics / ranks * r + std::min(r, statics % ranks); };

    batch_call::settings settings;
    settings.workers = call.worker_count();
    settings.batch_size = call.options().batch_size;
    settings.target_batch_duration = call.options().target_batch_duration;
    settings.remote = call.remote();
    settings.stop = call.options().stop;
    batch_call share(call.runner(), n, std::move(settings));
    share.start(state_->options.local_backend);

    std::vector<std::uint64_t> ran;
    std::exception_ptr backend_failure;
    auto run_here = [&](batch_range range) {
      if (range.empty()) return true;
      if (share.stopped()) return false;
      share.dispatch(range);
      try {
        local_->run(share);
      } catch (...) {
        backend_failure = std::current_exception();
        return false;
      }
      if (share.stopped()) return false;
      ran.push_back(range.begin);
      ran.push_back(range.end);
      return true;
    };

    claimed_ = 0;
    bool ok = !call.cancelled() && run_here({block_start(me), block_start(me + 1)});
    while (ok && tail > 0) {
      std::uint64_t const before = claim(piece);
      std::uint64_t const first = before - w.counter_base;
      if (first >= tail) break;
      ok = run_here({statics + first, statics + std::min<std::uint64_t>(first + piece, tail)});
    }
    // The others find the tail gone at their next claim.
    if (!ok && tail > 0) (void)claim(tail);

    rank_report report;
    if (backend_failure) {
      report = describe_backend_failure(backend_failure);
    } else if (share.failed()) {
      try {
        share.rethrow_if_failed();
      } catch (task_error const& e) {
        report.how = ending::task_failed;
        report.task_index = e.task_index();
        report.type_name = e.type_name();
        report.message = e.message();
        local_task_failure_ = e.original();
      } catch (std::exception const& e) {
        report.how = ending::failed;
        report.message = e.what();
      }
    } else if (!ok) {
      report.how = ending::cancelled;
    } else {
      report.ranges = std::move(ran);
    }
    report.done = share.done_count();
    return report;
  }

  // Adds `count` to the tail counter on rank 0; returns its value before.
  std::uint64_t claim(std::uint64_t count) {
    std::uint64_t before = 0;
    check(MPI_Fetch_and_op(&count, &before, MPI_UINT64_T, 0, 0, MPI_SUM, state_->counter_window),
          "MPI_Fetch_and_op");
    check(MPI_Win_flush(0, state_->counter_window), "MPI_Win_flush");
    claimed_ += count;
    return before;
  }

  // Every rank's report, by rank. Also moves the tail counter's base past
  // this call: every claim of the call was made before its rank got here,
  // and none of the next call's can be made before every rank has.
  std::vector<rank_report> exchange_reports(rank_report const& mine) {
    session::state& w = *state_;
    std::string bytes;
    mine.encode(bytes);
    std::uint64_t const own[2] = {bytes.size(), claimed_};
    std::vector<std::uint64_t> all(2 * static_cast<std::size_t>(w.size));
    check(MPI_Allgather(own, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, w.comm), "MPI_Allgather");
    std::vector<int> counts(static_cast<std::size_t>(w.size));
    std::vector<int> offsets(static_cast<std::size_t>(w.size));
    int total = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      w.counter_base += all[2 * r + 1];
      counts[r] = static_cast<int>(all[2 * r]);
      offsets[r] = total;
      total += counts[r];
    }
    std::string gathered(static_cast<std::size_t>(total), '\0');
    check(MPI_Allgatherv(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, gathered.data(), counts.data(),
                         offsets.data(), MPI_BYTE, w.comm),
          "MPI_Allgatherv");
    std::vector<rank_report> reports;
    for (std::size_t r = 0; r < counts.size(); ++r)
      reports.push_back(rank_report::decode(std::string_view(gathered).substr(
          static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(counts[r]))));
    return reports;
  }

  // The same exception on every rank: the failure of the lowest task index
  // (then the lowest rank); else xjob::cancelled if any rank stopped.
  void throw_if_any_failed(batch_call& call, std::vector<rank_report> const& reports) {
    session::state& w = *state_;
    int chosen = -1;
    for (int r = 0; r < w.size; ++r) {
      rank_report const& report = reports[static_cast<std::size_t>(r)];
      if (report.ok() || report.how == ending::cancelled) continue;
      if (chosen < 0 || report.task_index < reports[static_cast<std::size_t>(chosen)].task_index) chosen = r;
    }
    if (chosen >= 0) {
      rank_report const& f = reports[static_cast<std::size_t>(chosen)];
      std::string const where = w.where(chosen);
      std::optional<std::size_t> const task =
          f.task_index == std::numeric_limits<std::uint64_t>::max() ? std::nullopt
                                                                     : std::optional<std::size_t>(f.task_index);
      switch (f.how) {
        case ending::task_failed:
          throw task_error(f.task_index, f.type_name, f.message, chosen == w.rank ? local_task_failure_ : nullptr,
                           where);
        case ending::worker_crashed:
          throw worker_crashed(task, static_cast<int>(f.pid), static_cast<int>(f.signal),
                               static_cast<int>(f.exit_status), static_cast<int>(f.attempts), where);
        case ending::timed_out:
          throw timeout_error(fmt::format("{} ({})", f.message, where), task,
                              std::chrono::duration<double>(f.limit_seconds));
        default:
          throw error(fmt::format("{} ({})", f.message, where));
      }
    }
    if (std::ranges::any_of(reports, [](rank_report const& r) { return r.how == ending::cancelled; })) {
      std::uint64_t done = 0;
      for (rank_report const& r : reports) done += r.done;
      throw cancelled(static_cast<std::size_t>(done), call.task_count());
    }
  }

  // Each rank's results and in-place outputs to every other, loaded there:
  // what lies in place as it travels (numbers in the result vector, chunks
  // of a contiguous output) is broadcast straight from and into where it
  // lies; the rest is saved, broadcast and loaded.
  void exchange_results(batch_call& call, std::vector<rank_report> const& reports) {
    session::state& w = *state_;
    task_runner& runner = call.runner();
    std::exception_ptr failure;  // thrown after the last Bcast, which every rank must reach
    std::string& own = send_buffer_;
    constexpr std::uint64_t not_sent = std::numeric_limits<std::uint64_t>::max();
    for (int root = 0; root < w.size; ++root) {
      std::vector<std::uint64_t> const& ranges = reports[static_cast<std::size_t>(root)].ranges;
      bool const mine = root == w.rank;
      std::uint64_t size = 0;
      if (mine) {
        try {
          own.clear();
          save(runner, ranges, own);
          size = own.size();
        } catch (...) {
          failure = std::current_exception();
          size = not_sent;
        }
      }
      check(MPI_Bcast(&size, 1, MPI_UINT64_T, root, w.comm), "MPI_Bcast");
      if (size == not_sent) {
        if (!failure)
          failure = std::make_exception_ptr(
              error(fmt::format("the results of {} could not be sent (it says why)", w.where(root))));
        continue;
      }
      char* bytes = own.data();
      if (!mine) {
        if (size > receive_capacity_) {
          receive_buffer_ = std::make_unique_for_overwrite<char[]>(size);
          receive_capacity_ = size;
        }
        bytes = receive_buffer_.get();
      }
      broadcast_bytes(bytes, size, root, w.comm);
      for (std::size_t i = 0; i + 1 < ranges.size(); i += 2) {
        for (std::span<std::byte> const in_place :
             {runner.results_in_place(ranges[i], ranges[i + 1]), runner.outputs_in_place(ranges[i], ranges[i + 1])})
          broadcast_bytes(reinterpret_cast<char*>(in_place.data()), in_place.size(), root, w.comm);
      }
      // Saving may move results out (a reduction's subtrees, as a worker
      // process sends them away): they come back here too.
      if (failure || (mine && !runner.saving_moves_results())) continue;
      try {
        load(runner, ranges, std::string_view(bytes, size), root, !mine);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    // The buffers stay for the next call (fresh ones cost a page fault per
    // 4 KiB each call), unless large.
    if (own.capacity() > kept_buffer_bytes) std::string().swap(own);
    if (receive_capacity_ > kept_buffer_bytes) {
      receive_buffer_.reset();
      receive_capacity_ = 0;
    }
    if (failure) std::rethrow_exception(failure);
  }

  // Appends what ran here and does not lie in place: per range, the byte
  // counts of its results and its outputs, then both.
  static void save(task_runner& runner, std::vector<std::uint64_t> const& ranges, std::string& own) {
    for (std::size_t i = 0; i + 1 < ranges.size(); i += 2) {
      std::size_t const at = own.size();
      own.append(2 * sizeof(std::uint64_t), '\0');
      if (runner.results_in_place(ranges[i], ranges[i + 1]).empty()) runner.save_results(ranges[i], ranges[i + 1], own);
      std::uint64_t const results_bytes = own.size() - at - 2 * sizeof(std::uint64_t);
      if (runner.outputs_in_place(ranges[i], ranges[i + 1]).empty()) runner.save_outputs(ranges[i], ranges[i + 1], own);
      std::uint64_t const outputs_bytes = own.size() - at - 2 * sizeof(std::uint64_t) - results_bytes;
      std::memcpy(own.data() + at, &results_bytes, sizeof results_bytes);
      std::memcpy(own.data() + at + sizeof results_bytes, &outputs_bytes, sizeof outputs_bytes);
    }
  }

  // Loads what rank `from` saved (see save): its results, and its outputs
  // if `with_outputs` (they are in place where they were written).
  void load(task_runner& runner, std::vector<std::uint64_t> const& ranges, std::string_view bytes,
            int from, bool with_outputs) {
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < ranges.size(); i += 2) {
      std::uint64_t lengths[2] = {0, 0};
      if (bytes.size() - at < sizeof lengths)
        throw error(fmt::format("the results of {} arrived short", state_->where(from)));
      std::memcpy(lengths, bytes.data() + at, sizeof lengths);
      at += sizeof lengths;
      if (bytes.size() - at < lengths[0] + lengths[1])
        throw error(fmt::format("the results of {} arrived short", state_->where(from)));
      if (runner.results_in_place(ranges[i], ranges[i + 1]).empty())
        runner.load_results(ranges[i], ranges[i + 1], bytes.substr(at, lengths[0]));
      if (with_outputs && runner.outputs_in_place(ranges[i], ranges[i + 1]).empty())
        runner.load_outputs(ranges[i], ranges[i + 1], bytes.substr(at + lengths[0], lengths[1]));
      at += lengths[0] + lengths[1];
    }
  }

  session::state* state_;
  std::unique_ptr<backend> local_;
  backend_capabilities local_capabilities_;
  std::uint64_t claimed_ = 0;               // by this rank in the current call
  std::exception_ptr local_task_failure_;  // the exception a task threw here
  // What this rank sends and receives in exchange_results.
  std::string send_buffer_;
  std::unique_ptr<char[]> receive_buffer_;
  std::size_t receive_capacity_ = 0;
};

std::unique_ptr<backend> make_mpi_backend(backend_settings const& settings) {
  session* const live = session::current();
  if (live == nullptr)
    throw invalid_argument(
        "backend \"mpi\" needs a live xjob::mpi::session: make one at the start of main "
        "(xjob::mpi::session mpi(argc, argv);) and start the program with mpirun");
  return std::make_unique<mpi_backend>(settings, *live);
}

struct registrar {
  registrar() { register_backend("mpi", &make_mpi_backend); }
} const registered;

}  // namespace
}  // namespace xjob::mpi
