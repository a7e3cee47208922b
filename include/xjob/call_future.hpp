// call_future: a whole parallel call started in the background by
// parallel::map_async or parallel::async, and its result to come.
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>

#include <xjob/errors.hpp>

namespace xjob {

// The result of a parallel call that runs on its own thread (which drives
// the call's workers as the caller would). get() waits and returns the
// result (once), or throws what the call threw: xjob::task_error,
// xjob::cancelled after cancel() or a stop of the parallel object's own
// token. Destroying a future whose call still runs cancels the call and
// waits for it, so no call outlives its future. Move-only; one thread at a
// time may use a future (copies of the parallel object may start others).
//   auto pending = par.map_async([](int i) { return i * i; }, std::views::iota(0, 1000));
//   while (pending.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) redraw();
//   std::vector<int> squares = pending.get();
template <class R>
class call_future {
 public:
  call_future() = default;
  call_future(call_future&&) noexcept = default;
  call_future& operator=(call_future&& other) noexcept {
    if (this != &other) {
      stop_and_join();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~call_future() { stop_and_join(); }

  // Whether the future has a call whose result get() has not taken yet.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr && state_->result.valid(); }

  // Waits for the call and for its thread to end; the call's result, or
  // what it threw. Throws std::future_error (no_state) if the future is not
  // valid().
  R get() {
    if (!valid()) throw std::future_error(std::future_errc::no_state);
    state_->result.wait();
    // Joined first: the thread's last act is to drop its share of the
    // result (a thrown exception included), which must not overlap the
    // caller's use of it.
    if (state_->thread.joinable()) state_->thread.join();
    return state_->result.get();
  }
  void wait() const {
    if (!valid()) throw std::future_error(std::future_errc::no_state);
    state_->result.wait();
  }
  template <class Rep, class Period>
  [[nodiscard]] std::future_status wait_for(std::chrono::duration<Rep, Period> const& timeout) const {
    if (!valid()) throw std::future_error(std::future_errc::no_state);
    return state_->result.wait_for(timeout);
  }
  // Whether the call has ended (get() will not wait).
  [[nodiscard]] bool done() const { return wait_for(std::chrono::seconds(0)) == std::future_status::ready; }
  // Stops the call as its stop token would: no task starts any more, those
  // running finish, and get() throws xjob::cancelled (unless the call had
  // ended already). Does not wait.
  void cancel() noexcept {
    if (state_) state_->stop.request_stop();
  }

  // Runs `body(stop)` on a new thread, `stop` a token that cancel() and
  // `outer` (the parallel object's own token) both request.
  template <class Body>
  static call_future start(std::stop_token const& outer, Body body) {
    call_future future;
    future.state_ = std::make_unique<state>();
    state& s = *future.state_;
    if (outer.stop_possible()) s.link.emplace(outer, requester{s.stop});
    std::packaged_task<R()> task([body = std::move(body), token = s.stop.get_token()]() mutable { return body(token); });
    s.result = task.get_future();
    s.thread = std::thread(std::move(task));
    return future;
  }

 private:
  struct requester {
    std::stop_source source;
    void operator()() const noexcept { source.request_stop(); }
  };
  struct state {
    std::stop_source stop;
    std::optional<std::stop_callback<requester>> link;
    std::future<R> result;
    std::thread thread;
  };

  void stop_and_join() noexcept {
    if (!state_) return;
    if (state_->thread.joinable()) {
      if (state_->result.valid() &&
          state_->result.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        state_->stop.request_stop();
      state_->thread.join();
    }
    state_.reset();
  }

  std::unique_ptr<state> state_;
};

}  // namespace xjob
