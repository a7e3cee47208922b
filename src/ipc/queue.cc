#include <xjob/ipc/queue.hpp>

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <new>

#include <fmt/format.h>

#include <xjob/ipc/lock.hpp>

#include "sync.hpp"

namespace xjob::ipc::detail {

// Where a message is: its first byte as a position in the endless stream of
// bytes ever pushed (the ring holds position p at p % max_bytes), its length.
struct message_slot {
  std::uint64_t begin;
  std::uint64_t length;
};

// A channel in shared memory; then max_messages message_slots; then the
// ring of max_bytes bytes. The queue's contents are the messages numbered
// [read_count, write_count): slot i % max_messages describes message i.
// Only the two counters commit a change, each with one store after
// everything it publishes is written, so a process that dies anywhere leaves
// either the old state or the new one.
struct channel_state {
  static constexpr std::uint32_t ready = 0x6c6e6863;  // "chnl"

  mutex_state lock;
  shared_event not_empty;
  shared_event not_full;
  std::uint64_t max_messages;
  std::uint64_t max_bytes;
  std::atomic<std::uint64_t> read_count;
  std::atomic<std::uint64_t> write_count;
  std::atomic<std::uint32_t> closed;
  std::uint32_t magic;
};

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
constexpr std::size_t slots_offset = round_up(sizeof(channel_state), 64);
// Far beyond any real use, and small enough that no arithmetic below overflows.
constexpr std::uint64_t largest_count = std::uint64_t(1) << 40;

message_slot* slots(channel_state& s) noexcept {
  return reinterpret_cast<message_slot*>(reinterpret_cast<std::byte*>(&s) + slots_offset);
}
std::byte* ring(channel_state& s) noexcept {
  return reinterpret_cast<std::byte*>(slots(s) + s.max_messages);
}

// Holds the channel's lock. A holder that died left the ring consistent
// (see channel_state) but may have died before waking anyone: wake all.
class held_lock {
 public:
  explicit held_lock(channel_state& s) : s_(s) {
    (void)lock_mutex_state(s_.lock, std::nullopt);
    repair();
  }
  ~held_lock() { pthread_mutex_unlock(&s_.lock.mutex); }
  held_lock(held_lock const&) = delete;
  held_lock& operator=(held_lock const&) = delete;

  // Waits on `event`, releasing the lock meanwhile; false on timeout.
  bool wait(shared_event& event, std::optional<deadline> until) {
    bool const woken = event.wait(s_.lock, until);
    repair();
    return woken;
  }

 private:
  void repair() noexcept {
    if (s_.lock.previous_owner_died != 0) {
      s_.not_empty.notify_all();
      s_.not_full.notify_all();
    }
  }
  channel_state& s_;
};

bool passed(std::optional<deadline> until) { return until && std::chrono::steady_clock::now() >= *until; }

}  // namespace

std::size_t message_channel::region_bytes(std::size_t max_messages, std::size_t max_bytes, std::string_view what) {
  if (max_messages == 0) throw invalid_argument(fmt::format("{}: max_messages must be at least 1", what));
  if (max_bytes == 0) throw invalid_argument(fmt::format("{}: max_bytes must be at least 1", what));
  if (max_messages > largest_count || max_bytes > largest_count)
    throw invalid_argument(
        fmt::format("{}: max_messages {} or max_bytes {} is beyond {}", what, max_messages, max_bytes, largest_count));
  return round_up(slots_offset + max_messages * sizeof(message_slot) + max_bytes, 64);
}

message_channel message_channel::construct(std::byte* region, std::size_t max_messages, std::size_t max_bytes,
                                           std::string_view what) {
  auto* s = new (region) channel_state{};
  construct_mutex_state(s->lock);
  s->max_messages = max_messages;
  s->max_bytes = max_bytes;
  s->magic = channel_state::ready;
  return message_channel(s, what);
}

message_channel message_channel::open(std::byte* region, std::size_t available, std::string_view name,
                                      std::string_view what) {
  auto fail = [&](std::string_view why) {
    return invalid_argument(fmt::format("cannot attach {} \"{}\": {}", what, name, why));
  };
  if (available < slots_offset) throw fail("its block is too small");
  auto* s = reinterpret_cast<channel_state*>(region);
  if (s->magic != channel_state::ready) throw fail("its block holds no message ring");
  if (s->max_messages == 0 || s->max_bytes == 0 || s->max_messages > largest_count || s->max_bytes > largest_count ||
      region_bytes(s->max_messages, s->max_bytes, what) > available)
    throw fail("its message ring does not fit its block");
  return message_channel(s, what);
}

