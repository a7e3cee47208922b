#include <xjob/ipc/lock.hpp>

#include <pthread.h>

#include <cerrno>
#include <new>
#include <system_error>
#include <utility>

#include <xjob/errors.hpp>

#include "sync.hpp"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace xjob::ipc {

namespace detail {

namespace {

using xjob::detail::throw_errno;

// Sets up pthread attributes and destroys them on every path.
class mutex_attributes {
 public:
  mutex_attributes() {
    if (int const rc = pthread_mutexattr_init(&attributes_); rc != 0) throw_errno(rc, "cannot create mutex attributes");
  }
  ~mutex_attributes() { pthread_mutexattr_destroy(&attributes_); }
  mutex_attributes(mutex_attributes const&) = delete;
  mutex_attributes& operator=(mutex_attributes const&) = delete;
  pthread_mutexattr_t* get() noexcept { return &attributes_; }

 private:
  pthread_mutexattr_t attributes_{};
};

// After a successful lock: a dead previous holder leaves EOWNERDEAD; the
// mutex must be marked consistent before it is unlocked, or it becomes
// unusable for everyone (ENOTRECOVERABLE).
void took(mutex_state& state, int rc) {
  if (rc == EOWNERDEAD) {
    if (int const fixed = pthread_mutex_consistent(&state.mutex); fixed != 0)
      throw_errno(fixed, "cannot make a mutex whose holder died consistent");
    state.previous_owner_died = 1;
  } else {
    state.previous_owner_died = 0;
  }
}

[[noreturn]] void lock_failed(int rc) {
  if (rc == EDEADLK) throw_errno(rc, "cannot lock xjob::ipc::mutex: this thread holds it already");
  if (rc == ENOTRECOVERABLE)
    throw error("cannot lock xjob::ipc::mutex: it is not recoverable (a holder died and the next one unlocked it "
                "without repairing it)");
  throw_errno(rc, "cannot lock xjob::ipc::mutex");
}

}  // namespace

void construct_mutex_state(mutex_state& state) {
  mutex_attributes attributes;
  int rc = pthread_mutexattr_setpshared(attributes.get(), PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(attributes.get(), PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutexattr_settype(attributes.get(), PTHREAD_MUTEX_ERRORCHECK);
  if (rc != 0) throw_errno(rc, "cannot set mutex attributes");
  new (&state) mutex_state{};
  if (rc = pthread_mutex_init(&state.mutex, attributes.get()); rc != 0) throw_errno(rc, "cannot create a mutex");
}

bool lock_mutex_state(mutex_state& state, std::optional<deadline> until) {
  int rc = 0;
  if (!until) {
    rc = pthread_mutex_lock(&state.mutex);
  } else {
    timespec const at = to_timespec(*until);
#if defined(__SANITIZE_THREAD__)
    // GCC 12's ThreadSanitizer does not intercept pthread_mutex_clocklock:
    // tell it about the lock, or it reports the unlock as a misuse.
    __tsan_mutex_pre_lock(&state.mutex, __tsan_mutex_try_lock);
#endif
    rc = pthread_mutex_clocklock(&state.mutex, CLOCK_MONOTONIC, &at);
#if defined(__SANITIZE_THREAD__)
    __tsan_mutex_post_lock(&state.mutex,
                           (rc == 0 || rc == EOWNERDEAD) ? __tsan_mutex_try_lock
                                                         : __tsan_mutex_try_lock | __tsan_mutex_try_lock_failed,
                           0);
#endif
    if (rc == ETIMEDOUT) return false;
  }
  if (rc != 0 && rc != EOWNERDEAD) lock_failed(rc);
  took(state, rc);
  return true;
}

bool try_lock_mutex_state(mutex_state& state) {
  int const rc = pthread_mutex_trylock(&state.mutex);
  if (rc == EBUSY) return false;
  if (rc != 0 && rc != EOWNERDEAD) lock_failed(rc);
  took(state, rc);
  return true;
}

void unlock_mutex_state(mutex_state& state) {
  if (int const rc = pthread_mutex_unlock(&state.mutex); rc != 0) {
    if (rc == EPERM) throw_errno(rc, "cannot unlock xjob::ipc::mutex: this thread does not hold it");
    throw_errno(rc, "cannot unlock xjob::ipc::mutex");
  }
}

}  // namespace detail

mutex::mutex() : memory_(detail::block_payload_offset + sizeof(detail::mutex_state)) {
  state_ = reinterpret_cast<detail::mutex_state*>(detail::block_payload(memory_));
  detail::construct_mutex_state(*state_);
  detail::stamp_block(memory_, detail::block_kind::mutex);
}

mutex mutex::attach(std::string_view name) {
  shared_memory memory = shared_memory::attach(name);
  detail::check_block(memory, name, detail::block_kind::mutex, sizeof(detail::mutex_state));
  mutex result(view_tag{}, reinterpret_cast<detail::mutex_state*>(detail::block_payload(memory)));
  result.memory_ = std::move(memory);
  return result;
}

mutex::mutex(mutex&& other) noexcept
    : memory_(std::move(other.memory_)), state_(std::exchange(other.state_, nullptr)) {}

mutex& mutex::operator=(mutex&& other) noexcept {
  if (this != &other) {
    memory_ = std::move(other.memory_);
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

std::string mutex::name() const {
  if (state_ != nullptr && !memory_.valid())
    throw error("xjob::ipc::mutex: a shared_value's lock has no name of its own; pass the shared_value");
  if (state_ == nullptr) throw error("xjob::ipc::mutex: an empty (moved-from) mutex has no name");
  return memory_.name();
}

detail::mutex_state& mutex::state() const {
  if (state_ == nullptr) throw error("xjob::ipc::mutex: used after it was moved from");
  return *state_;
}

void mutex::lock() { (void)detail::lock_mutex_state(state(), std::nullopt); }

bool mutex::try_lock() { return detail::try_lock_mutex_state(state()); }

bool mutex::lock_until(detail::deadline until) { return detail::lock_mutex_state(state(), until); }

void mutex::unlock() { detail::unlock_mutex_state(state()); }

bool mutex::previous_owner_died() const { return state().previous_owner_died != 0; }

}  // namespace xjob::ipc
