// xjob::ipc::queue<T>: a bounded queue of values that processes share, like
// Python's multiprocessing.Queue, with no feeder thread and no pipe: the
// messages live in a ring in shared memory.
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/detail/block.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/transfer.hpp>

namespace xjob::ipc {

// A push onto a closed queue or pipe, or a blocking pop from one that is
// closed and has nothing left (Python's EOFError / BrokenPipeError).
//   try { for (;;) handle(q.pop()); } catch (xjob::ipc::closed_error const&) { /* done */ }
class closed_error : public xjob::error {
 public:
  using error::error;
};

// The byte budget of a queue unless given: 1 MiB of encoded messages.
inline constexpr std::size_t default_queue_bytes = std::size_t(1) << 20;

namespace detail {

struct channel_state;

// The untyped core of queue<T> and of each direction of a pipe: messages of
// bytes in a ring in shared memory, guarded by a robust mutex, with
// futex-based condition variables. A view: the memory belongs to its owner.
// Every change is committed by one store after the bytes are in place, so a
// process that dies in the middle of a push or pop leaves the ring
// consistent (its message is not half there, or not half taken).
class message_channel {
 public:
  enum class status { ok, timed_out, closed };

  message_channel() noexcept = default;
  message_channel(message_channel&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), what_(other.what_) {}
  message_channel& operator=(message_channel&& other) noexcept {
    state_ = std::exchange(other.state_, nullptr);
    what_ = other.what_;
    return *this;
  }
  message_channel(message_channel const&) = delete;
  message_channel& operator=(message_channel const&) = delete;
  ~message_channel() = default;

  // The bytes a channel of this geometry takes. Throws
  // xjob::invalid_argument (naming `what`) for 0 or sizes that overflow.
  [[nodiscard]] static std::size_t region_bytes(std::size_t max_messages, std::size_t max_bytes,
                                                std::string_view what);
  // A new channel in `region`: region_bytes() of zeroed shared memory.
  [[nodiscard]] static message_channel construct(std::byte* region, std::size_t max_messages, std::size_t max_bytes,
                                                 std::string_view what);
  // The channel a block attached by `name` holds at `region`, which has
  // `available` bytes. Throws xjob::invalid_argument if it does not fit.
  [[nodiscard]] static message_channel open(std::byte* region, std::size_t available, std::string_view name,
                                            std::string_view what);

  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  // region_bytes() of this channel.
  [[nodiscard]] std::size_t footprint() const;

  // Waits until `until` (forever if empty; a past deadline does not wait)
  // for room. Throws xjob::invalid_argument if the message is larger than
  // the byte budget.
  [[nodiscard]] status push(std::string_view message, std::optional<deadline> until);
  // Waits until `until` for a message; status::closed once closed and empty.
  [[nodiscard]] status pop(std::string& message, std::optional<deadline> until);
  // Waits until `until` for a pop not to block (a message, or closed).
  [[nodiscard]] bool wait_readable(std::optional<deadline> until);
  void close();
  [[nodiscard]] bool closed() const;
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::size_t max_messages() const;
  [[nodiscard]] std::size_t max_bytes() const;
  [[nodiscard]] std::string_view what() const noexcept { return what_; }

 private:
  message_channel(channel_state* state, std::string_view what) noexcept : state_(state), what_(what) {}
  [[nodiscard]] channel_state& state() const;

  channel_state* state_ = nullptr;
  std::string_view what_ = "xjob::ipc::queue";
};

}  // namespace detail

// A bounded multi-producer, multi-consumer queue of T in shared memory: at
// most `max_messages` messages and `max_bytes` bytes of encoded messages at
// a time. push() waits while it is full, pop() while it is empty; try_ and
// _for(timeout) variants wait not at all or at most that long (on
// CLOCK_MONOTONIC). Values are copied in and out (as bytes if trivially
// copyable, else through cereal: see xjob/transfer.hpp), outside the lock.
//
// close() closes the queue for every process (unlike Python's per-process
// Queue.close): pushes then throw closed_error, pops drain what is left and
// then pop() throws closed_error, try_pop() and pop_for() return nothing.
//
// Robust: a producer or consumer killed at any point (holding the lock,
// waiting, or in the middle of copying) leaves the queue consistent and
// usable; a message it was pushing is not there, one it was popping is still
// there unless its pop was committed.
//
// Crossing processes: a forked child uses the same queue; other processes
// attach(name()) or receive it as a task argument (cereal: it travels as its
// name), which needs the naming process to still hold it (see
// shared_memory). A default-constructed queue is empty: its operations throw
// xjob::error.
//
// Needs: transferable<T>. Throws xjob::invalid_argument for a geometry of 0
// and for a message larger than max_bytes (naming both sizes),
// std::system_error if memory cannot be made, xjob::error if a message
// arrives malformed. Thread-safe, except moves and assignment.
//   xjob::ipc::queue<std::string> q(100);             // 100 messages, 1 MiB
//   if (fork() == 0) { q.push("hello from " + std::to_string(getpid())); _exit(0); }
//   std::string s = q.pop();
//   std::optional<std::string> none = q.pop_for(std::chrono::milliseconds(10));
//   q.close();
template <class T>
class queue {
  static_assert(transferable<T>,
                "xjob::ipc::queue<T>: T cannot travel between processes. Use a trivially copyable type, or give it "
                "a default constructor and a cereal serialize(Archive&) member (see xjob/transfer.hpp)");

