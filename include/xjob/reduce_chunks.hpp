// parallel::reduce_chunks: f(chunk) over chunks of an xtensor array or a
// shared_array, cut along one axis, the partial results combined in a fixed
// tree (see detail/reduction.hpp) into one value that is bitwise the same on
// every backend and n_jobs. parallel.hpp declares the call; this header
// builds it. Included by <xjob/xjob.hpp>.
//
// What f is given: the read-only chunk, as an `xjob::chunk_view<T const, N>
// const&` (the chunks of map_chunks: over the array's own memory for
// row-major arrays cut along axis 0, else a dense copy), and an
// xjob::chunk_info const& second if f takes one. f returns the chunk's
// partial result, converted to init's type T.
//   #include <xjob/reduce_chunks.hpp>
//   double t = par.reduce_chunks(x, [](auto const& chunk) { return double(xt::sum(chunk)()); }, 0.0, std::plus<>{});
//   auto [lo, hi] = par.reduce_chunks(x, [](auto const& c) { return std::pair{xt::amin(c)(), xt::amax(c)()}; },
//       std::pair{inf, -inf}, [](auto a, auto b) { return std::pair{std::min(a.first, b.first),
//                                                                   std::max(a.second, b.second)}; });
#pragma once

#include <xjob/detail/config.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <xjob/chunking.hpp>
#include <xjob/detail/reduction.hpp>
#include <xjob/detail/shape.hpp>
#include <xjob/map_chunks.hpp>

