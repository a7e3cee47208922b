// xjob::ipc::make_pipe<T>(): two connected ends that send values both ways,
// like Python's multiprocessing.Pipe(duplex=True), made of two message rings
// in one block of shared memory.
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/detail/block.hpp>
#include <xjob/ipc/queue.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/transfer.hpp>

namespace xjob::ipc {

template <class T>
class connection;

// A connected pair of ends: what one end sends the other receives, in order,
// both ways. Each direction holds at most `max_messages` messages and
// `max_bytes` bytes of encoded messages; send() waits while it is full.
// Needs transferable<T>. Throws xjob::invalid_argument for a geometry of 0,
// std::system_error if memory cannot be made.
//   auto [parent, child] = xjob::ipc::make_pipe<std::string>();
//   if (fork() == 0) { child.send("ready"); auto job = child.recv(); _exit(0); }
//   std::string hello = parent.recv();
//   parent.send("work");
template <class T>
[[nodiscard]] std::pair<connection<T>, connection<T>> make_pipe(std::size_t max_messages = 1024,
                                                                std::size_t max_bytes = default_queue_bytes);

// One end of a pipe (Python's Connection). send() waits while the other end's
// inbox is full; recv() waits for a message; poll(timeout) says whether
// recv() would return at once. Values are copied as in queue<T>.
//
// close() closes the pipe for both ends and every process: sends then throw
// closed_error at either end, and recv() at the other end throws
// closed_error once it has received what was sent before (Python's
// BrokenPipeError and EOFError). Destroying an end does not close the pipe:
// after a fork, the parent may drop the child's end without cutting it off.
//
// Crossing processes: a forked child uses the same ends; other processes
// attach(name()) or receive an end as a task argument (cereal: it travels as
// its name, which says which end), which needs the naming process to still
// hold it (see shared_memory). A default-constructed end is empty: its
// operations throw xjob::error. Robust as queue<T> is against processes
// killed while sending or receiving.
//
// Throws xjob::invalid_argument for a message larger than the byte budget
// (naming both sizes), closed_error as above, xjob::error if a message
// arrives malformed. Thread-safe, except moves, assignment and close().
//   auto [a, b] = xjob::ipc::make_pipe<int>();
//   a.send(42);
//   if (b.poll(std::chrono::milliseconds(100))) assert(b.recv() == 42);
//   a.close();                                       // b.recv() now throws closed_error
template <class T>
class connection {
  static_assert(transferable<T>,
                "xjob::ipc::connection<T>: T cannot travel between processes. Use a trivially copyable type, or "
                "give it a default constructor and a cereal serialize(Archive&) member (see xjob/transfer.hpp)");

 public:
  using value_type = T;

  connection() noexcept = default;

  // The end another handle's name() names. Throws xjob::invalid_argument if
  // the name is malformed, vanished, or names another primitive or a pipe of
  // another type.
  [[nodiscard]] static connection attach(std::string_view name) {
    std::size_t const hash = name.rfind('#');
    if (hash == std::string_view::npos || hash + 2 != name.size() || (name[hash + 1] != '0' && name[hash + 1] != '1'))
      throw invalid_argument(
          fmt::format("cannot attach {} \"{}\": not a name of the form <shared memory name>#<0 or 1>", what, name));
    auto memory = std::make_shared<shared_memory>(shared_memory::attach(name.substr(0, hash)));
    detail::check_block(*memory, name, detail::block_kind::pipe, 0, detail::value_type_of<T>());
    std::byte* const first = detail::block_payload(*memory);
    std::size_t const available = memory->size() - detail::block_payload_offset;
    auto ring0 = detail::message_channel::open(first, available, name, what);
    std::size_t const offset = ring0.footprint();
    auto ring1 = detail::message_channel::open(first + offset, available - offset, name, what);
    return connection(std::move(memory), name[hash + 1] - '0', std::move(ring0), std::move(ring1));
  }

  connection(connection&&) noexcept = default;
  connection& operator=(connection&&) noexcept = default;
  connection(connection const&) = delete;
  connection& operator=(connection const&) = delete;
  ~connection() = default;

  // "<shared memory name>#<end>"; see shared_memory::name().
  [[nodiscard]] std::string name() const {
    check();
    return fmt::format("{}#{}", memory_->name(), end_);
  }
  [[nodiscard]] bool valid() const noexcept { return memory_ != nullptr; }

