// xjob::ipc::shared_value<T>: one value in shared memory with its own lock,
// like Python's multiprocessing.Value. (For arrays, multiprocessing.Array,
// use xjob::shared_array<T> from xjob/shared_array.hpp: forked workers write
// it in place, and std::atomic_ref works on its elements.)
#pragma once

#include <xjob/detail/config.hpp>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <xjob/errors.hpp>
#include <xjob/ipc/detail/block.hpp>
#include <xjob/ipc/lock.hpp>
#include <xjob/ipc/shared_memory.hpp>

namespace xjob::ipc {

// A T in its own block of shared memory, next to a robust mutex
// (get_lock()). load() and store() take that lock, as Value.value does; for
// a read-modify-write hold get_lock() and use data(), or, for types the
// hardware updates atomically, use atomic() (a std::atomic_ref, lock-free
// across processes: it is offered only when T is always lock-free, because
// libatomic's fallback locks are private to each process).
//
// Crossing processes: a forked child uses the same value; other processes
// attach(name()) or receive it as a task argument (cereal: it travels as its
// name), which needs the naming process to still hold it (see
// shared_memory). A default-constructed shared_value holds a new
// value-initialised T (like Value('d') holding 0.0); a moved-from one is
// empty and its operations throw xjob::error.
//
// Needs a trivially copyable T. Throws std::system_error if memory cannot be
// made; xjob::invalid_argument from attach() for a bad name or a value of
// another type. Thread-safe, except moves and assignment. A holder killed in
// the middle of store() may leave a torn value: get_lock().previous_owner_died()
// tells the next holder.
//   xjob::ipc::shared_value<long> hits;                 // 0
//   if (fork() == 0) { hits.atomic().fetch_add(1); _exit(0); }
//   { std::scoped_lock hold(hits.get_lock()); *hits.data() += 10; }
//   hits.store(hits.load() * 2);
template <class T>
class shared_value {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "xjob::ipc::shared_value<T> needs a trivially copyable, non-const T (it lives as bytes in shared "
                "memory); for arrays use xjob::shared_array<T>");

  static constexpr std::size_t value_alignment =
      alignof(T) > std::atomic_ref<T>::required_alignment ? alignof(T) : std::atomic_ref<T>::required_alignment;
  static_assert(value_alignment <= 4096, "xjob::ipc::shared_value<T>: T is aligned beyond a page");
  static constexpr std::size_t value_offset =
      (detail::block_payload_offset + sizeof(detail::mutex_state) + value_alignment - 1) / value_alignment *
      value_alignment;

 public:
  using value_type = T;

  // A new value-initialised T.
  shared_value()
    requires std::is_default_constructible_v<T>
      : shared_value(T{}) {}
  // A new T holding `initial`.
  explicit shared_value(T const& initial) : memory_(value_offset + sizeof(T)) {
    auto* state = reinterpret_cast<detail::mutex_state*>(detail::block_payload(memory_));
    detail::construct_mutex_state(*state);
    lock_ = mutex(mutex::view_tag{}, state);
    std::memcpy(memory_.data() + value_offset, &initial, sizeof(T));
    value_ = std::launder(reinterpret_cast<T*>(memory_.data() + value_offset));
    detail::stamp_block(memory_, detail::block_kind::shared_value, detail::value_type_of<T>());
  }

  // The value another handle's name() names. Throws xjob::invalid_argument
  // if the name is malformed, vanished, or names another primitive or a
  // value of another type.
  [[nodiscard]] static shared_value attach(std::string_view name) {
    shared_memory memory = shared_memory::attach(name);
    detail::check_block(memory, name, detail::block_kind::shared_value,
                        value_offset + sizeof(T) - detail::block_payload_offset, detail::value_type_of<T>());
    shared_value result(empty_tag{});
    result.lock_ = mutex(mutex::view_tag{}, reinterpret_cast<detail::mutex_state*>(detail::block_payload(memory)));
    result.value_ = std::launder(reinterpret_cast<T*>(memory.data() + value_offset));
    result.memory_ = std::move(memory);
    return result;
  }

  shared_value(shared_value&& other) noexcept
      : memory_(std::move(other.memory_)), lock_(std::move(other.lock_)), value_(std::exchange(other.value_, nullptr)) {}
  shared_value& operator=(shared_value&& other) noexcept {
    if (this != &other) {
      memory_ = std::move(other.memory_);
      lock_ = std::move(other.lock_);
      value_ = std::exchange(other.value_, nullptr);
    }
    return *this;
  }
  shared_value(shared_value const&) = delete;
  shared_value& operator=(shared_value const&) = delete;
  ~shared_value() = default;

  // See shared_memory::name().
  [[nodiscard]] std::string name() const {
    check();
    return memory_.name();
  }
  [[nodiscard]] bool valid() const noexcept { return value_ != nullptr; }

  // The value, read under get_lock().
  [[nodiscard]] T load() const {
    check();
    std::scoped_lock hold(lock_);
    return *value_;
  }
  // Replaces the value under get_lock().
  void store(T const& value) {
    check();
    std::scoped_lock hold(lock_);
    std::memcpy(static_cast<void*>(value_), &value, sizeof(T));
  }

  // The lock load() and store() take; hold it around data() for compound
  // updates. Not recursive: do not call load()/store() while holding it.
  [[nodiscard]] mutex& get_lock() const {
    check();
    return lock_;
  }
  // The value in shared memory itself, unguarded (Value.get_obj()).
  [[nodiscard]] T* data() const {
    check();
    return value_;
  }
  // Lock-free atomic access from any process.
  [[nodiscard]] std::atomic_ref<T> atomic() const
    requires std::atomic_ref<T>::is_always_lock_free
  {
    check();
    return std::atomic_ref<T>(*value_);
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
  struct empty_tag {};
  explicit shared_value(empty_tag) noexcept {}

  void check() const {
    if (value_ == nullptr) throw error("xjob::ipc::shared_value: used empty (moved-from)");
  }

  shared_memory memory_;
  mutable mutex lock_{mutex::view_tag{}, nullptr};
  T* value_ = nullptr;
};

}  // namespace xjob::ipc
