// A function call that runs in another process of the same program: which
// code to run (an address as module + offset, valid in a forked child, a
// fork server's child and a fresh exec alike, whatever the load address), and
// its arguments and result as bytes. What may be called this way: plain
// functions and captureless lambdas (their code is in the program); closures
// with state are refused at compile time, because a worker that started
// before the closure was made cannot hold what it captured.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

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

// The code at `where`, or null where there is none (the function of a
// stateless class travels as no address: see function_address).
[[nodiscard]] inline void const* resolve_code_if_any(code_address const& where) {
  return where.module.empty() && where.offset == 0 ? nullptr : resolve_code(where);
}

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

// What becomes of a remote call's result: sent back (a task), or dropped
// (an xjob::process, whose function's result is dropped, as in Python).
enum class call_result { returned, dropped };

// The worker side of a remote call: decodes the arguments (as Args, the
// sent values), calls F, and encodes its result unless void or dropped.
template <class F, call_result Result, class... Args>
void run_remote_call(void const* function, std::string_view args, std::string& result) {
  std::tuple<Args...> values;
  if constexpr (sizeof...(Args) > 0)
    std::apply([&](auto&... v) { decode_values(args, "the arguments of a task", v...); }, values);
  auto&& callable = callable_object<F>(function);
  using R = std::invoke_result_t<decltype(callable)&, Args&...>;
  if constexpr (std::is_void_v<R> || Result == call_result::dropped) {
    std::apply([&](auto&... v) { (void)std::invoke(callable, v...); }, values);
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

// Values that own what they hold, so that a copy in another process is
// whole: not pointers (their target stays in the caller), nor views
// (std::string_view, std::span) or std::reference_wrapper, nor containers
// of those. A trivially copyable struct holding a pointer cannot be told
// apart; it is the user's to avoid.
template <class T>
struct owns_data : std::bool_constant<!std::is_pointer_v<T>> {};
template <class C, class Traits>
struct owns_data<std::basic_string_view<C, Traits>> : std::false_type {};
template <class T, std::size_t Extent>
struct owns_data<std::span<T, Extent>> : std::false_type {};
template <class T>
struct owns_data<std::reference_wrapper<T>> : std::false_type {};
template <class... T>
struct owns_data<std::tuple<T...>> : std::bool_constant<(owns_data<std::remove_cv_t<T>>::value && ...)> {};
template <class A, class B>
struct owns_data<std::pair<A, B>>
    : std::bool_constant<owns_data<std::remove_cv_t<A>>::value && owns_data<std::remove_cv_t<B>>::value> {};
template <class T, class Allocator>
struct owns_data<std::vector<T, Allocator>> : owns_data<std::remove_cv_t<T>> {};
template <class T>
struct owns_data<std::optional<T>> : owns_data<std::remove_cv_t<T>> {};
template <class T, std::size_t N>
struct owns_data<std::array<T, N>> : owns_data<std::remove_cv_t<T>> {};
template <class T>
inline constexpr bool owns_its_data_v = owns_data<std::remove_cv_t<T>>::value;

// The parameter types (decayed) of a function pointer or of a lambda that is
// not generic: arguments are converted to them before they travel, so that
// `length(std::string)` called with "abc" sends a std::string, not a
// pointer. Unknown for generic lambdas (their arguments travel as given).
template <class F>
struct call_parameters {
  static constexpr bool known = false;
  using types = std::tuple<>;
};
template <class R, class... P>
struct call_parameters<R (*)(P...)> {
  static constexpr bool known = true;
  using types = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct call_parameters<R (*)(P...) noexcept> : call_parameters<R (*)(P...)> {};
template <class M>
struct member_call_parameters : call_parameters<void> {};
template <class R, class C, class... P>
struct member_call_parameters<R (C::*)(P...) const> : call_parameters<R (*)(P...)> {};
template <class R, class C, class... P>
struct member_call_parameters<R (C::*)(P...) const noexcept> : call_parameters<R (*)(P...)> {};
template <class F>
  requires requires { &F::operator(); }
struct call_parameters<F> : member_call_parameters<decltype(&F::operator())> {};

template <class Parameters, class... Args>
struct arguments_convert : std::false_type {};
template <class... P, class... Args>
  requires(sizeof...(P) == sizeof...(Args))
struct arguments_convert<std::tuple<P...>, Args...>
    : std::bool_constant<(std::is_constructible_v<P, Args const&> && ...)> {};

// The types `args` travel as for a call of F: F's parameter types where
// they are known and the arguments convert to them, else the arguments'
// own (decayed) types.
template <class F, class... Args>
using sent_argument_types =
    std::conditional_t<call_parameters<std::decay_t<F>>::known &&
                           arguments_convert<typename call_parameters<std::decay_t<F>>::types, Args...>::value,
                       typename call_parameters<std::decay_t<F>>::types, std::tuple<std::decay_t<Args>...>>;

template <class Sent>
inline constexpr bool all_own_their_data = false;
template <class... T>
inline constexpr bool all_own_their_data<std::tuple<T...>> = (owns_its_data_v<T> && ...);
template <class Sent>
inline constexpr bool all_transferable = false;
template <class... T>
inline constexpr bool all_transferable<std::tuple<T...>> = (transferable<T> && ...);

template <class Sent>
constexpr void require_owning_arguments() {
  static_assert(all_own_their_data<Sent>,
                "xjob: an argument of a task run in another process is a pointer or a view (a C string, "
                "std::string_view, std::span, std::reference_wrapper, or a container of those): it is copied "
                "there, but the memory it refers to stays in this process. Pass an owning value instead "
                "(std::string, std::vector), or give the function a parameter of such a type, to which the "
                "argument is converted before it travels.");
}

// Appends `args` encoded as the types of `Sent` (see sent_argument_types):
// an argument already of its sent type is encoded as it is, never copied
// (a shared_array, which travels by name, cannot be); others are converted
// first.
template <class Sent, class... Args>
void encode_sent_arguments(std::string& bytes, Args const&... args) {
  auto as_sent = []<class S, class A>(std::type_identity<S>, A const& argument) -> decltype(auto) {
    if constexpr (std::is_same_v<std::decay_t<A>, S>) {
      return (argument);
    } else {
      return S(argument);
    }
  };
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    encode_values(bytes, as_sent(std::type_identity<std::tuple_element_t<I, Sent>>{}, args)...);
  }(std::index_sequence_for<Args...>{});
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

template <class F, class Sent, call_result Result>
struct remote_thunk;
template <class F, class... T, call_result Result>
struct remote_thunk<F, std::tuple<T...>, Result> {
  static constexpr call_thunk value = &run_remote_call<F, Result, T...>;
};

// The call of f(args...) in another process, checked at compile time: a
// function found by its code address (no captures), arguments that own
// their data and travel, and, with call_result::returned, a result that
// travels back.
template <call_result Result = call_result::returned, class F, class... Args>
[[nodiscard]] remote_call make_remote_call(F const& f, Args const&... args) {
  require_remote_callable<F>();
  using Sent = sent_argument_types<F, Args...>;
  require_owning_arguments<Sent>();
  constexpr bool arguments_travel = all_transferable<Sent>;
  static_assert(arguments_travel,
                "xjob: every argument of a task run in another process is copied there, so it must be "
                "transferable (trivially copyable, or serialisable with cereal: see xjob/transfer.hpp)");
  using R = std::invoke_result_t<std::decay_t<F> const&, std::decay_t<Args>&...>;
  constexpr bool result_travels =
      Result == call_result::dropped || std::is_void_v<R> || transferable<std::remove_cvref_t<R>>;
  static_assert(result_travels,
                "xjob: the result of a task run in another process is copied back, so it must be transferable "
                "(trivially copyable, or serialisable with cereal: see xjob/transfer.hpp)");
  remote_call call;
  // After a failed check above, the thunk and the encoders are not
  // instantiated: they would add errors of their own (a closure's deleted
  // default constructor, unsatisfied constraints) after xjob's message.
  if constexpr (is_remote_callable_v<F> && all_own_their_data<Sent> && arguments_travel && result_travels) {
    call.thunk = locate_code(reinterpret_cast<void const*>(remote_thunk<std::decay_t<F>, Sent, Result>::value));
    call.function = function_address(f);
    if constexpr (sizeof...(Args) > 0)
      encode_sent_arguments<Sent>(call.arguments, args...);
  }
  return call;
}

// In the worker: runs `call`, appending its encoded result to `result`.
// Throws what the function throws, or xjob::error if the code cannot be
// found or the arguments are malformed.
inline void run_remote(remote_call const& call, std::string& result) {
  auto const thunk = reinterpret_cast<call_thunk>(const_cast<void*>(resolve_code(call.thunk)));
  thunk(resolve_code_if_any(call.function), call.arguments, result);
}

}  // namespace xjob::detail
