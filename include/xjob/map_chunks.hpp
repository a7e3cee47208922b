// parallel::map_chunks: f(in, out) over chunks of an xtensor array or a
// shared_array, cut along one axis, into a new shared_array or a caller's
// output. parallel.hpp declares the calls; this header builds them (it is the
// part of the front end that parses xtensor). Included by <xjob/xjob.hpp>.
//
// What f is given: `in`, a read-only chunk, and `out`, the matching chunk of
// the output, both xtensor expressions with the arrays' rank. Row-major
// arrays cut along axis 0 give f adaptors over the arrays' own memory (no
// copy; `out = e` assigns without a temporary when out does not overlap the
// input); other axes or strided arrays give f dense copies of each chunk,
// written back after f returns.
//   #include <xjob/map_chunks.hpp>
//   auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
//   par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sum(in, {1}); }, sums);
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <xjob/chunking.hpp>
#include <xjob/detail/chunk_views.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/parallel.hpp>
#include <xjob/shared_array.hpp>
#include <xjob/shared_array_view.hpp>
#include <xjob/transfer_xtensor.hpp>

namespace xjob::detail {

template <class T>
inline constexpr bool is_shared_array_v = false;
template <class T>
inline constexpr bool is_shared_array_v<shared_array<T>> = true;

// shared_arrays take part in map_chunks through their xtensor adaptor;
// everything else as the expression it is.
template <class X>
decltype(auto) as_expression(X&& x) {
  if constexpr (is_shared_array_v<std::remove_cvref_t<X>>) {
    return x.view();
  } else {
    return std::forward<X>(x);
  }
}

// The parts of parallel that map_chunks needs and users do not.
struct parallel_access {
  static void run(parallel const& par, task_runner& runner, std::size_t count) { par.run(runner, count); }
  static std::size_t chunk_extent_for(parallel const& par, std::span<std::size_t const> shape, std::size_t axis,
                                      std::size_t element_bytes, chunking const& how) {
    return par.chunk_extent_for(shape, axis, element_bytes, how);
  }
  static void check_chunk_shapes(std::span<std::size_t const> input_shape,
                                 std::span<std::size_t const> output_shape, std::size_t axis) {
    parallel::check_chunk_shapes(input_shape, output_shape, axis);
  }
};

// One task per chunk: f(in, out) on the chunk, then the output chunk is put
// back (a no-op for chunks that are views of the output's memory). `wrap`
// turns the output chunk into what f gets (see output_chunk).
template <class Ins, class Outs, class F, class Wrap>
void run_chunks(parallel const& par, chunk_plan const& plan, Ins& ins, Outs& outs, F const& f, Wrap wrap) {
  task_loop loop([&](std::size_t i) {
    chunk const c = plan[i];
    auto const in_chunk = ins.take(c.begin, c.end);
    auto out_chunk = wrap(outs.take(c.begin, c.end));
    f(in_chunk, out_chunk);
    outs.put(c.begin, out_chunk);
  });
  parallel_access::run(par, loop, plan.size());
}

template <class In, class F, class Out>
void map_chunks_into(parallel const& par, In const& in, F const& f, Out&& out, chunking const& how,
                     bool clear_output) {
  auto const& in_shape = in.shape();
  auto const& out_shape = out.shape();
  std::vector<std::size_t> const input_shape(in_shape.begin(), in_shape.end());
  std::vector<std::size_t> const output_shape(out_shape.begin(), out_shape.end());
  parallel_access::check_chunk_shapes(input_shape, output_shape, how.axis);
  static_assert(has_strided_data<std::remove_reference_t<In> const> && has_strided_data<std::remove_reference_t<Out>>,
                "map_chunks needs arrays with memory (an xtensor container, adaptor or strided view, or a "
                "shared_array); evaluate a lazy expression into a container first");
  auto const* in_first = first_element(in);
  auto* out_first = first_element(out);
  using in_element_type = std::remove_pointer_t<decltype(in_first)>;
  using out_element_type = std::remove_pointer_t<decltype(out_first)>;
  chunk_plan const plan(input_shape[how.axis], parallel_access::chunk_extent_for(par, input_shape, how.axis,
                                                                                 sizeof(in_element_type), how));
  if (plan.size() == 0) return;

  auto as_is = [](auto&& chunk) { return std::move(chunk); };

  if (how.axis == 0 && is_row_major_contiguous(in) && is_row_major_contiguous(out)) {
    contiguous_slabs<in_element_type, chunk_shape_t<In>> ins(in_first, in_shape, false);
    contiguous_slabs<out_element_type, chunk_shape_t<Out>> outs(out_first, out_shape, clear_output);
    if (overlaps(in_first, in.size(), out_first, out.size())) {
      run_chunks(par, plan, ins, outs, f, as_is);
    } else {
      run_chunks(par, plan, ins, outs, f, [](auto&& chunk) { return output_chunk(std::move(chunk)); });
    }
  } else {
    using in_value = std::remove_const_t<in_element_type>;
    if (clear_output) std::fill(out.begin(), out.end(), out_element_type{});
    copied_slabs<in_value const, dense_chunk_t<In, in_value>> ins(in_first, in_shape, in.strides(), how.axis);
    copied_slabs<out_element_type, dense_chunk_t<Out, out_element_type>> outs(out_first, out_shape, out.strides(),
                                                                            how.axis);
    run_chunks(par, plan, ins, outs, f, as_is);
  }
}

// parallel::map_chunks(input, f, how): into a new zero-initialised
// shared_array of input's shape and element type, which is returned.
template <class Input, class F>
[[nodiscard]] auto run_map_chunks(map_chunks_hook, parallel const& par, Input const& input, F const& f,
                                  chunking const& how) {
  decltype(auto) in = as_expression(input);
  using T = std::remove_cv_t<typename std::remove_cvref_t<decltype(in)>::value_type>;
  auto const& in_shape = in.shape();
  shared_array<T> output(std::vector<std::size_t>(in_shape.begin(), in_shape.end()), uninitialized);
  bool const stale = shared_array_access::holds_stale_data(output);
  map_chunks_into(par, in, f, output.view(), how, stale);
  return output;
}

// parallel::map_chunks(input, f, output, how): into a caller's shared_array
// (a .npy-backed one is committed when the call succeeds) or writable
// xtensor container. With worker processes, an output that is not a
// shared_array is written through a shared copy (copied in before, and back
// after the call).
template <class Input, class F, class Output>
void run_map_chunks_into(map_chunks_hook, parallel const& par, Input const& input, F const& f, Output&& output,
                         chunking const& how) {
  decltype(auto) in = as_expression(input);
  if constexpr (is_shared_array_v<std::remove_cvref_t<Output>>) {
    map_chunks_into(par, in, f, output.view(), how, false);
    output.commit();
  } else if (par.runs_out_of_process()) {
    auto const& out_shape = output.shape();
    shared_array<std::remove_cv_t<typename std::remove_cvref_t<Output>::value_type>> staging(
        std::vector<std::size_t>(out_shape.begin(), out_shape.end()), uninitialized);
    std::copy(output.begin(), output.end(), staging.begin());
    map_chunks_into(par, in, f, staging.view(), how, false);
    std::copy(staging.begin(), staging.end(), output.begin());
  } else {
    map_chunks_into(par, in, f, output, how, false);
  }
}

}  // namespace xjob::detail