 public:
  using value_type = T;

  queue() noexcept = default;
  explicit queue(std::size_t max_messages, std::size_t max_bytes = default_queue_bytes)
      : memory_(detail::block_payload_offset + detail::message_channel::region_bytes(max_messages, max_bytes, what)) {
    channel_ = detail::message_channel::construct(detail::block_payload(memory_), max_messages, max_bytes, what);
    detail::stamp_block(memory_, detail::block_kind::queue, detail::value_type_of<T>());
  }

  // The queue another handle's name() names. Throws xjob::invalid_argument
  // if the name is malformed, vanished, or names another primitive or a
  // queue of another type.
  [[nodiscard]] static queue attach(std::string_view name) {
    shared_memory memory = shared_memory::attach(name);
    detail::check_block(memory, name, detail::block_kind::queue, 0, detail::value_type_of<T>());
    queue result;
    result.channel_ = detail::message_channel::open(detail::block_payload(memory),
                                                    memory.size() - detail::block_payload_offset, name, what);
    result.memory_ = std::move(memory);
    return result;
  }

  queue(queue&&) noexcept = default;
  queue& operator=(queue&&) noexcept = default;
  ~queue() = default;

  // See shared_memory::name().
  [[nodiscard]] std::string name() const {
    check();
    return memory_.name();
  }
  [[nodiscard]] bool valid() const noexcept { return channel_.valid(); }

  // Appends `value`, waiting while the queue is full.
  void push(T const& value) { (void)push_until(value, std::nullopt); }
  // Appends `value` if there is room now.
  [[nodiscard]] bool try_push(T const& value) { return push_until(value, detail::deadline{}); }
  // Appends `value` if there is room within `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] bool push_for(T const& value, std::chrono::duration<Rep, Period> const& timeout) {
    return push_until(value, detail::deadline_after(timeout));
  }

  // Takes the oldest value, waiting while the queue is empty.
  [[nodiscard]] T pop() { return *pop_until(std::nullopt); }
  // Takes the oldest value if there is one now.
  [[nodiscard]] std::optional<T> try_pop() { return pop_until(detail::deadline{}); }
  // Takes the oldest value if one comes within `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> pop_for(std::chrono::duration<Rep, Period> const& timeout) {
    return pop_until(detail::deadline_after(timeout));
  }

  // Messages in the queue now (Python's qsize); stale as soon as it returns.
  [[nodiscard]] std::size_t size() const { return channel().size(); }
  [[nodiscard]] bool empty() const { return size() == 0; }
  [[nodiscard]] std::size_t max_messages() const { return channel().max_messages(); }
  [[nodiscard]] std::size_t max_bytes() const { return channel().max_bytes(); }

  // Closes the queue for every process; waiters wake. Idempotent.
  void close() { channel().close(); }
  [[nodiscard]] bool closed() const { return channel().closed(); }

  // cereal: travels as its name, attached on arrival.
  template <class Archive>
  std::string save_minimal(Archive const&) const {
    return name();
  }
  template <class Archive>
  void load_minimal(Archive const&, std::string const& name) {
    *this = attach(name);
  }

 private:
  static constexpr std::string_view what = "xjob::ipc::queue";

  void check() const {
    if (!channel_.valid()) throw error("xjob::ipc::queue: used empty (default-constructed or moved-from)");
  }
  detail::message_channel& channel() const {
    check();
    return channel_;
  }

  bool push_until(T const& value, std::optional<detail::deadline> until) {
    std::string const bytes = xjob::detail::encode_value(value);
    switch (channel().push(bytes, until)) {
      case detail::message_channel::status::ok: return true;
      case detail::message_channel::status::timed_out: return false;
      case detail::message_channel::status::closed: break;
    }
    throw closed_error("xjob::ipc::queue: push onto a closed queue");
  }

  std::optional<T> pop_until(std::optional<detail::deadline> until) {
    std::string bytes;
    switch (channel().pop(bytes, until)) {
      case detail::message_channel::status::ok:
        return xjob::detail::decode_value<T>(bytes, "a message on an xjob::ipc::queue");
      case detail::message_channel::status::timed_out: return std::nullopt;
      case detail::message_channel::status::closed: break;
    }
    if (until) return std::nullopt;
    throw closed_error("xjob::ipc::queue: pop from a closed queue that has nothing left");
  }

  shared_memory memory_;
  mutable detail::message_channel channel_;
};

}  // namespace xjob::ipc
