// parallel: the front end. Turns delayed calls, a map over a range, or a
// chunked map over an xtensor array into batches of tasks, runs them on the
// chosen backend, and returns the results in input order (or as a stream).
#pragma once

#include <xjob/detail/config.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xjob/backend.hpp>
#include <xjob/batch_call.hpp>
#include <xjob/call_future.hpp>
#include <xjob/chunking.hpp>
#include <xjob/delayed.hpp>
#include <xjob/detail/reduction.hpp>
#include <xjob/detail/remote_call.hpp>
#include <xjob/detail/result_codec.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/detail/to_vector.hpp>
#include <xjob/parallel_config.hpp>
#include <xjob/parallel_options.hpp>
#include <xjob/results.hpp>
#include <xjob/transfer.hpp>

namespace xjob {

namespace detail {

// parallel's map_chunks is built in <xjob/map_chunks.hpp>, so that this
// header parses no xtensor: its members call run_map_chunks, found by
// argument-dependent lookup where they are used. These overloads, worse
// matches than the real ones, say what to include when it is missing.
struct map_chunks_missing {};
struct map_chunks_hook : map_chunks_missing {};
template <class... Args>
void run_map_chunks(map_chunks_missing, Args const&...) {
  static_assert(sizeof...(Args) == 0,
                "xjob: parallel::map_chunks needs `#include <xjob/map_chunks.hpp>` (or <xjob/xjob.hpp>)");
}
template <class... Args>
void run_map_chunks_into(map_chunks_missing, Args const&...) {
  static_assert(sizeof...(Args) == 0,
                "xjob: parallel::map_chunks needs `#include <xjob/map_chunks.hpp>` (or <xjob/xjob.hpp>)");
}
template <class Parallel, class Input, class F, class T, class... Rest>
T run_reduce_chunks(map_chunks_missing, Parallel const&, Input const&, F const&, T init, Rest const&...) {
  static_assert(sizeof...(Rest) == 0,
                "xjob: parallel::reduce_chunks needs `#include <xjob/reduce_chunks.hpp>` (or <xjob/xjob.hpp>)");
  return init;
}
struct parallel_access;

template <class R>
using stored_result_t = std::remove_cvref_t<R>;

// Whether any call may run in worker processes is a run-time choice
// (parallel_options, parallel_config, XJOB_BACKEND), so every result type
// must be able to come back from one.
template <class R>
inline constexpr bool result_allowed = transferable<R> || in_process_only<R>;

template <class R>
constexpr void require_transferable() {
  static_assert(result_allowed<R>,
                "xjob: this task's result type cannot come back from a worker process, and any parallel call may "
                "run in worker processes (backend \"processes\", chosen at run time). Return a trivially copyable "
                "type, a std::string/std::vector/std::map of such values, an xtensor container (with "
                "#include <xjob/transfer_xtensor.hpp>, or <xjob/xjob.hpp>), or give the type a "
                "default constructor and a cereal serialize(Archive&) member (see xjob/transfer.hpp). For a type "
                "that must never leave the caller's process, declare "
                "`template <> inline constexpr bool xjob::in_process_only<T> = true;`.");
}

// The results of `count` tasks, task i storing `compute(i)`, in input order
// (nothing for void); the tasks run through `run(runner, count)`: on a
// parallel object in the caller, or on the loop of a warm worker process,
// which runs only some of the tasks and sends their results back as it
// goes (`collect` false: nothing is returned).
template <class Result, class Compute, class Run>
auto indexed_results(std::size_t count, Compute compute, Run const& run, bool collect = true) {
  using R = stored_result_t<Result>;
  if constexpr (std::is_void_v<Result>) {
    task_loop loop([&compute](std::size_t i) { compute(i); });
    run(loop, count);
  } else if constexpr (!result_allowed<R>) {
    // xjob's message is the only error: the result codec is not
    // instantiated, as cereal would add static_asserts of its own.
    require_transferable<R>();
    return std::vector<R>();
  } else if constexpr (std::is_default_constructible_v<R> && !std::is_same_v<R, bool>) {
    std::vector<R> results(count);
    R* out = results.data();
    task_loop loop([&compute, out](std::size_t i) { out[i] = compute(i); }, result_codec<R, R>(out));
    run(loop, count);
    return results;
  } else {
    // vector<bool> packs bits (concurrent writes would race) and other
    // types cannot be default-constructed: fill optional slots first.
    std::vector<std::optional<R>> slots(count);
    task_loop loop([&compute, &slots](std::size_t i) { slots[i].emplace(compute(i)); },
                   result_codec<R, std::optional<R>>(slots.data()));
    run(loop, count);
    std::vector<R> results;
    if (!collect) return results;
    results.reserve(count);
    for (auto& slot : slots) results.push_back(std::move(*slot));
    return results;
  }
}

// Warm worker processes run map and delayed calls whose callable has no
// captures and whose inputs travel: the caller encodes the inputs once per
// call (functions as code addresses, for function pointers), and the worker
// rebuilds the same tasks from them.
template <class F, class Item, class Result>
void run_remote_map(std::string_view payload, std::span<std::byte* const>, remote_loop& loop) {
  code_address where;
  std::vector<Item> items;
  decode_values(payload, "the inputs of a map call", where, items);
  auto&& f = callable_object<F>(resolve_code_if_any(where));
  (void)indexed_results<Result>(
      items.size(), [&f, &items](std::size_t i) -> decltype(auto) { return std::invoke(f, std::as_const(items[i])); },
      [&loop](task_runner& runner, std::size_t n) { loop.run(runner, n); }, false);
}

// Delayed calls travel as columns: each function once per run of calls to
// it (a code address names a module by its path, too long to repeat per
// call), and each argument position as one vector, which for numbers is
// one block of bytes.
template <class F, class Result, class... Args>
void run_remote_delayed(std::string_view payload, std::span<std::byte* const>, remote_loop& loop) {
  std::uint64_t count = 0;
  std::vector<code_address> functions;  // one per run of calls to the same function
  std::vector<std::uint64_t> run_ends;  // where each run ends
  std::tuple<std::vector<Args>...> arguments;
  std::apply([&](auto&... columns) { decode_values(payload, "the delayed calls", count, functions, run_ends, columns...); },
             arguments);
  bool const whole = std::apply([&](auto const&... columns) { return ((columns.size() == count) && ...); }, arguments);
  std::vector<void const*> addresses;
  if constexpr (is_function_pointer_v<std::decay_t<F>>) {
    if (!whole || functions.size() != run_ends.size() || (count > 0) != !run_ends.empty() ||
        (count > 0 && run_ends.back() != count) || !std::ranges::is_sorted(run_ends))
      throw error("the delayed calls arrived without their functions or arguments");
    for (code_address const& where : functions) addresses.push_back(resolve_code(where));
  } else if (!whole) {
    throw error("the delayed calls arrived without their arguments");
  }
  auto address_of = [&](std::size_t i) -> void const* {
    if (addresses.size() < 2) return addresses.empty() ? nullptr : addresses.front();
    return addresses[static_cast<std::size_t>(std::ranges::upper_bound(run_ends, i) - run_ends.begin())];
  };
  (void)indexed_results<Result>(
      static_cast<std::size_t>(count),
      [&](std::size_t i) -> decltype(auto) {
        return std::apply(
            [&](auto const&... columns) -> decltype(auto) {
              return std::invoke(callable_object<F>(address_of(i)), columns[i]...);
            },
            arguments);
      },
      [&loop](task_runner& runner, std::size_t n) { loop.run(runner, n); }, false);
}

// map_reduce's leaves in a warm worker: the same items, f and combine.
template <class F, class Combine, class Item, class T>
void run_remote_map_reduce(std::string_view payload, std::span<std::byte* const>, remote_loop& loop) {
  code_address f_at;
  code_address combine_at;
  std::vector<Item> items;
  decode_values(payload, "the inputs of a map_reduce call", f_at, combine_at, items);
  auto&& f = callable_object<F>(resolve_code_if_any(f_at));
  auto&& combine = callable_object<Combine>(resolve_code_if_any(combine_at));
  auto const* first = items.data();
  (void)reduce_leaves<T>(map_reduce_leaf_count(items.size()),
                         map_reduce_leaf<T>(f, combine, [first](std::size_t i) -> Item const& { return first[i]; },
                                            items.size()),
                         combine, [&loop](task_runner& runner, std::size_t n, auto&&) { loop.run(runner, n); });
}

template <class F, class Item, class Result>
inline constexpr bool map_runs_remote =
    is_remote_callable_v<F> && transferable<Item> && owns_its_data_v<Item> && std::is_default_constructible_v<Item> &&
    std::is_copy_constructible_v<Item> && std::invocable<std::decay_t<F> const&, Item const&> &&
    (std::is_void_v<Result> || transferable<stored_result_t<Result>>);

template <class Call>
struct delayed_remote : std::false_type {};
template <class F, class... Args>
struct delayed_remote<delayed_call<F, Args...>>
    : std::bool_constant<is_remote_callable_v<F> && (transferable<Args> && ...) && (owns_its_data_v<Args> && ...) &&
                         (std::is_default_constructible_v<Args> && ...) &&
                         (std::is_void_v<typename delayed_call<F, Args...>::result_type> ||
                          transferable<stored_result_t<typename delayed_call<F, Args...>::result_type>>)> {
  // `tasks`: any range of the calls, read once (see run_remote_delayed).
  template <class Tasks>
  static remote_form make(Tasks const& tasks) {
    using Result = typename delayed_call<F, Args...>::result_type;
    remote_form form;
    form.entry = &run_remote_delayed<F, Result, Args...>;
    std::uint64_t count = 0;
    std::vector<code_address> functions;
    std::vector<std::uint64_t> run_ends;
    std::tuple<std::vector<Args>...> arguments;
    std::apply([&](auto&... columns) { (columns.reserve(std::ranges::size(tasks)), ...); }, arguments);
    std::decay_t<F> previous{};
    for (auto const& task : tasks) {
      if constexpr (is_function_pointer_v<std::decay_t<F>>) {
        if (count == 0 || task.function() != previous) {
          if (count > 0) run_ends.push_back(count);
          functions.push_back(function_address(task.function()));
          previous = task.function();
        }
      }
      std::apply([&](auto&... columns) {
        std::apply([&](auto const&... values) { (columns.push_back(values), ...); }, task.arguments());
      }, arguments);
      ++count;
    }
    if (!functions.empty()) run_ends.push_back(count);
    std::apply([&](auto const&... columns) { encode_values(form.payload, count, functions, run_ends, columns...); },
               arguments);
    return form;
  }
};

// Delayed calls a parallel call reads where they are, from several workers
// at once, instead of copying them into a vector first (16 bytes and a
// store per call, more than a tiny task itself costs): calls that exist
// already (a contiguous range: a vector, an array, a span), and calls made
// from a range of numbers by a function without state (`iota |
// transform(captureless)`, joblib's idiom in C++), which then makes each
// call on the worker that runs it. A function with captures could change
// its captured state as it makes calls, so its calls are made in order in
// the caller, as joblib consumes a generator.
template <class Calls>
inline constexpr bool calls_read_in_place_v =
    std::ranges::contiguous_range<Calls> && std::ranges::sized_range<Calls>;
template <class W, class Bound, class F>
inline constexpr bool calls_read_in_place_v<std::ranges::transform_view<std::ranges::iota_view<W, Bound>, F>> =
    std::ranges::sized_range<std::ranges::iota_view<W, Bound>> && std::is_empty_v<F>;

}  // namespace detail

// A configured way to run work in parallel; cheap to copy (copies share the
// backend and its workers). Construction resolves the options (see
// parallel_config.hpp) and throws xjob::invalid_argument for bad ones. Calls
// on one parallel object may come from several threads at once.
//   auto results = xjob::parallel(4)(jobs | std::views::transform([](auto const& j) {
//       return xjob::delayed(task)(j.first, j.second); }));
//   xjob::parallel par({.n_jobs = 2, .backend = "threads"});
//   std::vector<int> squares = par.map([](int i) { return i * i; }, std::views::iota(0, 20));
//   auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in); });
class parallel {
 public:
  // All options from parallel_config, the environment, or the defaults.
  parallel();
  // n_jobs workers, other options as above.
  explicit parallel(int n_jobs);
  explicit parallel(parallel_options options);

