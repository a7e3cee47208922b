#include "warm_workers.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include <xjob/batch_call.hpp>
#include <xjob/cpu_count.hpp>
#include <xjob/detail/fork_shared.hpp>
#include <xjob/detail/mapped_region.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/process_workers.hpp>
#include <xjob/worker.hpp>

#include "src/process/frame_channel.hpp"
#include "src/process/worker_channel.hpp"
#include "src/process/worker_launcher.hpp"

namespace xjob::detail::warm {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr char const* entry_name = "xjob.processes";

// ---------------------------------------------------------------- the worker

struct worker_mapping {
  std::byte* base = nullptr;
  std::size_t bytes = 0;
};

// A call as the worker runs it: batches of the call the caller made, taken
// from the shared dispatch state in the block.
class warm_loop final : public remote_loop {
 public:
  warm_loop(call_request const& request, std::byte* block, int wake_fd)
      : request_(request),
        header_(*reinterpret_cast<process::call_header*>(block)),
        slot_(*reinterpret_cast<process::worker_slot*>(block + request.slots_at +
                                                       static_cast<std::size_t>(request.worker) *
                                                           sizeof(process::worker_slot))),
        ring_(block + request.rings_at + static_cast<std::size_t>(request.worker) * process::ring_bytes),
        wake_fd_(wake_fd) {}

  void run(task_runner& runner, std::size_t task_count) override {
    if (task_count != request_.task_count)
      throw error(fmt::format("the call rebuilt in the worker has {} tasks, the caller's {}", task_count,
                              request_.task_count));
    batch_call::settings settings;
    settings.workers = request_.workers;
    if (request_.batch_size != 0) settings.batch_size = static_cast<std::size_t>(request_.batch_size);
    settings.target_batch_duration = std::chrono::nanoseconds(request_.target_batch_ns);
    batch_call call(runner, task_count, std::move(settings));
    call.attach_dispatch_state(header_.dispatch);
    process::record_sender sender(header_, slot_, ring_, request_.prompt, wake_fd_);
    process::run_batches(call, sender, slot_, request_.worker,
                         {static_cast<std::size_t>(request_.retry_begin), static_cast<std::size_t>(request_.retry_end)},
                         request_.per_task);
    ran_ = true;
  }

  [[nodiscard]] bool ran() const noexcept { return ran_; }

 private:
  call_request const& request_;
  process::call_header& header_;
  process::worker_slot& slot_;
  std::byte* ring_;
  int wake_fd_;
  bool ran_ = false;
};

// Runs one call; returns why it could not, or nothing.
std::string run_call(std::string_view payload, std::vector<detail::unique_fd>& fds,
                     std::map<std::uint64_t, worker_mapping>& mapped) {
  try {
    auto const request = decode_value<call_request>(payload, "a call of the processes backend");
    std::size_t const count = request.mapping_ids.size();
    if (fds.size() != count + 1 || request.mapping_bytes.size() != count || request.mapping_writable.size() != count ||
        count == 0)
      return "the call reached the worker without its descriptors";
    std::vector<std::byte*> bases;
    for (std::size_t i = 0; i < count; ++i) {
      auto found = mapped.find(request.mapping_ids[i]);
      if (found == mapped.end()) {
        auto const bytes = static_cast<std::size_t>(request.mapping_bytes[i]);
        int const protection = request.mapping_writable[i] != 0 ? PROT_READ | PROT_WRITE : PROT_READ;
        void* base = mmap(nullptr, bytes, protection, MAP_SHARED, fds[i + 1].get(), 0);
        if (base == MAP_FAILED)
          return fmt::format("the worker cannot map {} bytes of the call's shared memory: {}", bytes,
                             std::strerror(errno));
        found = mapped.emplace(request.mapping_ids[i], worker_mapping{static_cast<std::byte*>(base), bytes}).first;
        if (request.mapping_writable[i] != 0) remember_kept_mapping(base, bytes);
      }
      bases.push_back(found->second.base);
    }
    fds.resize(1);  // the mappings keep the memory; the eventfd stays for the call
    auto const entry = reinterpret_cast<remote_entry>(const_cast<void*>(resolve_code(request.entry)));
    set_worker_index(request.worker);
    warm_loop loop(request, bases[0], fds[0].get());
    std::string_view call_payload = request.payload;
    if (request.payload_mapping >= 0) {
      auto const at = static_cast<std::size_t>(request.payload_mapping);
      if (at >= count || request.payload_bytes > request.mapping_bytes[at])
        return "the call's inputs reached the worker malformed";
      call_payload = {reinterpret_cast<char const*>(bases[at]), static_cast<std::size_t>(request.payload_bytes)};
    }
    entry(call_payload, std::span<std::byte* const>(bases).subspan(1), loop);
    if (!loop.ran()) return "the call rebuilt in the worker ran no task";
    return {};
  } catch (std::exception const& e) {
    return e.what();
  } catch (...) {
    return "an unknown exception";
  }
}

[[noreturn]] void leave(int status) noexcept {
  std::fflush(nullptr);
  _exit(status);
}

// The worker's whole life: calls, and the caller's notes, until told to
// quit or the caller is gone.
[[noreturn]] void warm_worker_main(int channel) noexcept {
  // A forked worker holds the caller's arrays of the moment; they would
  // live on here after the caller freed them.
  drop_inherited_mappings();
  std::map<std::uint64_t, worker_mapping> mapped;
  std::uint32_t kind = 0;
  std::string payload;
  std::vector<detail::unique_fd> fds;
  try {
    for (;;) {
      if (!process::receive_frame(channel, kind, payload, fds)) leave(0);
      switch (static_cast<frame>(kind)) {
        case frame::call: {
          std::string const failure = run_call(payload, fds, mapped);
          fds.clear();
          if (!process::send_frame(channel, static_cast<std::uint32_t>(frame::done), failure)) leave(0);
          break;
        }
        case frame::forget: {
          auto const id = decode_value<std::uint64_t>(payload, "a mapping to forget");
          if (auto found = mapped.find(id); found != mapped.end()) {
            forget_kept_mapping(found->second.base);
            munmap(found->second.base, found->second.bytes);
            mapped.erase(found);
          }
          break;
        }
        default:
          leave(0);
      }
    }
  } catch (...) {
    // Out of memory, or a malformed frame: the caller sees the worker die.
    leave(3);
  }
}

[[maybe_unused]] bool const entry_registered = process::register_worker_entry(entry_name, warm_worker_main);

// ---------------------------------------------------------------- the keeper

// The sets of this process, and the thread that starts their workers and
// retires idle ones. Never destroyed (exit stops the workers through
// release_all, and a static destructor could run while a call still does).
class keeper {
 public:
  static keeper& instance() {
    static keeper* const made = new keeper();
    return *made;
  }