namespace xjob::detail {

// The automatic chunk size of a reduction assumes this many workers,
// whatever n_jobs is: the chunks are the tree's leaves, and the tree must
// depend on the array alone. It gives at least 4 x 16 chunks where the
// array has that many slices, enough to balance most machines.
inline constexpr int reduction_reference_workers = 16;

template <class F, class Chunk>
constexpr bool reduce_chunk_callable =
    std::invocable<F const&, Chunk const&> || std::invocable<F const&, Chunk const&, chunk_info const&>;

// f's partial result for chunk i of `plan`, from `ins` (see chunk_views.hpp).
template <class T, class Ins, class F>
[[nodiscard]] T reduce_one_chunk(chunk_plan const& plan, std::size_t axis, Ins const& ins, F const& f, std::size_t i) {
  chunk const c = plan[i];
  auto held = ins.take(c.begin, c.end);
  auto const in_chunk = ins.view(held);
  if constexpr (std::invocable<F const&, decltype(in_chunk) const&, chunk_info const&>)
    return static_cast<T>(std::invoke(f, in_chunk, chunk_info{.index = i, .offset = c.begin, .extent = c.extent(), .axis = axis}));
  else
    return static_cast<T>(std::invoke(f, in_chunk));
}

// Runs the leaves (the chunks of `plan` over `in`) through `run` (see
// reduce_leaves); returns the root on the caller's side.
template <class T, class Run, class In, class Element, class F, class Combine>
[[nodiscard]] std::optional<T> reduce_chunk_plan(Run const& run, chunk_plan const& plan, In const& in,
                                                 Element* first, std::size_t axis, F const& f,
                                                 Combine const& combine) {
  auto const& shape = in.shape();
  auto tree = [&](auto const& ins) {
    return reduce_leaves<T>(
        plan.size(), [&plan, axis, &ins, &f](std::size_t i) { return reduce_one_chunk<T>(plan, axis, ins, f, i); },
        combine, run);
  };
  if (axis == 0 && is_row_major_contiguous(in)) {
    contiguous_slabs<Element, chunk_shape_t<In>> const ins(first, shape);
    return tree(ins);
  }
  using value = std::remove_const_t<Element>;
  copied_slabs<value const, dense_chunk_t<In, value>> const ins(first, shape, in.strides(), axis);
  return tree(ins);
}

// What a warm worker runs for reduce_chunks with f and combine without
// captures: the same leaves over the same array, mapped there.
template <class F, class Combine, class T, class Element, class Shape>
void run_remote_reduce_chunks(std::string_view payload, std::span<std::byte* const> mappings, remote_loop& loop) {
  remote_array in_array;
  std::uint64_t axis = 0;
  std::uint64_t extent = 0;
  std::uint64_t chunk_extent = 0;
  decode_values(payload, "a reduce_chunks call", in_array.mapping, in_array.offset, in_array.shape, in_array.strides,
                axis, extent, chunk_extent);
  auto in = adapt_remote_array<Element, Shape>(mappings, in_array);
  chunk_plan const plan(static_cast<std::size_t>(extent), static_cast<std::size_t>(chunk_extent));
  F const f{};
  Combine const combine{};
  (void)reduce_chunk_plan<T>([&loop](task_runner& runner, std::size_t n, auto&&) { loop.run(runner, n); }, plan, in,
                             static_cast<Element*>(in.data()), static_cast<std::size_t>(axis), f, combine);
}

// parallel::reduce_chunks(input, f, init, combine, how).
template <class Input, class F, class T, class Combine>
[[nodiscard]] T run_reduce_chunks(map_chunks_hook, parallel const& par, Input const& input, F const& f, T init,
                                  Combine const& combine, chunking const& how) {
  decltype(auto) in = as_expression(input);
  using In = std::remove_cvref_t<decltype(in)>;
  static_assert(has_strided_data<In const>,
                "reduce_chunks needs an array with memory (an xtensor container, adaptor or strided view, or a "
                "shared_array); evaluate a lazy expression into a container first");
  auto const* first = first_element(in);
  using element_type = std::remove_pointer_t<decltype(first)>;
  using in_chunk = chunk_adaptor_t<element_type, chunk_shape_t<In>>;
  if constexpr (!reduce_chunk_callable<F, in_chunk>) {
    static_assert(reduce_chunk_callable<F, in_chunk>,
                  "xjob: reduce_chunks calls f(chunk), or f(chunk, info), with `chunk` an xjob::chunk_view<T const, "
                  "N> const& (a read-only xtensor adaptor of the input chunk) and `info` an xjob::chunk_info const&, "
                  "and f cannot be called so. Write f as [](auto const& chunk) { return ...; }.");
    return init;
  } else if constexpr (!result_allowed<T>) {
    require_transferable<T>();
    return init;
  } else {
    auto const& in_shape = in.shape();
    std::vector<std::size_t> const shape(in_shape.begin(), in_shape.end());
    if (how.axis >= shape.size())
      throw invalid_argument(fmt::format("reduce_chunks: axis {} is out of range for an input of shape {}", how.axis,
                                         format_shape(shape)));
    chunk_plan const plan(shape[how.axis], parallel_access::chunk_extent_for(par, shape, how.axis, sizeof(element_type),
                                                                             how, reduction_reference_workers));
    std::optional<remote_form> remote;
    if constexpr (is_stateless_callable_v<F> && is_stateless_callable_v<Combine>) {
      if (par.reuses_workers() && plan.size() > 0) {
        std::optional<shared_mapping_location> const in_at = find_array_mapping(in, first);
        if (!in_at)
          return with_staged_input<element_type>(in, shape, [&](auto const& staged) {
            return run_reduce_chunks(map_chunks_hook{}, par, staged, f, std::move(init), combine, how);
          });
        {
          remote.emplace();
          remote->entry = &run_remote_reduce_chunks<F, Combine, T, element_type, chunk_shape_t<In>>;
          remote->mappings.push_back(in_at->mapping);
          remote_array const described = describe_remote_array(in, *in_at, 0);
          encode_values(remote->payload, described.mapping, described.offset, described.shape, described.strides,
                        static_cast<std::uint64_t>(how.axis), static_cast<std::uint64_t>(plan.extent()),
                        static_cast<std::uint64_t>(plan.chunk_extent()));
        }
      }
    }
    return parallel_access::reduced(
        std::move(init), combine,
        reduce_chunk_plan<T>(parallel_access::reduction_runner(par, remote ? &*remote : nullptr), plan, in, first,
                             how.axis, f, combine));
  }
}

}  // namespace xjob::detail