  // The resolved options: n_jobs is the positive worker count, backend the
  // name of the backend that runs the calls ("sequential" for one worker).
  [[nodiscard]] parallel_options const& options() const noexcept { return options_; }
  [[nodiscard]] int n_jobs() const noexcept { return *options_.n_jobs; }
  [[nodiscard]] std::string const& backend_name() const noexcept { return options_.backend; }
  // What the backend's workers are (see backend_capabilities).
  [[nodiscard]] backend_capabilities capabilities() const noexcept { return capabilities_; }
  // Whether tasks run in other address spaces (so side effects on the
  // caller's private memory stay in the workers; results and shared memory
  // come back).
  [[nodiscard]] bool runs_out_of_process() const noexcept { return capabilities_.results_cross_address_spaces; }
  // Whether calls whose callable has no captures run on workers started
  // before the call (processes backend, reuse_workers) rather than fresh forks.
  [[nodiscard]] bool reuses_workers() const noexcept { return capabilities_.runs_remote_forms; }

  // Runs delayed calls; returns their results in input order (nothing if
  // they return void). The first task to throw cancels the rest and is
  // rethrown as xjob::task_error.
  template <std::ranges::input_range Calls>
    requires is_delayed_call_v<std::remove_cvref_t<std::ranges::range_reference_t<Calls>>>
  auto operator()(Calls&& calls) const {
    if constexpr (detail::calls_read_in_place_v<std::remove_cvref_t<Calls>>) {
      using Call = std::remove_cvref_t<std::ranges::range_reference_t<Calls>>;
      using R = typename Call::result_type;
      auto first = std::ranges::begin(calls);
      auto const count = static_cast<std::size_t>(std::ranges::size(calls));
      auto compute = [first](std::size_t i) -> decltype(auto) { return first[static_cast<std::ptrdiff_t>(i)](); };
      if constexpr (detail::delayed_remote<Call>::value) {
        if (reuses_workers() && count > 0) {
          detail::remote_form const remote = detail::delayed_remote<Call>::make(calls);
          return run_indexed<R>(count, compute, &remote);
        }
      }
      return run_indexed<R>(count, compute);
    }
    auto tasks = detail::to_vector(std::forward<Calls>(calls));
    using Call = std::ranges::range_value_t<decltype(tasks)>;
    using R = typename Call::result_type;
    auto compute = [&tasks](std::size_t i) -> decltype(auto) { return tasks[i](); };
    if constexpr (detail::delayed_remote<Call>::value) {
      if (reuses_workers() && !tasks.empty()) {
        detail::remote_form const remote = detail::delayed_remote<Call>::make(tasks);
        return run_indexed<R>(tasks.size(), compute, &remote);
      }
    }
    return run_indexed<R>(tasks.size(), compute);
  }