  [[nodiscard]] bool owned_here() const noexcept { return getpid() == owner_; }

  std::shared_ptr<worker_set> find(int size, start_method method) {
    std::lock_guard lock(mutex_);
    auto& set = sets_[{size, method}];
    if (!set) set = std::make_shared<worker_set>(size, method);
    if (!thread_.joinable() && !stopped_) thread_ = std::thread([this] { loop(); });
    return set;
  }

  // Runs `job` on the keeper thread and waits for it; rethrows its exception.
  void run(std::function<void()> job) {
    std::packaged_task<void()> task(std::move(job));
    auto done = task.get_future();
    {
      std::lock_guard lock(mutex_);
      if (stopped_ || !thread_.joinable()) throw error("the processes backend is shutting down; no worker can start");
      jobs_.push_back(std::move(task));
    }
    changed_.notify_all();
    done.get();
  }

  void wake() { changed_.notify_all(); }

  std::vector<std::shared_ptr<worker_set>> sets() {
    std::lock_guard lock(mutex_);
    std::vector<std::shared_ptr<worker_set>> all;
    for (auto const& [key, set] : sets_) all.push_back(set);
    return all;
  }

  // At exit: stops the keeper and every worker.
  void stop() noexcept {
    if (!owned_here()) return;
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
    for (auto const& set : sets()) (void)set->retire(true);
  }

  static void on_mapping_released(std::uint64_t id) noexcept {
    keeper& self = instance();
    if (!self.owned_here()) return;
    std::vector<std::shared_ptr<worker_set>> all;
    try {
      all = self.sets();
    } catch (...) {
      return;
    }
    for (auto const& set : all) set->forget(id);
  }

 private:
  keeper() {
    set_mapping_released_listener(&on_mapping_released);
    std::atexit([] { instance().stop(); });
  }

  void loop() {
    std::unique_lock lock(mutex_);
    while (!stopped_) {
      while (!jobs_.empty()) {
        std::packaged_task<void()> job = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        job();
        lock.lock();
      }
      if (stopped_) break;
      lock.unlock();
      std::optional<clock_type::time_point> const next = retire_idle_sets();
      lock.lock();
      if (!jobs_.empty() || stopped_) continue;
      if (next) {
        changed_.wait_until(lock, *next + std::chrono::milliseconds(1));
      } else {
        changed_.wait(lock);
      }
    }
  }

  // Retires the sets idle past their timeout; returns when the next one
  // will be. What it allocates is freed before the keeper sleeps: a child
  // forked from another thread would hold it with no thread to free it.
  std::optional<clock_type::time_point> retire_idle_sets() {
    std::optional<clock_type::time_point> next;
    for (auto const& set : sets()) {
      (void)set->retire(false);
      if (auto deadline = set->idle_deadline()) next = next ? std::min(*next, *deadline) : *deadline;
    }
    return next;
  }