  // Sends `value` to the other end, waiting while its inbox is full.
  void send(T const& value) { (void)send_until(value, std::nullopt); }
  // Sends `value` if there is room now.
  [[nodiscard]] bool try_send(T const& value) { return send_until(value, detail::deadline{}); }
  template <class Rep, class Period>
  [[nodiscard]] bool send_for(T const& value, std::chrono::duration<Rep, Period> const& timeout) {
    return send_until(value, detail::deadline_after(timeout));
  }

  // Receives the next value, waiting for one.
  [[nodiscard]] T recv() { return *recv_until(std::nullopt); }
  // The next value if there is one now.
  [[nodiscard]] std::optional<T> try_recv() { return recv_until(detail::deadline{}); }
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> recv_for(std::chrono::duration<Rep, Period> const& timeout) {
    return recv_until(detail::deadline_after(timeout));
  }

  // Whether recv() would return (or throw closed_error) at once.
  [[nodiscard]] bool poll() { return check_inbox().wait_readable(detail::deadline{}); }
  // Waits up to `timeout` for that.
  template <class Rep, class Period>
  [[nodiscard]] bool poll(std::chrono::duration<Rep, Period> const& timeout) {
    return check_inbox().wait_readable(detail::deadline_after(timeout));
  }

  // Closes the pipe, both ways, for both ends; this end becomes empty.
  void close() {
    check();
    inbox_.close();
    outbox_.close();
    *this = connection();
  }

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
  static constexpr std::string_view what = "xjob::ipc::connection";

  template <class U>
  friend std::pair<connection<U>, connection<U>> make_pipe(std::size_t, std::size_t);

  // End `end` sends on ring `end` and receives on the other one.
  connection(std::shared_ptr<shared_memory> memory, int end, detail::message_channel ring0,
             detail::message_channel ring1) noexcept
      : memory_(std::move(memory)), end_(end) {
    outbox_ = std::move(end == 0 ? ring0 : ring1);
    inbox_ = std::move(end == 0 ? ring1 : ring0);
  }

  void check() const {
    if (memory_ == nullptr) throw error("xjob::ipc::connection: used empty (default-constructed, closed or moved-from)");
  }
  detail::message_channel& check_inbox() {
    check();
    return inbox_;
  }

  bool send_until(T const& value, std::optional<detail::deadline> until) {
    check();
    std::string const bytes = xjob::detail::encode_value(value);
    switch (outbox_.push(bytes, until)) {
      case detail::message_channel::status::ok: return true;
      case detail::message_channel::status::timed_out: return false;
      case detail::message_channel::status::closed: break;
    }
    throw closed_error("xjob::ipc::connection: send on a closed pipe");
  }

  std::optional<T> recv_until(std::optional<detail::deadline> until) {
    check();
    std::string bytes;
    switch (inbox_.pop(bytes, until)) {
      case detail::message_channel::status::ok:
        return xjob::detail::decode_value<T>(bytes, "a message on an xjob::ipc::connection");
      case detail::message_channel::status::timed_out: return std::nullopt;
      case detail::message_channel::status::closed: break;
    }
    if (until) return std::nullopt;
    throw closed_error("xjob::ipc::connection: recv on a closed pipe that has nothing left");
  }

  // Shared by the two ends a make_pipe() in this process returned.
  std::shared_ptr<shared_memory> memory_;
  int end_ = 0;
  detail::message_channel outbox_;
  detail::message_channel inbox_;
};

template <class T>
std::pair<connection<T>, connection<T>> make_pipe(std::size_t max_messages, std::size_t max_bytes) {
  constexpr std::string_view what = connection<T>::what;
  std::size_t const ring_bytes = detail::message_channel::region_bytes(max_messages, max_bytes, what);
  auto memory = std::make_shared<shared_memory>(detail::block_payload_offset + 2 * ring_bytes);
  std::byte* const first = detail::block_payload(*memory);
  auto ring0 = detail::message_channel::construct(first, max_messages, max_bytes, what);
  auto ring1 = detail::message_channel::construct(first + ring_bytes, max_messages, max_bytes, what);
  detail::stamp_block(*memory, detail::block_kind::pipe, detail::value_type_of<T>());
  auto twin0 = detail::message_channel::open(first, ring_bytes, "", what);
  auto twin1 = detail::message_channel::open(first + ring_bytes, ring_bytes, "", what);
  return {connection<T>(memory, 0, std::move(ring0), std::move(ring1)),
          connection<T>(memory, 1, std::move(twin0), std::move(twin1))};
}

}  // namespace xjob::ipc