  // The same, as a stream of results in input order or completion order.
  template <std::ranges::input_range Calls, class ReturnAs>
    requires is_delayed_call_v<std::remove_cvref_t<std::ranges::range_reference_t<Calls>>> &&
             (std::same_as<ReturnAs, return_as_generator_t> ||
              std::same_as<ReturnAs, return_as_generator_unordered_t>)
  auto operator()(Calls&& calls, ReturnAs) const {
    auto tasks = std::make_shared<decltype(detail::to_vector(std::forward<Calls>(calls)))>(
        detail::to_vector(std::forward<Calls>(calls)));
    using R = typename std::ranges::range_value_t<decltype(*tasks)>::result_type;
    auto* list = tasks.get();
    return stream<R, ReturnAs>(list->size(), [list](std::size_t i) -> decltype(auto) { return (*list)[i](); },
                               std::move(tasks));
  }

  // f(arg) for each arg of `args`; results in input order. f is called
  // concurrently through a const reference. A random-access sized range is
  // read in place; any other range is copied first.
  template <class F, std::ranges::input_range Args>
    requires std::invocable<F const&, std::ranges::range_reference_t<Args>>
  auto map(F const& f, Args&& args) const {
    using R = std::invoke_result_t<F const&, std::ranges::range_reference_t<Args>>;
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<Args>>;
    if constexpr (std::ranges::random_access_range<Args> && std::ranges::sized_range<Args>) {
      auto first = std::ranges::begin(args);
      auto const count = static_cast<std::size_t>(std::ranges::size(args));
      return run_map<R, Item>(f, args, count, [&f, first](std::size_t i) -> decltype(auto) {
        return std::invoke(f, first[static_cast<std::ptrdiff_t>(i)]);
      });
    } else {
      auto values = detail::to_vector(std::forward<Args>(args));
      return run_map<R, Item>(f, values, values.size(),
                              [&f, &values](std::size_t i) -> decltype(auto) { return std::invoke(f, values[i]); });
    }
  }

