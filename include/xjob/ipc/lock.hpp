// xjob::ipc::mutex (also named xjob::ipc::lock): a lock that processes share,
// like Python's multiprocessing.Lock, that survives its holder's death.
#pragma once

#include <xjob/detail/config.hpp>

#include <pthread.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <xjob/ipc/detail/block.hpp>
#include <xjob/ipc/shared_memory.hpp>

namespace xjob::ipc {

namespace detail {

// A robust, process-shared, error-checking pthread mutex in shared memory.
struct mutex_state {
  pthread_mutex_t mutex;
  // Written by each holder as it acquires: whether the holder before it died.
  int previous_owner_died;
};

// Initialises a mutex_state in fresh shared memory. Throws std::system_error.
void construct_mutex_state(mutex_state& state);
// Locks until `until` (forever if empty); false if the deadline passed. After
// a dead holder, makes the mutex consistent and records it. Throws
// std::system_error (EDEADLK if this thread holds it already).
[[nodiscard]] bool lock_mutex_state(mutex_state& state, std::optional<deadline> until);
// Throws std::system_error (EDEADLK if this thread holds it already).
[[nodiscard]] bool try_lock_mutex_state(mutex_state& state);
// Throws std::system_error (EPERM if this thread does not hold it).
void unlock_mutex_state(mutex_state& state);

}  // namespace detail

template <class T>
class shared_value;

// A mutex in its own block of shared memory (a robust, process-shared pthread
// mutex). A Lockable and TimedLockable, so std::scoped_lock, std::unique_lock
// and std::lock work with it, across threads and processes alike.
//
// When the holder dies (its process is killed, or its thread exits) the lock
// is not lost: the next locker gets it, and previous_owner_died() tells that
// locker so, so it can repair whatever the lock guarded. Locking a mutex that
// this thread already holds, or unlocking one it does not, throws
// std::system_error (EDEADLK, EPERM) instead of hanging.
//
// Crossing processes: a forked child uses the same mutex; other processes
// attach(name()) or receive it as a task argument (cereal: it travels as its
// name), which needs the naming process to still hold it (see
// shared_memory). A default-constructed mutex is a new, unlocked one; a
// moved-from mutex is empty and its operations throw xjob::error.
//
// Throws std::system_error if the memory cannot be made. Thread-safe (its
// point), except moves and assignment.
//   xjob::ipc::mutex m;                               // or xjob::ipc::lock
//   if (fork() == 0) { std::scoped_lock hold(m); work(); _exit(0); }
//   std::unique_lock hold(m, std::chrono::seconds(1));   // try_lock_for
//   if (hold && m.previous_owner_died()) repair_shared_state();
class mutex {
 public:
  // A new, unlocked mutex.
  mutex();
  // The mutex another handle's name() names. Throws xjob::invalid_argument
  // if the name is malformed, vanished, or names another primitive.
  [[nodiscard]] static mutex attach(std::string_view name);

  mutex(mutex&& other) noexcept;
  mutex& operator=(mutex&& other) noexcept;
  mutex(mutex const&) = delete;
  mutex& operator=(mutex const&) = delete;
  ~mutex() = default;

  // See shared_memory::name(). A shared_value's lock has no name of its own
  // (pass the shared_value): xjob::error.
  [[nodiscard]] std::string name() const;
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  // Blocks until this thread holds the mutex.
  void lock();
  // Takes the mutex if it is free now.
  [[nodiscard]] bool try_lock();
  // Takes the mutex if it becomes free within `timeout` (waits on
  // CLOCK_MONOTONIC: setting the wall clock does not shorten the wait).
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> const& timeout) {
    return lock_until(detail::deadline_after(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> const& when) {
    return lock_until(detail::to_deadline(when));
  }
  void unlock();

  // For the holder: whether the previous holder died holding the mutex, so
  // what it guarded may be half-updated. Meaningful only while holding it.
  [[nodiscard]] bool previous_owner_died() const;

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
  template <class T>
  friend class shared_value;
  struct view_tag {};
  // A mutex whose state lives in a block someone else owns (shared_value's).
  mutex(view_tag, detail::mutex_state* state) noexcept : state_(state) {}

  [[nodiscard]] bool lock_until(detail::deadline until);
  [[nodiscard]] detail::mutex_state& state() const;

  shared_memory memory_;
  detail::mutex_state* state_ = nullptr;
};

// multiprocessing.Lock's name for xjob::ipc::mutex. (A class named `lock`
// could not have a member function lock(): that would be its constructor.)
using lock = mutex;

}  // namespace xjob::ipc
