// A function call that runs in another process of the same program: which
// code to run (an address as module + offset, valid in a forked child, a
// fork server's child and a fresh exec alike, whatever the load address), and
// its arguments and result as bytes. What may be called this way: plain
// functions and captureless lambdas (their code is in the program); closures
// with state are refused at compile time, because a worker that started
// before the closure was made cannot hold what it captured.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <xjob/detail/value_codec.hpp>
#include <xjob/transfer.hpp>

namespace xjob::detail {

// Where a piece of code lives: the loaded module (its path, empty for the
// main program) and the offset from its load address.
struct code_address {
  std::string module;
  std::uint64_t offset = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(module, offset);
  }
};

// Throws xjob::error if `address` is in no loaded module.
[[nodiscard]] code_address locate_code(void const* address);
// The address of that code in this process; throws xjob::error naming the
// module if it is not loaded here (a library dlopen()ed after the worker
// started).
[[nodiscard]] void const* resolve_code(code_address const& where);

// Runs a call in the worker: decodes the arguments from `args`, calls the
// function (`function` is its address for function pointers, unused for
// captureless lambdas), and appends the encoded result to `result`.
using call_thunk = void (*)(void const* function, std::string_view args, std::string& result);

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

// Captureless lambdas and other empty callables whose objects can be made
// anew in the worker.
template <class F>
inline constexpr bool is_stateless_callable_v =
    std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F> &&
    std::is_trivially_copyable_v<F>;

template <class F>
inline constexpr bool is_remote_callable_v = is_function_pointer_v<std::decay_t<F>> ||
                                             is_stateless_callable_v<std::decay_t<F>>;

template <class F>
constexpr void require_remote_callable() {
  static_assert(is_remote_callable_v<F>,
                "xjob: this function cannot run in a worker process that was started before the call: pass a plain "
                "function or a lambda without captures, and hand it its data as arguments (copied to the worker, "
                "so they must be transferable: see xjob/transfer.hpp). A closure with captures needs workers "
                "forked at the call: use xjob::parallel({.backend = \"processes\"}), or xjob::process with the "
                "fork start method.");
}

template <class F>
decltype(auto) callable_object(void const* function) {
  using D = std::decay_t<F>;
  if constexpr (is_function_pointer_v<D>) {
    return reinterpret_cast<D>(const_cast<void*>(function));
  } else {
    return D{};
  }
}

// The worker side of calling F with arguments of types Args (as decayed
// values), result encoded unless void.
template <class F, class... Args>
void run_remote_call(void const* function, std::string_view args, std::string& result) {
  std::tuple<Args...> values;
  if constexpr (sizeof...(Args) > 0)
    std::apply([&](auto&... v) { decode_values(args, "the arguments of a task", v...); }, values);
  auto&& callable = callable_object<F>(function);
  using R = std::invoke_result_t<decltype(callable)&, Args&...>;
  if constexpr (std::is_void_v<R>) {
    std::apply([&](auto&... v) { std::invoke(callable, v...); }, values);
  } else {
    encode_values(result, std::apply([&](auto&... v) -> R { return std::invoke(callable, v...); }, values));
  }
}

// The code address of F's function (function pointers only).
template <class F>
[[nodiscard]] code_address function_address(F const& f) {
  if constexpr (is_function_pointer_v<std::decay_t<F>>) {
    return locate_code(reinterpret_cast<void const*>(f));
  } else {
    return {};
  }
}

// What crosses to the worker for one call of `f` with `args`.
struct remote_call {
  code_address thunk;
  code_address function;
  std::string arguments;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(thunk, function, arguments);
  }
};

template <class F, class... Args>
[[nodiscard]] remote_call make_remote_call(F const& f, Args const&... args) {
  require_remote_callable<F>();
  constexpr bool arguments_travel = (transferable<std::decay_t<Args>> && ...);
  static_assert(arguments_travel,
                "xjob: every argument of a task run in another process is copied there, so it must be "
                "transferable (trivially copyable, or serialisable with cereal: see xjob/transfer.hpp)");
  using R = std::invoke_result_t<std::decay_t<F> const&, std::decay_t<Args>&...>;
  constexpr bool result_travels = std::is_void_v<R> || transferable<std::remove_cvref_t<R>>;
  static_assert(result_travels,
                "xjob: the result of a task run in another process is copied back, so it must be transferable "
                "(trivially copyable, or serialisable with cereal: see xjob/transfer.hpp)");
  remote_call call;
  // After a failed check above, the thunk and the encoders are not
  // instantiated: they would add errors of their own (a closure's deleted
  // default constructor, unsatisfied constraints) after xjob's message.
  if constexpr (is_remote_callable_v<F> && arguments_travel && result_travels) {
    call.thunk = locate_code(reinterpret_cast<void const*>(&run_remote_call<std::decay_t<F>, std::decay_t<Args>...>));
    call.function = function_address(f);
    if constexpr (sizeof...(Args) > 0) encode_values(call.arguments, args...);
  }
  return call;
}

// In the worker: runs `call`, appending its encoded result to `result`.
// Throws what the function throws, or xjob::error if the code cannot be
// found or the arguments are malformed.
inline void run_remote(remote_call const& call, std::string& result) {
  auto const thunk = reinterpret_cast<call_thunk>(const_cast<void*>(resolve_code(call.thunk)));
  void const* function = call.function.module.empty() && call.function.offset == 0 ? nullptr
                                                                                   : resolve_code(call.function);
  thunk(function, call.arguments, result);
}

}  // namespace xjob::detail