  // The same, as a stream. The arguments are copied into the stream.
  template <class F, std::ranges::input_range Args, class ReturnAs>
    requires std::invocable<F const&, std::ranges::range_reference_t<Args>> &&
             (std::same_as<ReturnAs, return_as_generator_t> ||
              std::same_as<ReturnAs, return_as_generator_unordered_t>)
  auto map(F f, Args&& args, ReturnAs) const {
    using values_type = decltype(detail::to_vector(std::forward<Args>(args)));
    struct owned {
      F function;
      values_type values;
    };
    auto state = std::make_shared<owned>(owned{std::move(f), detail::to_vector(std::forward<Args>(args))});
    using R = std::invoke_result_t<F const&, typename values_type::value_type&>;
    auto* own = state.get();
    return stream<R, ReturnAs>(
        own->values.size(),
        [own](std::size_t i) -> decltype(auto) { return std::invoke(std::as_const(own->function), own->values[i]); },
        std::move(state));
  }

  // Starts map(f, args) and returns at once: a call_future of its result
  // (see call_future.hpp), whose cancel() stops the call. f and the
  // arguments are copied into the call; the call runs on a thread of its
  // own, so the caller is free meanwhile.
  //   auto pending = par.map_async([](int i) { return i * i; }, std::views::iota(0, 1000));
  //   std::vector<int> squares = pending.get();
  template <class F, std::ranges::input_range Args>
    requires std::invocable<F const&, std::ranges::range_reference_t<Args>>
  [[nodiscard]] auto map_async(F f, Args&& args) const {
    auto values = detail::to_vector(std::forward<Args>(args));
    using R = decltype(map(f, values));
    return call_future<R>::start(options_.stop, [self = *this, f = std::move(f), values = std::move(values)](
                                                    std::stop_token stop) mutable {
      self.options_.stop = std::move(stop);
      return self.map(std::as_const(f), values);
    });
  }