channel_state& message_channel::state() const {
  if (state_ == nullptr) throw error(fmt::format("{}: used empty (default-constructed, closed or moved-from)", what_));
  return *state_;
}

std::size_t message_channel::footprint() const {
  channel_state& s = state();
  return region_bytes(s.max_messages, s.max_bytes, what_);
}

message_channel::status message_channel::push(std::string_view message, std::optional<deadline> until) {
  channel_state& s = state();
  std::uint64_t const n = message.size();
  if (n > s.max_bytes)
    throw invalid_argument(fmt::format("{}: a message of {} bytes is larger than its byte budget of {} bytes", what_,
                                       n, s.max_bytes));
  held_lock hold(s);
  std::uint64_t write = 0;
  std::uint64_t tail = 0;
  for (;;) {
    if (s.closed.load(std::memory_order_relaxed) != 0) return status::closed;
    std::uint64_t const read = s.read_count.load(std::memory_order_relaxed);
    write = s.write_count.load(std::memory_order_relaxed);
    std::uint64_t used = 0;
    tail = 0;  // an empty ring starts over at its beginning
    if (write != read) {
      message_slot const& last = slots(s)[(write - 1) % s.max_messages];
      tail = last.begin + last.length;
      used = tail - slots(s)[read % s.max_messages].begin;
    }
    if (write - read < s.max_messages && used + n <= s.max_bytes) break;
    if (passed(until)) return status::timed_out;
    (void)hold.wait(s.not_full, until);
  }
  std::uint64_t const at = tail % s.max_bytes;
  std::uint64_t const first = std::min(n, s.max_bytes - at);
  std::memcpy(ring(s) + at, message.data(), first);
  std::memcpy(ring(s), message.data() + first, n - first);
  slots(s)[write % s.max_messages] = message_slot{tail, n};
  s.write_count.store(write + 1, std::memory_order_release);  // the commit
  s.not_empty.notify_all();
  return status::ok;
}

message_channel::status message_channel::pop(std::string& message, std::optional<deadline> until) {
  channel_state& s = state();
  held_lock hold(s);
  std::uint64_t read = 0;
  for (;;) {
    read = s.read_count.load(std::memory_order_relaxed);
    if (s.write_count.load(std::memory_order_relaxed) != read) break;
    if (s.closed.load(std::memory_order_relaxed) != 0) return status::closed;
    if (passed(until)) return status::timed_out;
    (void)hold.wait(s.not_empty, until);
  }
  message_slot const slot = slots(s)[read % s.max_messages];
  if (slot.length > s.max_bytes)
    throw error(fmt::format("{}: its ring is corrupt (a message of {} bytes in a ring of {})", what_, slot.length,
                            s.max_bytes));
  message.resize(slot.length);
  std::uint64_t const at = slot.begin % s.max_bytes;
  std::uint64_t const first = std::min(slot.length, s.max_bytes - at);
  std::memcpy(message.data(), ring(s) + at, first);
  std::memcpy(message.data() + first, ring(s), slot.length - first);
  s.read_count.store(read + 1, std::memory_order_release);  // the commit
  s.not_full.notify_all();
  return status::ok;
}

bool message_channel::wait_readable(std::optional<deadline> until) {
  channel_state& s = state();
  held_lock hold(s);
  for (;;) {
    if (s.write_count.load(std::memory_order_relaxed) != s.read_count.load(std::memory_order_relaxed)) return true;
    if (s.closed.load(std::memory_order_relaxed) != 0) return true;
    if (passed(until)) return false;
    (void)hold.wait(s.not_empty, until);
  }
}

void message_channel::close() {
  channel_state& s = state();
  held_lock hold(s);
  s.closed.store(1, std::memory_order_release);
  s.not_empty.notify_all();
  s.not_full.notify_all();
}

bool message_channel::closed() const { return state().closed.load(std::memory_order_acquire) != 0; }

std::size_t message_channel::size() const {
  channel_state& s = state();
  held_lock hold(s);
  return s.write_count.load(std::memory_order_relaxed) - s.read_count.load(std::memory_order_relaxed);
}

std::size_t message_channel::max_messages() const { return state().max_messages; }

std::size_t message_channel::max_bytes() const { return state().max_bytes; }

}  // namespace xjob::ipc::detail
