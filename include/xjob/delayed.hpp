// delayed(f)(args...): a call captured for later, as joblib's delayed. The
// function and copies of the arguments are stored; nothing runs until a
// parallel object invokes it.
#pragma once

#include <xjob/detail/config.hpp>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace xjob {

// One deferred call of F with stored arguments. Invoking it does not consume
// the arguments, so a call can be re-run (a retry after a crashed worker).
template <class F, class... Args>
class delayed_call {
 public:
  using result_type = std::invoke_result_t<F const&, Args const&...>;

  template <class G, class... A>
  explicit delayed_call(G&& function, A&&... args)
      : function_(std::forward<G>(function)), args_(std::forward<A>(args)...) {}

  result_type operator()() const { return std::apply(function_, args_); }

  [[nodiscard]] F const& function() const noexcept { return function_; }
  [[nodiscard]] std::tuple<Args...> const& arguments() const noexcept { return args_; }

 private:
  F function_;
  std::tuple<Args...> args_;
};

// The callable returned by delayed(f): call it with the arguments.
template <class F>
class delayed_function {
 public:
  explicit delayed_function(F function) : function_(std::move(function)) {}

  template <class... Args>
    requires std::is_invocable_v<F const&, std::decay_t<Args> const&...>
  [[nodiscard]] auto operator()(Args&&... args) const {
    return delayed_call<F, std::decay_t<Args>...>(function_, std::forward<Args>(args)...);
  }

 private:
  F function_;
};

// Captures f for deferred calls. Thread-safe as long as f is.
//   auto call = xjob::delayed(task)(1, 10'000'000L);
//   auto [idx, sum] = call();
//   auto results = xjob::parallel(4)(jobs | std::views::transform(
//       [](auto const& j) { return xjob::delayed(task)(j.first, j.second); }));
template <class F>
[[nodiscard]] auto delayed(F&& function) {
  return delayed_function<std::decay_t<F>>(std::forward<F>(function));
}

// True for the types delayed(f)(args...) produces.
template <class T>
inline constexpr bool is_delayed_call_v = false;
template <class F, class... Args>
inline constexpr bool is_delayed_call_v<delayed_call<F, Args...>> = true;

}  // namespace xjob