  // Starts par(calls) and returns at once, as map_async.
  //   auto pending = par.async(jobs | std::views::transform([](int j) { return xjob::delayed(task)(j); }));
  template <std::ranges::input_range Calls>
    requires is_delayed_call_v<std::remove_cvref_t<std::ranges::range_reference_t<Calls>>>
  [[nodiscard]] auto async(Calls&& calls) const {
    auto tasks = detail::to_vector(std::forward<Calls>(calls));
    using R = decltype((*this)(tasks));
    return call_future<R>::start(options_.stop,
                                 [self = *this, tasks = std::move(tasks)](std::stop_token stop) mutable {
                                   self.options_.stop = std::move(stop);
                                   return self(tasks);
                                 });
  }

  // f(arg) for each arg of `args`, combined with `combine` into `init`, as
  // std::transform_reduce(args, init, combine, f), without a vector of the
  // values: they combine in a fixed tree as their tasks finish. The tree
  // depends on the number of args alone (see detail/reduction.hpp), so the
  // result is bitwise the same on every backend, n_jobs, batch size and
  // run, floating-point sums included. combine(T, T) must be associative
  // (up to rounding); T any type that travels (see transfer.hpp). Throws
  // xjob::task_error if f or combine throws.
  //   double s = par.map_reduce([](int i) { return 1.0 / (1.0 + i); }, std::views::iota(0, 1'000'000), 0.0,
  //                             std::plus<>{});
  template <class F, std::ranges::input_range Args, class T, class Combine>
    requires std::invocable<F const&, std::ranges::range_reference_t<Args>> && std::invocable<Combine const&, T, T>
  [[nodiscard]] T map_reduce(F const& f, Args&& args, T init, Combine const& combine) const {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<Args>>;
    if constexpr (!detail::result_allowed<T>) {
      detail::require_transferable<T>();
      return init;
    } else if constexpr (std::ranges::random_access_range<Args> && std::ranges::sized_range<Args>) {
      auto first = std::ranges::begin(args);
      return run_map_reduce<Item>(f, args, static_cast<std::size_t>(std::ranges::size(args)),
                                  [first](std::size_t i) -> decltype(auto) { return first[static_cast<std::ptrdiff_t>(i)]; },
                                  std::move(init), combine);
    } else {
      auto values = detail::to_vector(std::forward<Args>(args));
      auto const* first = values.data();
      return run_map_reduce<Item>(f, values, values.size(),
                                  [first](std::size_t i) -> decltype(auto) { return first[i]; }, std::move(init), combine);
    }
  }

