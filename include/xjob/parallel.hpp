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
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xjob/backend.hpp>
#include <xjob/batch_call.hpp>
#include <xjob/chunking.hpp>
#include <xjob/delayed.hpp>
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
  // Whether tasks run in worker processes (so side effects on the caller's
  // private memory stay in the workers; results and shared memory come back).
  [[nodiscard]] bool runs_out_of_process() const noexcept { return backend_->runs_out_of_process(); }

  // Runs delayed calls; returns their results in input order (nothing if
  // they return void). The first task to throw cancels the rest and is
  // rethrown as xjob::task_error.
  template <std::ranges::input_range Calls>
    requires is_delayed_call_v<std::remove_cvref_t<std::ranges::range_reference_t<Calls>>>
  auto operator()(Calls&& calls) const {
    auto tasks = detail::to_vector(std::forward<Calls>(calls));
    using R = typename std::ranges::range_value_t<decltype(tasks)>::result_type;
    return run_indexed<R>(tasks.size(), [&tasks](std::size_t i) -> decltype(auto) { return tasks[i](); });
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
    if constexpr (std::ranges::random_access_range<Args> && std::ranges::sized_range<Args>) {
      auto first = std::ranges::begin(args);
      return run_indexed<R>(static_cast<std::size_t>(std::ranges::size(args)),
                            [&f, first](std::size_t i) -> decltype(auto) {
                              return std::invoke(f, first[static_cast<std::ptrdiff_t>(i)]);
                            });
    } else {
      auto values = detail::to_vector(std::forward<Args>(args));
      return run_indexed<R>(values.size(),
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

  // Calls f(in, out) on chunks of `input` cut along `how.axis`, `in` a
  // read-only chunk and `out` the matching chunk of a new zero-initialised
  // shared_array of input's shape and element type, which is returned. Row-
  // major arrays cut along axis 0 give f xtensor adaptors over the arrays'
  // own memory (no copy; `out = e` assigns without a temporary when out does
  // not overlap the input); other axes or strided arrays give f dense copies
  // of each chunk, written back after f returns. Throws
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
  void run(detail::task_runner& runner, std::size_t count) const;
  [[nodiscard]] std::unique_ptr<batch_call> make_call(detail::task_runner& runner, std::size_t count,
                                                      std::function<void(batch_range)> on_batch_done) const;
  void execute(batch_call& call) const;
  [[nodiscard]] std::size_t chunk_extent_for(std::span<std::size_t const> shape, std::size_t axis,
                                             std::size_t element_bytes, chunking const& how) const;
  static void check_chunk_shapes(std::span<std::size_t const> input_shape,
                                 std::span<std::size_t const> output_shape, std::size_t axis);

  template <class Result, class Compute>
  auto run_indexed(std::size_t count, Compute compute) const {
    using R = detail::stored_result_t<Result>;
    if constexpr (std::is_void_v<Result>) {
      detail::task_loop loop([&compute](std::size_t i) { compute(i); });
      run(loop, count);
    } else if constexpr (!detail::result_allowed<R>) {
      // xjob's message is the only error: the result codec is not
      // instantiated, as cereal would add static_asserts of its own.
      detail::require_transferable<R>();
      return std::vector<R>();
    } else if constexpr (std::is_default_constructible_v<R> && !std::is_same_v<R, bool>) {
      std::vector<R> results(count);
      R* out = results.data();
      detail::task_loop loop([&compute, out](std::size_t i) { out[i] = compute(i); },
                             detail::result_codec<R, R>(out));
      run(loop, count);
      return results;
    } else {
      // vector<bool> packs bits (concurrent writes would race) and other
      // types cannot be default-constructed: fill optional slots first.
      std::vector<std::optional<R>> slots(count);
      detail::task_loop loop([&compute, &slots](std::size_t i) { slots[i].emplace(compute(i)); },
                             detail::result_codec<R, std::optional<R>>(slots.data()));
      run(loop, count);
      std::vector<R> results;
      results.reserve(count);
      for (auto& slot : slots) results.push_back(std::move(*slot));
      return results;
    }
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
};

}  // namespace xjob