  pid_t const owner_ = getpid();
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::pair<int, start_method>, std::shared_ptr<worker_set>> sets_;
  std::deque<std::packaged_task<void()>> jobs_;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace

// ---------------------------------------------------------------- the set

worker_set::worker_set(int size, start_method method) : size_(size), method_(method), workers_(static_cast<std::size_t>(size)) {}

worker_set::~worker_set() = default;

worker_process& worker_set::ready_worker(std::size_t w) {
  worker_process& worker = workers_[w];
  if (!worker.ended()) return worker;
  int const share = std::max(1, cpu_count() / size_);
  keeper::instance().run([&] {
    process::launched_worker launched = process::launch_worker(method_, entry_name, share);
    // Never blocked for good by a worker that died mid-frame while a
    // grandchild of it holds the channel.
    (void)process::limit_frame_stalls(launched.channel.get(), 10);
    worker.started(std::move(launched.child), std::move(launched.channel));
  });
  keeper::instance().wake();  // its idle clock now counts
  return worker;
}

bool worker_set::send_locked(worker_process const& worker, frame kind, std::string_view payload,
                             std::span<int const> fds) noexcept {
  return worker.alive() && process::send_frame(worker.channel(), static_cast<std::uint32_t>(kind), payload, fds);
}

bool worker_set::send(std::size_t w, frame kind, std::string_view payload, std::span<int const> fds) {
  std::lock_guard lock(state_mutex_);
  return send_locked(workers_[w], kind, payload, fds);
}

void worker_set::handed_out(std::span<std::uint64_t const> ids) {
  std::lock_guard lock(state_mutex_);
  for (std::uint64_t const id : ids)
    if (auto at = std::lower_bound(handed_.begin(), handed_.end(), id); at == handed_.end() || *at != id)
      handed_.insert(at, id);
}

void worker_set::call_ended(std::chrono::duration<double> idle_timeout) {
  {
    std::lock_guard lock(state_mutex_);
    idle_since_ = clock_type::now();
    idle_timeout_ = idle_timeout;
  }
  keeper::instance().wake();
}

std::vector<int> worker_set::pids() {
  auto lock = acquire();
  std::vector<int> alive;
  for (worker_process& worker : workers_)
    if (!worker.ended()) alive.push_back(worker.pid());
  return alive;
}

void worker_set::forget(std::uint64_t id) noexcept {
  // A worker in a call reads the note after it; the memory is not in use
  // (the caller unmapped it, so no call of its own uses it).
  std::lock_guard lock(state_mutex_);
  auto const at = std::lower_bound(handed_.begin(), handed_.end(), id);
  if (at == handed_.end() || *at != id) return;
  handed_.erase(at);
  try {
    std::string const payload = encode_value(id);
    for (worker_process const& worker : workers_) (void)send_locked(worker, frame::forget, payload);
  } catch (...) {
    // Out of memory: the workers keep the mapping until they exit.
  }
}

std::optional<clock_type::time_point> worker_set::idle_deadline() {
  auto lock = try_acquire();
  if (!lock) return std::nullopt;  // in a call: call_ended() wakes the keeper
  if (std::none_of(workers_.begin(), workers_.end(), [](worker_process const& w) { return w.alive(); }))
    return std::nullopt;
  std::lock_guard state(state_mutex_);
  return idle_since_ + std::chrono::duration_cast<clock_type::duration>(idle_timeout_);
}

bool worker_set::retire(bool always) noexcept {
  // The keeper skips a set in a call; release_process_workers() waits.
  std::unique_lock<std::mutex> lock = always ? acquire() : try_acquire();
  if (!lock) return false;
  {
    std::lock_guard state(state_mutex_);
    if (!always && clock_type::now() - idle_since_ < idle_timeout_) return false;
    for (worker_process const& worker : workers_) (void)send_locked(worker, frame::quit, {});
    handed_.clear();
  }
  // A worker told to quit exits at once; one that does not within a
  // second (stuck in a signal handler, stopped) is killed.
  auto const deadline = clock_type::now() + std::chrono::seconds(1);
  for (worker_process& worker : workers_) {
    if (!worker.alive()) continue;
    auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    pollfd ended{worker.pidfd(), POLLIN, 0};
    if (poll(&ended, 1, static_cast<int>(std::max<long long>(left, 0))) <= 0) worker.kill();
    (void)worker.reap();
  }
  return true;
}

std::shared_ptr<worker_set> find_worker_set(int size, start_method method) {
  keeper& k = keeper::instance();
  if (!k.owned_here()) return nullptr;
  return k.find(size, method);
}

}  // namespace xjob::detail::warm

namespace xjob {

void release_process_workers() noexcept {
  auto& k = detail::warm::keeper::instance();
  if (!k.owned_here()) return;
  try {
    for (auto const& set : k.sets()) (void)set->retire(true);
  } catch (...) {
  }
}

std::vector<int> process_worker_pids() {
  auto& k = detail::warm::keeper::instance();
  std::vector<int> pids;
  if (!k.owned_here()) return pids;
  for (auto const& set : k.sets()) {
    std::vector<int> some = set->pids();
    pids.insert(pids.end(), some.begin(), some.end());
  }
  return pids;
}

}  // namespace xjob