  // f(chunk) on each chunk of `input` cut along `how.axis` (f(chunk, info)
  // if f takes an xjob::chunk_info const& too), the partial results combined
  // into `init` as in map_reduce: bitwise the same on every backend and
  // n_jobs. The chunks are those of map_chunks, except that the automatic
  // size depends on the array alone, never on n_jobs; an explicit size (in
  // `how` or parallel_options::chunk_size) shapes the tree too, so the same
  // size gives the same bits. Throws xjob::invalid_argument for a bad axis
  // or chunk size, xjob::task_error if f or combine throws.
  // Needs #include <xjob/reduce_chunks.hpp> (or <xjob/xjob.hpp>).
  //   double t = par.reduce_chunks(x, [](auto const& chunk) { return double(xt::sum(chunk)()); }, 0.0,
  //                                std::plus<>{});
  template <class Input, class F, class T, class Combine>
    requires std::invocable<Combine const&, T, T>
  [[nodiscard]] T reduce_chunks(Input const& input, F const& f, T init, Combine const& combine,
                                chunking how = {}) const {
    return run_reduce_chunks(detail::map_chunks_hook{}, *this, input, f, std::move(init), combine, how);
  }

  // Calls f(in, out) on chunks of `input` cut along `how.axis`, `in` a
  // read-only chunk and `out` the matching chunk of a new zero-initialised
  // shared_array of input's shape and element type, which is returned. Row-
  // major arrays cut along axis 0 give f xtensor adaptors over the arrays'
  // own memory (no copy; `out = e` assigns without a temporary when out does
  // not overlap the input); other axes or strided arrays give f dense copies
  // of each chunk, written back after f returns. An f with a third
  // parameter, xjob::chunk_info const&, learns where its chunk lies (its
  // index, offset and extent along the axis). Throws
  // xjob::invalid_argument for a bad axis or a chunk size of 0,
  // xjob::task_error if f throws.
  // Needs #include <xjob/map_chunks.hpp> (or <xjob/xjob.hpp>).
  //   auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
  template <class Input, class F>
  [[nodiscard]] auto map_chunks(Input const& input, F const& f, chunking how = {}) const {
    return run_map_chunks(detail::map_chunks_hook{}, *this, input, f, how);
  }

  // The same into a caller's output: a shared_array (a .npy-backed one is
  // committed when the call succeeds) or a writable xtensor container. Its
  // extent along the axis must equal input's; the other extents are free, so
  // f may change the shape of each chunk (reduce each row to one value).
  // Throws xjob::invalid_argument, naming both shapes, if they do not fit.
  // With worker processes, an output that is not a shared_array is written
  // through a shared copy (copied in before, and back after the call).
  //   xt::xtensor<double, 1> sums = xt::zeros<double>({n});
  //   par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sum(in, {1}); }, sums);
  template <class Input, class F, class Output>
    requires(!std::same_as<std::remove_cvref_t<Output>, chunking>)
  void map_chunks(Input const& input, F const& f, Output&& output, chunking how = {}) const {
    run_map_chunks_into(detail::map_chunks_hook{}, *this, input, f, std::forward<Output>(output), how);
  }

 private:
  // Runs `runner`'s `count` tasks on the backend; throws the first failure.
  // `remote`, if given, lets warm worker processes run the call (see
  // task_runner.hpp); `on_batch_done` is told of each finished batch, as
  // soon as it finishes if `batch_done_is_urgent`, else by the call's end.
  void run(detail::task_runner& runner, std::size_t count, detail::remote_form const* remote = nullptr,
           std::function<void(batch_range)> on_batch_done = {}, bool batch_done_is_urgent = false) const;
  [[nodiscard]] std::unique_ptr<batch_call> make_call(detail::task_runner& runner, std::size_t count,
                                                      std::function<void(batch_range)> on_batch_done,
                                                      detail::remote_form const* remote = nullptr,
                                                      bool batch_done_is_urgent = true) const;
  void execute(batch_call& call) const;
  // The chunk extent along `axis`: how.size, else the options' chunk_size,
  // else automatic for n_jobs workers (or `auto_workers`, if given).
  [[nodiscard]] std::size_t chunk_extent_for(std::span<std::size_t const> shape, std::size_t axis,
                                             std::size_t element_bytes, chunking const& how,
                                             std::optional<int> auto_workers = std::nullopt) const;
  static void check_chunk_shapes(std::span<std::size_t const> input_shape,
                                 std::span<std::size_t const> output_shape, std::size_t axis);

  // map's tasks over `items`; on warm workers where f and the items allow.
  template <class R, class Item, class F, class Items, class Compute>
  auto run_map(F const& f, Items& items, std::size_t count, Compute compute) const {
    if constexpr (detail::map_runs_remote<F, Item, R>) {
      if (reuses_workers() && count > 0) {
        detail::remote_form remote;
        remote.entry = &detail::run_remote_map<F, Item, R>;
        detail::encode_values(remote.payload, detail::function_address(f), detail::items_as<Item>(items, count));
        return run_indexed<R>(count, std::move(compute), &remote);
      }
    }
    return run_indexed<R>(count, std::move(compute));
  }

  // map_reduce's leaves over `count` items (`item_at(i)` is item i of
  // `items`); on warm workers where f, combine and the items allow.
  template <class Item, class F, class Items, class ItemAt, class T, class Combine>
  T run_map_reduce(F const& f, Items& items, std::size_t count, ItemAt item_at, T init, Combine const& combine) const {
    std::optional<detail::remote_form> remote;
    if constexpr (detail::map_runs_remote<F, Item, T> && detail::is_remote_callable_v<Combine>) {
      if (reuses_workers() && count > 0) {
        remote.emplace();
        remote->entry = &detail::run_remote_map_reduce<F, Combine, Item, T>;
        detail::encode_values(remote->payload, detail::function_address(f), detail::function_address(combine),
                              detail::items_as<Item>(items, count));
      }
    }
    return reduced(std::move(init), combine,
                   detail::reduce_leaves<T>(detail::map_reduce_leaf_count(count),
                                            detail::map_reduce_leaf<T>(f, combine, std::move(item_at), count), combine,
                                            reduction_runner(remote ? &*remote : nullptr)));
  }

  // How a reduction's leaves run here (see detail::reduce_leaves).
  [[nodiscard]] auto reduction_runner(detail::remote_form const* remote) const {
    return [this, remote](detail::task_runner& runner, std::size_t count,
                          std::function<void(batch_range)> take) { run(runner, count, remote, std::move(take)); };
  }

  // init combined with the tree's root, if there are leaves.
  template <class T, class Combine>
  static T reduced(T init, Combine const& combine, std::optional<T> root) {
    if (!root) return init;
    return static_cast<T>(std::invoke(combine, std::move(init), std::move(*root)));
  }

  // Runs `compute(i)` for each task; `remote`, if given, lets warm worker
  // processes run the call.
  template <class Result, class Compute>
  auto run_indexed(std::size_t count, Compute compute, detail::remote_form const* remote = nullptr) const {
    return detail::indexed_results<Result>(
        count, std::move(compute),
        [this, remote](detail::task_runner& runner, std::size_t n) { run(runner, n, remote); });
  }

  template <class Result, class ReturnAs, class Compute>
  auto stream(std::size_t count, Compute compute, std::shared_ptr<void> inputs) const {
    using R = detail::stored_result_t<Result>;
    static_assert(!std::is_void_v<Result>, "a stream of results needs tasks that return a value");
    if constexpr (!detail::result_allowed<R>) {
      // The only error is xjob's (see run_indexed).
      detail::require_transferable<R>();
      if constexpr (std::same_as<ReturnAs, return_as_generator_t>) {
        return ordered_results<R>(nullptr);
      } else {
        return unordered_results<R>(nullptr);
      }
    } else {
      return start_stream<R, ReturnAs>(count, std::move(compute), std::move(inputs));
    }
  }

  // stream's work once R is known to be allowed.
  template <class R, class ReturnAs, class Compute>
  auto start_stream(std::size_t count, Compute compute, std::shared_ptr<void> inputs) const {
    auto state = std::make_unique<detail::stream_state<R>>(count);
    auto* slots = state->slots().data();
    using loop_type =
        detail::task_loop<std::function<void(std::size_t)>, detail::result_codec<R, std::optional<R>>>;
    auto loop = std::make_shared<loop_type>(
        std::function<void(std::size_t)>([compute = std::move(compute), slots](std::size_t i) {
          slots[i].emplace(compute(i));
        }),
        detail::result_codec<R, std::optional<R>>(slots));
    auto* shared_state = state.get();
    auto call = make_call(*loop, count, [shared_state](batch_range done) { shared_state->batch_done(done); });
    struct keep {
      std::shared_ptr<void> inputs;
      std::shared_ptr<void> loop;
    };
    state->start(std::move(call), std::make_shared<keep>(keep{std::move(inputs), loop}),
                 [self = *this](batch_call& c) { self.execute(c); });
    if constexpr (std::same_as<ReturnAs, return_as_generator_t>) {
      return ordered_results<R>(std::move(state));
    } else {
      return unordered_results<R>(std::move(state));
    }
  }

  friend struct detail::parallel_access;

  parallel_options options_;
  std::shared_ptr<backend> backend_;
  backend_capabilities capabilities_;  // backend_'s, asked once
};

}  // namespace xjob
